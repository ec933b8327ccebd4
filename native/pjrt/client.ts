/**
 * A PJRT client: addressable devices, compilation of MLIR (StableHLO) text, host→device buffers. `close()`
 * destroys every buffer and executable the client still tracks, then the client itself.
 *
 * @example
 * ```ts
 * import { PjrtApi } from "./ffi.ts";
 * import { PjrtClient } from "./client.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * const client = PjrtClient.create(api, { num_devices: 4 });
 * const buf = await client.bufferFromHost(new Float32Array([1, 2]), [2], "f32", client.devices[3]);
 * console.log(await buf.toHost());
 * client.close();
 * api.close();
 * ```
 */
import {
  ARGS,
  ELEMENT_BYTES,
  ELEMENT_TYPE,
  type ElementType,
  HOST_BUFFER_SEMANTICS,
  NAMED_VALUE_TYPE,
  type NamedValueType,
} from "./api.ts";
import { PjrtBuffer } from "./buffer.ts";
import { PjrtExecutable } from "./executable.ts";
import { addrOf, type PjrtApi, type Ptr, readString, Struct } from "./ffi.ts";

/**
 * A create option value. Numbers are typed explicitly (`{int64}` / `{float}`), never guessed from a JS number:
 * `memory_fraction: 1` must reach the plugin as a float. A bare number is accepted only for an option whose
 * type {@link CREATE_OPTION_TYPES} knows.
 */
export type NamedValue =
  | string
  | boolean
  | bigint
  | number
  | { int64: number | bigint }
  | { float: number }
  | { int64List: (number | bigint)[] };

/** An addressable device. */
export interface PjrtDevice {
  /** The raw `PJRT_Device*`. */
  readonly handle: NonNullable<Ptr>;
  /** `PJRT_DeviceDescription_Id`. */
  readonly id: number;
  /** Vendor string, e.g. "NVIDIA H200". */
  readonly kind: string;
}

export type { NamedValueType } from "./api.ts";

/**
 * The type of each create option we know of: XLA's CPU plugin (`cpu_device_count`), the GPU plugin
 * (xla/pjrt/c/pjrt_c_api_gpu_internal.cc), and the C test double. Used to type bare numbers and CLI values
 * (`--pjrt_option NAME=VALUE`).
 */
export const CREATE_OPTION_TYPES: Record<string, NamedValueType> = {
  cpu_device_count: "int64",
  platform_name: "string",
  allocator: "string",
  memory_fraction: "float",
  preallocate: "bool",
  collective_memory_size: "int64",
  visible_devices: "int64List",
  node_id: "int64",
  num_nodes: "int64",
  enable_mock_nccl: "bool",
  mock_gpu_topology: "string",
  should_stage_host_to_device_transfers: "bool",
  // the C test double (native/pjrt_test_plugin/plugin.c)
  num_devices: "int64",
  delay_us: "int64",
  fail: "string",
  fail_device: "int64",
  fail_after: "int64",
  device_layout: "string",
  default_assignment: "string",
};

/** `value` as (type, payload) for option `name`; throws a TypeError when a number's type is unknown. */
function typedValue(name: string, value: NamedValue): { type: NamedValueType; v: unknown } {
  if (typeof value === "string") return { type: "string", v: value };
  if (typeof value === "boolean") return { type: "bool", v: value };
  if (typeof value === "bigint") return { type: "int64", v: value };
  if (typeof value === "number") {
    const t = CREATE_OPTION_TYPES[name];
    if (t === "float") return { type: "float", v: value };
    if (t === "int64" && Number.isInteger(value)) return { type: "int64", v: BigInt(value) };
    throw new TypeError(
      `PJRT create option ${name}: ${
        t ? `a ${t}, not the number ${value}` : `type unknown for the number ${value}`
      } (pass {int64: n} or {float: x})`,
    );
  }
  if ("int64" in value) return { type: "int64", v: BigInt(value.int64) };
  if ("float" in value) return { type: "float", v: value.float };
  return { type: "int64List", v: value.int64List };
}

