/**
 * The low layer of the binding: opens a plugin with `Deno.dlopen`, checks its ABI, wraps the function table,
 * builds Args structs, and turns every returned `PJRT_Error*` into a thrown {@link PjrtError} (destroying the C
 * error first). Events are awaited on a Deno pool thread (`nonblocking` FFI) so the JS thread never blocks.
 *
 * @example
 * ```ts
 * import { PjrtApi } from "./ffi.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * console.log(api.version); // { major: 0, minor: 90 }
 * api.close();
 * ```
 */
import {
  API,
  ARGS,
  MIN_API_STRUCT_SIZE,
  NAMED_VALUE_TYPE,
  SLOT,
  type SlotName,
  slotOffset,
  SUPPORTED_MAJOR,
} from "./api.ts";
import { PjrtError, PjrtLoadError, PjrtStructSizeError } from "./errors.ts";

/** A raw C pointer (null for NULL). */
/** A raw C pointer (null for NULL), as Deno FFI hands them out: PJRT handles are these. */
export type Ptr = Deno.PointerValue;

/** Numeric address of a pointer (0n for null). */
export function addr(p: Ptr): bigint {
  return p === null ? 0n : BigInt(Deno.UnsafePointer.value(p));
}

/** Address of a JS buffer's bytes (0n when empty). The caller must keep `buf` referenced while C uses it. */
export function addrOf(buf: ArrayBufferView): bigint {
  if (buf.byteLength === 0) return 0n;
  return addr(Deno.UnsafePointer.of(buf as unknown as BufferSource));
}

/** Pointer from an address (null for 0). */
export function ptr(a: bigint): Ptr {
  return a === 0n ? null : Deno.UnsafePointer.create(a);
}

/** A zero-filled Args struct with `struct_size` set, plus typed field access. */
export class Struct {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(size: number, structSize = size) {
    // Round up so 8-byte fields near the end stay in bounds; struct_size stays the header's value.
    this.bytes = new Uint8Array(Math.ceil(size / 8) * 8);
    this.view = new DataView(this.bytes.buffer);
    this.view.setBigUint64(0, BigInt(structSize), true);
  }
  setPtr(off: number, a: bigint | Ptr): this {
    this.view.setBigUint64(off, typeof a === "bigint" ? a : addr(a), true);
    return this;
  }
  setU64(off: number, v: number | bigint): this {
    this.view.setBigUint64(off, BigInt(v), true);
    return this;
  }
  setI32(off: number, v: number): this {
    this.view.setInt32(off, v, true);
    return this;
  }
  ptrAt(off: number): Ptr {
    return ptr(this.view.getBigUint64(off, true));
  }
  u64At(off: number): number {
    return Number(this.view.getBigUint64(off, true));
  }
  i32At(off: number): number {
    return this.view.getInt32(off, true);
  }
}

/** UTF-8 text of `size` bytes at `p`, copied out of C memory. */
export function readString(p: Ptr, size: number): string {
  if (p === null || size === 0) return "";
  const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(p, size)).slice();
  return new TextDecoder().decode(bytes);
}

type CallFn = (args: Uint8Array) => Ptr;

type PluginLibrary = Deno.DynamicLibrary<{ GetPjrtApi: { parameters: []; result: "pointer" } }>;
const libraries = new Map<string, PluginLibrary>();
const initialized = new Set<string>();

/** dlopen a plugin once per process and keep it loaded (see {@link PjrtApi.close}). */
function openLibrary(path: string): PluginLibrary {
  let lib = libraries.get(path);
  if (!lib) {
    try {
      lib = Deno.dlopen(path, { GetPjrtApi: { parameters: [], result: "pointer" } });
    } catch (e) {
      const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
      throw new PjrtLoadError("open", path, `cannot load PJRT plugin: ${msg}`);
    }
    libraries.set(path, lib);
  }
  return lib;
}

/** A value of `PJRT_Plugin_Attributes` (int64 lists as arrays). */
export type AttributeValue = string | number | boolean | number[];

