/**
 * Device buffers. A {@link PjrtBuffer} counts the calls in flight that use it; `destroy()` during such a call is
 * deferred until the last one completes, so a buffer referenced by an execution or a transfer stays alive until
 * that work's events complete.
 *
 * @example
 * ```ts
 * import type { PjrtBuffer } from "./buffer.ts";
 * async function read(b: PjrtBuffer): Promise<Float32Array> {
 *   return new Float32Array((await b.toHost()).buffer);
 * }
 * ```
 */
import { ARGS, ELEMENT_TYPE, type ElementType, MEMORY_LAYOUT_TYPE } from "./api.ts";
import { addrOf, type PjrtApi, type Ptr, Struct } from "./ffi.ts";

const TYPE_NAMES = new Map<number, ElementType>(
  Object.entries(ELEMENT_TYPE).map(([k, v]) => [v, k as ElementType]),
);

/** A `PJRT_Buffer_MemoryLayout` struct and the array it points at (keep both referenced while C reads them). */
export interface HostLayout {
  struct: Struct;
  minorToMajor: BigInt64Array;
}

/**
 * The dense row-major `PJRT_Buffer_MemoryLayout` for `rank` dimensions: the Tiled variant with
 * minor_to_major = [rank-1, ..., 0] and no tiles (XLA's ToHostBuffer rejects the Strides variant and tiles).
 */
export function rowMajorLayout(rank: number): HostLayout {
  const L = ARGS.Buffer_MemoryLayout;
  const T = ARGS.Buffer_MemoryLayout_Tiled;
  const minorToMajor = new BigInt64Array(rank);
  for (let i = 0; i < rank; i++) minorToMajor[i] = BigInt(rank - 1 - i);
  const struct = new Struct(L.size);
  struct.setU64(L.union, T.size) // the embedded Tiled struct's own struct_size
    .setPtr(L.union + T.minorToMajor, addrOf(minorToMajor))
    .setU64(L.union + T.minorToMajorSize, rank)
    .setI32(L.type, MEMORY_LAYOUT_TYPE.tiled);
  return { struct, minorToMajor };
}

/**
 * A `PJRT_Buffer*` owned by JS.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { PjrtApi, PjrtClient } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * const client = PjrtClient.create(api);
 * const buf = await client.bufferFromHost(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], "f32", client.devices[0]);
 * assert.deepStrictEqual([buf.elementType(), buf.dims()], ["f32", [2, 3]]);
 * console.log(new Float32Array((await buf.toHost()).buffer)); // [1, 2, 3, 4, 5, 6]
 * buf.destroy();
 * await client.close();
 * api.close();
 * ```
 */
export class PjrtBuffer {
  /** The plugin the buffer belongs to. */
  readonly api: PjrtApi;
  #handle: Ptr;
  #inFlight = 0;
  #destroyRequested = false;
  #onDestroyed?: (b: PjrtBuffer) => void;

  /** Adopt a raw buffer handle (the client does this; `onDestroyed` lets it stop tracking the buffer). */
  constructor(api: PjrtApi, handle: Ptr, onDestroyed?: (b: PjrtBuffer) => void) {
    this.api = api;
    this.#handle = handle;
    this.#onDestroyed = onDestroyed;
    api.live.buffers++;
  }

  /** The raw handle (throws once destroyed). */
  get handle(): NonNullable<Ptr> {
    if (this.#handle === null || this.#destroyRequested) throw new Error("PJRT buffer used after destroy()");
    return this.#handle;
  }

  /** Whether destroy() has been requested. */
  get destroyed(): boolean {
    return this.#destroyRequested;
  }

  /** Mark the buffer in use by an asynchronous call; the returned function releases it. */
  retain(): () => void {
    void this.handle;
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#inFlight === 0 && this.#destroyRequested) this.#destroyNow();
    };
  }

  /** Element type. */
  elementType(): ElementType {
    const a = new Struct(ARGS.Buffer_ElementType.size).setPtr(ARGS.Buffer_ElementType.buffer, this.handle);
    this.api.call("Buffer_ElementType", a);
    const t = a.i32At(ARGS.Buffer_ElementType.type);
    const name = TYPE_NAMES.get(t);
    if (!name) throw new Error(`unsupported PJRT element type ${t}`);
    return name;
  }

  /** Dimensions. */
  dims(): number[] {
    const a = new Struct(ARGS.Buffer_Dimensions.size).setPtr(ARGS.Buffer_Dimensions.buffer, this.handle);
    this.api.call("Buffer_Dimensions", a);
    const n = a.u64At(ARGS.Buffer_Dimensions.numDims);
    const p = a.ptrAt(ARGS.Buffer_Dimensions.dims);
    if (n === 0 || p === null) return [];
    const v = new Deno.UnsafePointerView(p);
    return Array.from({ length: n }, (_, i) => Number(v.getBigInt64(8 * i)));
  }

  /**
   * Copy to host as dense row-major bytes. The row-major host layout is requested explicitly (both for the size
   * query and the copy): with `host_layout = NULL` the plugin uses the device buffer's own layout, which on TPU
   * is tiled/padded, so the bytes would not be row-major. `into` may be given to avoid an allocation.
   */
  async toHost(into?: Uint8Array): Promise<Uint8Array> {
    const release = this.retain();
    try {
      const A = ARGS.Buffer_ToHostBuffer;
      const layout = rowMajorLayout(this.dims().length);
      const q = new Struct(A.size).setPtr(A.src, this.handle).setPtr(
        A.hostLayout,
        addrOf(layout.struct.bytes),
      );
      this.api.call("Buffer_ToHostBuffer", q); // dst = NULL: asks for the size
      const size = q.u64At(A.dstSize);
      const dst = into ?? new Uint8Array(size);
      if (dst.byteLength < size) throw new Error(`toHost: destination ${dst.byteLength} < ${size} bytes`);
      const a = new Struct(A.size).setPtr(A.src, this.handle)
        .setPtr(A.hostLayout, addrOf(layout.struct.bytes))
        .setPtr(A.dst, Deno.UnsafePointer.of(dst as BufferSource))
        .setU64(A.dstSize, dst.byteLength);
      this.api.call("Buffer_ToHostBuffer", a);
      // `dst` is written by the plugin until the event completes, and the layout may be read until then too:
      // keep both referenced.
      await this.api.awaitEvent("Buffer_ToHostBuffer", this.api.adoptEvent(a.ptrAt(A.event)), [dst, layout]);
      return dst.byteLength === size ? dst : dst.subarray(0, size);
    } finally {
      release();
    }
  }

  /** Destroy now, or as soon as the calls using it complete. Idempotent. */
  destroy(): void {
    if (this.#destroyRequested || this.#handle === null) return;
    this.#destroyRequested = true;
    if (this.#inFlight === 0) this.#destroyNow();
  }

  #destroyNow(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.api.live.buffers--;
    try {
      this.api.call(
        "Buffer_Destroy",
        new Struct(ARGS.Buffer_Destroy.size).setPtr(ARGS.Buffer_Destroy.buffer, h),
      );
    } finally {
      // after the C destroy: the owner may destroy the client once its last buffer is gone
      this.#onDestroyed?.(this);
    }
  }
}
