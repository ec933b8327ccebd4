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
} from "./api.ts";
import { PjrtBuffer } from "./buffer.ts";
import { PjrtExecutable } from "./executable.ts";
import { addrOf, type PjrtApi, type Ptr, readString, Struct } from "./ffi.ts";

/** A create option value: string, int64 (bigint or integer number), float (`{float}`), bool, int64 list. */
export type NamedValue = string | number | bigint | boolean | number[] | { float: number };

/** An addressable device. */
export interface PjrtDevice {
  readonly handle: NonNullable<Ptr>;
  /** `PJRT_DeviceDescription_Id`. */
  readonly id: number;
  /** Vendor string, e.g. "NVIDIA H200". */
  readonly kind: string;
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
    let type: number;
    let size = 1;
    if (typeof value === "string") {
      const s = enc.encode(value);
      keep.push(s);
      type = NAMED_VALUE_TYPE.string;
      view.setBigUint64(o + N.value, addrOf(s), true);
      size = s.length;
    } else if (typeof value === "boolean") {
      type = NAMED_VALUE_TYPE.bool;
      view.setUint8(o + N.value, value ? 1 : 0);
    } else if (typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value))) {
      type = NAMED_VALUE_TYPE.int64;
      view.setBigInt64(o + N.value, BigInt(value), true);
    } else if (typeof value === "number" || !Array.isArray(value)) {
      type = NAMED_VALUE_TYPE.float;
      view.setFloat32(o + N.value, typeof value === "number" ? value : value.float, true);
    } else {
      const list = BigInt64Array.from(value, (v) => BigInt(v));
      keep.push(list);
      type = NAMED_VALUE_TYPE.int64List;
      view.setBigUint64(o + N.value, addrOf(list), true);
      size = list.length;
    }
    view.setInt32(o + N.type, type, true);
    view.setBigUint64(o + N.valueSize, BigInt(size), true);
  });
  return { bytes, count: entries.length, keep };
}

/** A `PJRT_Client*`. */
export class PjrtClient {
  readonly api: PjrtApi;
  readonly platformName: string;
  readonly platformVersion: string;
  readonly devices: readonly PjrtDevice[];
  #handle: Ptr;
  #buffers = new Set<PjrtBuffer>();
  #executables = new Set<PjrtExecutable>();

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
      (e) => this.#executables.delete(e),
    );
    this.#executables.add(exe);
    return exe;
  }

  #adoptBuffer(h: Ptr): PjrtBuffer {
    const b = new PjrtBuffer(this.api, h, (x) => this.#buffers.delete(x));
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

  /** Destroy every tracked buffer and executable, then the client. Idempotent. */
  close(): void {
    if (this.#handle === null) return;
    for (const b of [...this.#buffers]) b.destroy();
    for (const e of [...this.#executables]) e.destroy();
    const h = this.#handle;
    this.#handle = null;
    this.api.live.clients--;
    this.api.call(
      "Client_Destroy",
      new Struct(ARGS.Client_Destroy.size).setPtr(ARGS.Client_Destroy.client, h),
    );
  }
}