/** Encode named values as a C array of `PJRT_NamedValue`; `keep` holds the strings/lists it points at. */
export function encodeNamedValues(
  opts: Record<string, NamedValue>,
): { bytes: Uint8Array; count: number; keep: unknown[] } {
  const N = ARGS.NamedValue;
  const entries = Object.entries(opts);
  const bytes = new Uint8Array(Math.max(entries.length, 1) * N.size);
  const view = new DataView(bytes.buffer);
  const keep: unknown[] = [];
  const enc = new TextEncoder();
  entries.forEach(([name, value], i) => {
    const o = i * N.size;
    const nameBytes = enc.encode(name);
    keep.push(nameBytes);
    view.setBigUint64(o, BigInt(N.size), true);
    view.setBigUint64(o + N.name, addrOf(nameBytes), true);
    view.setBigUint64(o + N.nameSize, BigInt(nameBytes.length), true);
    const { type, v } = typedValue(name, value);
    let size = 1;
    if (type === "string") {
      const s = enc.encode(v as string);
      keep.push(s);
      view.setBigUint64(o + N.value, addrOf(s), true);
      size = s.length;
    } else if (type === "bool") {
      view.setUint8(o + N.value, v ? 1 : 0);
    } else if (type === "int64") {
      view.setBigInt64(o + N.value, v as bigint, true);
    } else if (type === "float") {
      view.setFloat32(o + N.value, v as number, true);
    } else {
      const list = BigInt64Array.from(v as (number | bigint)[], (x) => BigInt(x));
      keep.push(list);
      view.setBigUint64(o + N.value, addrOf(list), true);
      size = list.length;
    }
    view.setInt32(o + N.type, NAMED_VALUE_TYPE[type], true);
    view.setBigUint64(o + N.valueSize, BigInt(size), true);
  });
  return { bytes, count: entries.length, keep };
}

/**
 * Parse a `--pjrt_option` value `NAME=VALUE` (typed by {@link CREATE_OPTION_TYPES}) or `NAME:TYPE=VALUE` (TYPE
 * one of int64, float, bool, string, int64List; lists comma-separated). Throws a TypeError saying what is wrong.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { parseCreateOption } from "./mod.ts";
 * assert.deepStrictEqual(parseCreateOption("cpu_device_count=4"), ["cpu_device_count", { int64: 4n }]);
 * assert.deepStrictEqual(parseCreateOption("preallocate:bool=false"), ["preallocate", false]);
 * ```
 */
export function parseCreateOption(text: string): [string, NamedValue] {
  const m = /^([A-Za-z_][\w.]*)(?::(\w+))?=(.*)$/s.exec(text);
  if (!m) throw new TypeError(`"${text}" is not NAME=VALUE or NAME:TYPE=VALUE`);
  const [, name, typeName, raw] = m;
  const type = (typeName ?? CREATE_OPTION_TYPES[name]) as NamedValueType | undefined;
  if (!type) throw new TypeError(`unknown option ${name}: give its type, e.g. ${name}:int64=${raw}`);
  if (!(type in NAMED_VALUE_TYPE)) {
    throw new TypeError(`${name}: type ${type} is not one of ${Object.keys(NAMED_VALUE_TYPE).join(", ")}`);
  }
  const int = (x: string) => {
    if (!/^-?\d+$/.test(x.trim())) throw new TypeError(`${name} is an int64, got "${x}"`);
    return BigInt(x.trim());
  };
  switch (type) {
    case "string":
      return [name, raw];
    case "int64":
      return [name, { int64: int(raw) }];
    case "float": {
      const f = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(f)) throw new TypeError(`${name} is a float, got "${raw}"`);
      return [name, { float: f }];
    }
    case "bool":
      if (!/^(true|false|1|0)$/i.test(raw)) {
        throw new TypeError(`${name} is a bool (true|false), got "${raw}"`);
      }
      return [name, /^(true|1)$/i.test(raw)];
    default:
      return [name, { int64List: raw.split(",").filter((x) => x.trim() !== "").map(int) }];
  }
}

