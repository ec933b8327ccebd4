/**
 * Streaming pickle encoder for seed-compatible shards: `{layer:int → [ {task_id, sample_idx, activation, shape,
 * prompt, ...extra} ]}` with `activation` a numpy ndarray. Protocol 4, no frames. The top dict stays at the
 * bottom of the stack; each layer's list is created once (memoized, set into the dict) and later records are
 * appended through the memo (`BINGET list, record, APPEND, POP`), so records can be written one at a time in any
 * layer order and nothing is buffered. Arrays use the pattern numpy itself emits
 * (`numpy.core.multiarray._reconstruct` + `numpy.dtype` + BUILD), which numpy 1.x and 2.x both unpickle.
 *
 * @example
 * ```ts
 * import { PickleShardEncoder } from "./pickle_writer.ts";
 * const enc = new PickleShardEncoder("float32");
 * const parts = [enc.begin(), ...enc.record({ task_id: "t", sample_idx: 0, layer: 3, prompt: "p",
 *   activation: new Float32Array(4), shape: [2, 2] }), enc.end()];
 * // concatenated, `parts` is a pickle that `pickle.loads` turns into {3: [{...}]}
 * ```
 */
import type { ActivationDType, ActivationRecord } from "../types.ts";
import { ActshardError } from "../errors.ts";
import { encodeActivation } from "../util/dtype.ts";

const te = new TextEncoder();

/** Growable opcode buffer. */
class Ops {
  buf = new Uint8Array(256);
  n = 0;
  #ensure(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.n + k));
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
  }
  op(...bytes: number[]): this {
    this.#ensure(bytes.length);
    for (const b of bytes) this.buf[this.n++] = b;
    return this;
  }
  u32(v: number): this {
    return this.op(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }
  u64(v: number): this {
    return this.u32(v >>> 0).u32(Math.floor(v / 2 ** 32));
  }
  raw(b: Uint8Array): this {
    this.#ensure(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
    return this;
  }
  int(v: number): this {
    if (Number.isInteger(v) && v >= 0 && v < 256) return this.op(0x4b, v); // BININT1
    if (Number.isInteger(v) && v >= 0 && v < 65536) return this.op(0x4d, v & 0xff, v >>> 8); // BININT2
    if (Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) return this.op(0x4a).u32(v >>> 0); // BININT
    if (Number.isSafeInteger(v)) { // LONG1, 8 bytes two's complement
      const b = new DataView(new ArrayBuffer(8));
      b.setBigInt64(0, BigInt(v), true);
      return this.op(0x8a, 8).raw(new Uint8Array(b.buffer));
    }
    const b = new DataView(new ArrayBuffer(8)); // BINFLOAT (big-endian)
    b.setFloat64(0, v);
    return this.op(0x47).raw(new Uint8Array(b.buffer));
  }
  str(s: string): this {
    const b = te.encode(s);
    if (b.length < 256) return this.op(0x8c, b.length).raw(b); // SHORT_BINUNICODE
    return this.op(0x58).u32(b.length).raw(b); // BINUNICODE
  }
  bytesHeader(len: number): this {
    if (len < 256) return this.op(0x43, len); // SHORT_BINBYTES
    if (len < 2 ** 32) return this.op(0x42).u32(len); // BINBYTES
    return this.op(0x8e).u64(len); // BINBYTES8
  }
  get(memo: number): this {
    return memo < 256 ? this.op(0x68, memo) : this.op(0x6a).u32(memo); // BINGET / LONG_BINGET
  }
  value(v: unknown): this {
    if (v === null || v === undefined) return this.op(0x4e);
    if (v === true) return this.op(0x88);
    if (v === false) return this.op(0x89);
    if (typeof v === "number") return this.int(v);
    if (typeof v === "string") return this.str(v);
    if (v instanceof Uint8Array) return this.bytesHeader(v.length).raw(v);
    if (Array.isArray(v)) {
      this.op(0x5d, 0x28); // EMPTY_LIST MARK
      for (const x of v) this.value(x);
      return this.op(0x65); // APPENDS
    }
    if (typeof v === "object") {
      this.op(0x7d, 0x28); // EMPTY_DICT MARK
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) this.str(k).value(x);
      return this.op(0x75); // SETITEMS
    }
    throw new ActshardError(`cannot pickle a ${typeof v}`, { kind: "internal" });
  }
  take(): Uint8Array {
    const out = this.buf.slice(0, this.n);
    this.n = 0;
    return out;
  }
}