/** Decode a C array of `count` `PJRT_NamedValue`s at `p` (strings and lists copied out). */
export function readNamedValues(p: Ptr, count: number): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  if (p === null || count === 0) return out;
  const N = ARGS.NamedValue;
  const v = new Deno.UnsafePointerView(p);
  for (let i = 0; i < count; i++) {
    const o = i * N.size;
    const name = readString(v.getPointer(o + N.name), Number(v.getBigUint64(o + N.nameSize)));
    const type = v.getInt32(o + N.type);
    const size = Number(v.getBigUint64(o + N.valueSize));
    if (type === NAMED_VALUE_TYPE.string) out[name] = readString(v.getPointer(o + N.value), size);
    else if (type === NAMED_VALUE_TYPE.int64) out[name] = Number(v.getBigInt64(o + N.value));
    else if (type === NAMED_VALUE_TYPE.float) out[name] = v.getFloat32(o + N.value);
    else if (type === NAMED_VALUE_TYPE.bool) out[name] = v.getUint8(o + N.value) !== 0;
    else if (type === NAMED_VALUE_TYPE.int64List) {
      const lp = v.getPointer(o + N.value);
      const lv = lp === null ? null : new Deno.UnsafePointerView(lp);
      out[name] = Array.from({ length: lv ? size : 0 }, (_, k) => Number(lv!.getBigInt64(8 * k)));
    }
  }
  return out;
}

/** Live-handle counts the binding keeps (what it still has to destroy). */
export interface LiveCounts {
  /** `PJRT_Event`s not yet destroyed. */
  events: number;
  /** `PJRT_Buffer`s not yet destroyed. */
  buffers: number;
  /** `PJRT_LoadedExecutable`s not yet destroyed. */
  executables: number;
  /** `PJRT_Client`s not yet destroyed. */
  clients: number;
}

/**
 * One opened plugin: its function table and version.
 *
 * @example Usage
 * ```ts
 * import { PjrtApi } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so"); // the C test double (native/build.sh)
 * console.log(api.version, api.attributes()); // { major: 0, minor: … } and the plugin's attributes
 * console.log(api.live); // handles still to destroy: all 0 here
 * api.close();
 * ```
 */
export class PjrtApi {
  /** The plugin's path as opened. */
  readonly path: string;
  /** The plugin's PJRT C API version. */
  readonly version: { major: number; minor: number };
  /** `PJRT_Api.struct_size` in bytes. */
  readonly tableSize: number;
  /** Handles created through this API and not yet destroyed. */
  readonly live: LiveCounts = { events: 0, buffers: 0, executables: 0, clients: 0 };
  #lib: PluginLibrary;
  #fns = new Map<number, CallFn>();
  #table: Deno.UnsafePointerView;
  #await: (args: Uint8Array) => Promise<Ptr>;
  #errorDestroy: (args: Uint8Array) => void;
  #errorMessage: (args: Uint8Array) => void;
  #closed = false;