/**
 * A `PJRT_Client*`.
 *
 * @example Usage
 * ```ts
 * import { PjrtApi, PjrtClient } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * const client = PjrtClient.create(api, { num_devices: 2 }); // a create option of the test plugin
 * console.log(client.platformName, client.devices.map((d) => [d.id, d.kind]));
 * await client.close(); // destroys every buffer and executable it still tracks
 * api.close();
 * ```
 */
export class PjrtClient {
  /** The plugin the client was created from. */
  readonly api: PjrtApi;
  /** e.g. `cpu`, `cuda`, `tpu`. */
  readonly platformName: string;
  /** The plugin's platform version string. */
  readonly platformVersion: string;
  /** Addressable devices, in the plugin's order. */
  readonly devices: readonly PjrtDevice[];
  #handle: Ptr;
  #buffers = new Set<PjrtBuffer>();
  #executables = new Set<PjrtExecutable>();
  #closing = false;
  #closed: Promise<void> | null = null;
  #resolveClosed: () => void = () => {};

  private constructor(api: PjrtApi, handle: NonNullable<Ptr>) {
    this.api = api;
    this.#handle = handle;
    api.live.clients++;
    this.platformName = this.#string("Client_PlatformName");
    this.platformVersion = this.#string("Client_PlatformVersion");
    this.devices = this.#addressableDevices();
  }

  /** `PJRT_Client_Create` with the plugin's create options (unknown names are usually rejected). */
  static create(api: PjrtApi, options: Record<string, NamedValue> = {}): PjrtClient {
    const nv = encodeNamedValues(options);
    const C = ARGS.Client_Create;
    const a = new Struct(C.size)
      .setPtr(C.options, nv.count ? Deno.UnsafePointer.of(nv.bytes as BufferSource) : null)
      .setU64(C.numOptions, nv.count);
    api.call("Client_Create", a);
    void nv.keep;
    const h = a.ptrAt(C.client);
    if (h === null) throw new Error("PJRT Client_Create returned no client");
    return new PjrtClient(api, h);
  }

  /** The raw `PJRT_Client*` (throws after close()). */
  get handle(): NonNullable<Ptr> {
    if (this.#handle === null) throw new Error("PJRT client used after close()");
    return this.#handle;
  }

  #string(name: "Client_PlatformName" | "Client_PlatformVersion"): string {
    const S = ARGS.Client_String;
    const a = new Struct(S.size).setPtr(S.client, this.handle);
    this.api.call(name, a);
    return readString(a.ptrAt(S.str), a.u64At(S.strSize));
  }