const MEMO_RECONSTRUCT = 1;
const MEMO_NDARRAY = 2;
const MEMO_DTYPE = 3;
const NUMPY_CODE: Record<string, string> = { float32: "f4", float16: "f2" };

/** Encodes one shard's pickle as a sequence of byte parts. */
export class PickleShardEncoder {
  #ops = new Ops();
  #memo = 4;
  #lists = new Map<number, number>();

  constructor(private dtype: ActivationDType) {
    // Which dtypes pickle holds is the format registry's rule (formats/pickle.ts), checked before a writer opens.
    if (!NUMPY_CODE[dtype]) {
      throw new ActshardError(`no numpy dtype code for ${dtype}`, { kind: "internal" });
    }
  }

  /** PROTO 4, the top dict (memo 0) and the three numpy globals (memo 1..3). */
  begin(): Uint8Array {
    const o = this.#ops.op(0x80, 4, 0x7d, 0x94); // PROTO 4, EMPTY_DICT, MEMOIZE
    o.str("numpy.core.multiarray").str("_reconstruct").op(0x93, 0x94, 0x30); // STACK_GLOBAL MEMOIZE POP
    o.str("numpy").str("ndarray").op(0x93, 0x94, 0x30);
    o.str("numpy").str("dtype").op(0x93, 0x94, 0x30);
    return o.take();
  }

  /** One record: [opcodes up to the array bytes, array bytes, the rest]. */
  record(r: ActivationRecord, stored?: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
    const o = this.#ops;
    let list = this.#lists.get(r.layer);
    if (list === undefined) {
      list = this.#memo++;
      this.#lists.set(r.layer, list);
      o.int(r.layer).op(0x5d, 0x94, 0x73); // key, EMPTY_LIST, MEMOIZE, SETITEM
    }
    o.get(list).op(0x7d, 0x28); // the list; EMPTY_DICT MARK
    o.str("task_id").str(r.task_id).str("sample_idx").int(r.sample_idx).str("activation");
    // _reconstruct(ndarray, (0,), b'b')
    o.get(MEMO_RECONSTRUCT).get(MEMO_NDARRAY).op(0x4b, 0, 0x85).op(0x43, 1, 0x62).op(0x87, 0x52);
    // state: (1, shape, dtype(code, False, True) + BUILD (3, '<', None, None, None, -1, -1, 0), False, bytes)
    o.op(0x28, 0x4b, 1);
    this.#shape(r.shape);
    o.get(MEMO_DTYPE).str(NUMPY_CODE[this.dtype]).op(0x89, 0x88, 0x87, 0x52);
    o.op(0x28, 0x4b, 3).str("<").op(0x4e, 0x4e, 0x4e).int(-1).int(-1).op(0x4b, 0, 0x74, 0x62);
    const data = stored ?? encodeActivation(r.activation, this.dtype);
    o.op(0x89).bytesHeader(data.length);
    const head = o.take();
    o.op(0x74, 0x62); // TUPLE BUILD
    o.str("shape");
    this.#shape(r.shape);
    o.str("prompt").str(r.prompt);
    for (const [k, v] of Object.entries(r.extra ?? {})) o.str(k).value(v);
    o.op(0x75, 0x61, 0x30); // SETITEMS APPEND POP
    return [head, data, o.take()];
  }

  #shape(shape: readonly number[]): void {
    const o = this.#ops;
    if (shape.length === 2) o.int(shape[0]).int(shape[1]).op(0x86);
    else {
      o.op(0x28);
      for (const d of shape) o.int(d);
      o.op(0x74);
    }
  }

  /** STOP. */
  end(): Uint8Array {
    return this.#ops.op(0x2e).take();
  }
}