  private constructor(path: string) {
    this.path = path;
    this.#lib = openLibrary(path);
    const apiPtr = this.#lib.symbols.GetPjrtApi();
    if (apiPtr === null) throw new PjrtLoadError("symbol", path, "GetPjrtApi() returned NULL");
    this.#table = new Deno.UnsafePointerView(apiPtr);
    this.tableSize = Number(this.#table.getBigUint64(API.structSize));
    this.version = { major: this.#table.getInt32(API.major), minor: this.#table.getInt32(API.minor) };
    if (this.version.major !== SUPPORTED_MAJOR) {
      throw new PjrtLoadError(
        "version",
        path,
        `PJRT plugin speaks C API ${this.version.major}.${this.version.minor}; this binding needs major version ${SUPPORTED_MAJOR}`,
      );
    }
    if (this.tableSize < MIN_API_STRUCT_SIZE) {
      throw new PjrtLoadError(
        "table",
        path,
        `PJRT plugin's function table is ${this.tableSize} bytes (API ${this.version.major}.${this.version.minor}); this binding needs at least ${MIN_API_STRUCT_SIZE}`,
      );
    }
    const voidFn = (slot: number) =>
      new Deno.UnsafeFnPointer(this.#slotPtr(slot), { parameters: ["buffer"], result: "void" });
    const ed = voidFn(SLOT.Error_Destroy);
    const em = voidFn(SLOT.Error_Message);
    this.#errorDestroy = (a) => ed.call(a);
    this.#errorMessage = (a) => em.call(a);
    const aw = new Deno.UnsafeFnPointer(this.#slotPtr(SLOT.Event_Await), {
      parameters: ["buffer"],
      result: "pointer",
      nonblocking: true,
    });
    this.#await = (a) => aw.call(a);
  }

  /**
   * dlopen `path` (once per process), check the ABI version and table size, and run `PJRT_Plugin_Initialize`
   * (once per process and plugin).
   */
  static open(path: string): PjrtApi {
    const api = new PjrtApi(path);
    if (!initialized.has(path)) {
      api.call("Plugin_Initialize", new Struct(ARGS.Plugin_Initialize.size));
      initialized.add(path);
    }
    return api;
  }

  #slotPtr<T>(slot: number): Deno.PointerObject<T> {
    const off = slotOffset(slot);
    const p = off + 8 <= this.tableSize ? this.#table.getPointer(off) : null;
    if (p === null) throw new PjrtLoadError("table", this.path, `PJRT function slot ${slot} is missing`);
    return p as Deno.PointerObject<T>;
  }

  #fn(slot: number): CallFn {
    let f = this.#fns.get(slot);
    if (!f) {
      const fp = new Deno.UnsafeFnPointer(this.#slotPtr(slot), { parameters: ["buffer"], result: "pointer" });
      f = (a) => fp.call(a);
      this.#fns.set(slot, f);
    }
    return f;
  }

  /**
   * Call `PJRT_<name>(args)`; a returned error is destroyed and thrown as {@link PjrtError}.
   *
   * @ignore binding-internal (the Args structs are api.ts's layouts), used by the client, buffer and executable.
   */
  call(name: SlotName, args: Struct): void {
    this.check(name, this.#fn(SLOT[name])(args.bytes));
  }

  /**
   * Throw (after destroying it) if `err` is a `PJRT_Error*`.
   *
   * @ignore binding-internal, as {@link PjrtApi.call}.
   */
  check(call: string, err: Ptr): void {
    if (err === null) return;
    throw this.takeError(call, err);
  }

  /**
   * `PJRT_Plugin_Attributes`: e.g. `xla_version`, `stablehlo_current_version` / `stablehlo_minimum_version`
   * (int64 lists [major, minor, patch]). Empty when the plugin's table has no such slot.
   */
  attributes(): Record<string, AttributeValue> {
    if (slotOffset(SLOT.Plugin_Attributes) + 8 > this.tableSize) return {};
    const A = ARGS.Plugin_Attributes;
    const a = new Struct(A.size);
    this.call("Plugin_Attributes", a);
    return readNamedValues(a.ptrAt(A.attributes), a.u64At(A.numAttributes));
  }

  /** Read code + message of `err`, destroy it, return the JS error. */
  takeError(call: string, err: NonNullable<Ptr>): PjrtError {
    const m = new Struct(ARGS.Error_Message.size).setPtr(ARGS.Error_Message.error, err);
    this.#errorMessage(m.bytes);
    const message = readString(m.ptrAt(ARGS.Error_Message.message), m.u64At(ARGS.Error_Message.messageSize));
    const c = new Struct(ARGS.Error_GetCode.size).setPtr(ARGS.Error_GetCode.error, err);
    const codeErr = this.#fn(SLOT.Error_GetCode)(c.bytes);
    const code = codeErr === null ? c.i32At(ARGS.Error_GetCode.code) : 2;
    if (codeErr !== null) this.#destroyError(codeErr);
    this.#destroyError(err);
    const tooSmall = PjrtStructSizeError.parse(message);
    return tooSmall
      ? new PjrtStructSizeError(call, code, message, tooSmall, this.version)
      : new PjrtError(call, code, message);
  }

  #destroyError(err: NonNullable<Ptr>): void {
    this.#errorDestroy(new Struct(ARGS.Error_Destroy.size).setPtr(ARGS.Error_Destroy.error, err).bytes);
  }

  /** Note that a PJRT_Event was handed to us (so {@link awaitEvent} must destroy it). */
  adoptEvent(ev: Ptr): Ptr {
    if (ev !== null) this.live.events++;
    return ev;
  }

  /**
   * Wait for `event` on a pool thread, destroy it, and throw its error if it failed. `keepAlive` holds the
   * JS buffers the pending work reads or writes until the event has completed.
   */
  async awaitEvent(call: string, event: Ptr, keepAlive?: unknown): Promise<void> {
    if (event === null) return;
    const args = new Struct(ARGS.Event.size).setPtr(ARGS.Event.event, event);
    let err: Ptr;
    try {
      err = await this.#await(args.bytes);
    } finally {
      this.destroyEvent(event);
      // The pool thread reads `args` during the call: both it and the work's buffers stay referenced until here.
      void args;
      void keepAlive;
    }
    this.check(call, err);
  }

  /** `PJRT_Event_Destroy` (errors from it are reported, not thrown: it runs in cleanup paths). */
  destroyEvent(event: Ptr): void {
    if (event === null) return;
    const err = this.#fn(SLOT.Event_Destroy)(
      new Struct(ARGS.Event.size).setPtr(ARGS.Event.event, event).bytes,
    );
    this.live.events--;
    if (err !== null) console.error(this.takeError("Event_Destroy", err).message);
  }

  /**
   * Release this handle. The shared object itself stays loaded for the life of the process: PJRT plugins
   * start threads of their own and are not built to be unloaded (JAX never unloads them either).
   */
  close(): void {
    this.#closed = true;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }
}