  #addressableDevices(): PjrtDevice[] {
    const D = ARGS.Client_Devices;
    const a = new Struct(D.size).setPtr(D.client, this.handle);
    this.api.call("Client_AddressableDevices", a);
    const n = a.u64At(D.numDevices);
    const list = a.ptrAt(D.devices);
    if (n === 0 || list === null) return [];
    const v = new Deno.UnsafePointerView(list);
    return Array.from({ length: n }, (_, i) => {
      const handle = v.getPointer(8 * i);
      if (handle === null) throw new Error(`PJRT device ${i} is NULL`);
      const G = ARGS.Device_GetDescription;
      const g = new Struct(G.size).setPtr(G.device, handle);
      this.api.call("Device_GetDescription", g);
      const desc = g.ptrAt(G.description);
      const idA = new Struct(ARGS.DeviceDescription_Id.size).setPtr(
        ARGS.DeviceDescription_Id.description,
        desc,
      );
      this.api.call("DeviceDescription_Id", idA);
      const K = ARGS.DeviceDescription_Kind;
      const k = new Struct(K.size).setPtr(K.description, desc);
      this.api.call("DeviceDescription_Kind", k);
      return {
        handle,
        id: idA.i32At(ARGS.DeviceDescription_Id.id),
        kind: readString(k.ptrAt(K.str), k.u64At(K.strSize)),
      };
    });
  }

  /** Compile MLIR text (StableHLO) with serialized `xla.CompileOptionsProto` bytes. */
  compile(mlir: string, compileOptions: Uint8Array): PjrtExecutable {
    const code = new TextEncoder().encode(mlir);
    const format = new TextEncoder().encode("mlir");
    const P = ARGS.Program;
    const prog = new Struct(P.size)
      .setPtr(P.code, addrOf(code))
      .setU64(P.codeSize, code.length)
      .setPtr(P.format, addrOf(format))
      .setU64(P.formatSize, format.length);
    const C = ARGS.Client_Compile;
    const a = new Struct(C.size)
      .setPtr(C.client, this.handle)
      .setPtr(C.program, Deno.UnsafePointer.of(prog.bytes as BufferSource))
      .setPtr(C.options, addrOf(compileOptions))
      .setU64(C.optionsSize, compileOptions.length);
    this.api.call("Client_Compile", a);
    const exe = new PjrtExecutable(
      this.api,
      a.ptrAt(C.executable),
      (h) => this.#adoptBuffer(h),
      (e) => this.#forget(this.#executables, e),
    );
    this.#executables.add(exe);
    return exe;
  }

  #adoptBuffer(h: Ptr): PjrtBuffer {
    const b = new PjrtBuffer(this.api, h, (x) => this.#forget(this.#buffers, x));
    this.#buffers.add(b);
    return b;
  }

  /**
   * Copy a dense row-major host array to `device`. Resolves once the plugin is done with `data` (which stays
   * referenced until then). For bf16 pass the raw 16-bit words (Uint16Array).
   */
  async bufferFromHost(
    data: ArrayBufferView,
    dims: number[],
    type: ElementType,
    device: PjrtDevice,
  ): Promise<PjrtBuffer> {
    const need = dims.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[type];
    if (data.byteLength !== need) {
      throw new Error(
        `bufferFromHost: ${data.byteLength} bytes for ${type}[${dims.join(",")}] (need ${need})`,
      );
    }
    const dimArr = BigInt64Array.from(dims, (d) => BigInt(d));
    const B = ARGS.Client_BufferFromHostBuffer;
    const a = new Struct(B.size)
      .setPtr(B.client, this.handle)
      .setPtr(B.data, addrOf(data))
      .setI32(B.type, ELEMENT_TYPE[type])
      .setPtr(B.dims, addrOf(dimArr))
      .setU64(B.numDims, dims.length)
      .setI32(B.semantics, HOST_BUFFER_SEMANTICS.immutableUntilTransferCompletes)
      .setPtr(B.device, device.handle);
    this.api.call("Client_BufferFromHostBuffer", a);
    const buf = this.#adoptBuffer(a.ptrAt(B.buffer));
    const done = this.api.adoptEvent(a.ptrAt(B.doneWithHostBuffer));
    try {
      await this.api.awaitEvent("Client_BufferFromHostBuffer", done, [data, dimArr]);
    } catch (e) {
      buf.destroy();
      throw e;
    }
    return buf;
  }

  /** Buffers and executables still alive on this client. */
  liveCounts(): { buffers: number; executables: number } {
    return { buffers: this.#buffers.size, executables: this.#executables.size };
  }

  /** A tracked handle was destroyed; the last one of a closing client lets the client go. */
  #forget<T>(set: Set<T>, x: T): void {
    set.delete(x);
    if (this.#closing && this.#buffers.size === 0 && this.#executables.size === 0) this.#destroyClient();
  }

  /**
   * Destroy every tracked buffer and executable, then the client. A buffer or executable still used by work in
   * flight is destroyed when that work completes (see {@link PjrtBuffer.destroy}); the client is destroyed only
   * after the last of them — never under them. The promise resolves once the client is gone. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#closing = true;
    for (const b of [...this.#buffers]) b.destroy();
    for (const e of [...this.#executables]) e.destroy();
    if (this.#buffers.size === 0 && this.#executables.size === 0) this.#destroyClient();
    return this.#closed;
  }

  /** Whether the C client is still alive (false once close() has destroyed it). */
  get alive(): boolean {
    return this.#handle !== null;
  }

  #destroyClient(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.api.live.clients--;
    try {
      this.api.call(
        "Client_Destroy",
        new Struct(ARGS.Client_Destroy.size).setPtr(ARGS.Client_Destroy.client, h),
      );
    } finally {
      this.#resolveClosed();
    }
  }
}
