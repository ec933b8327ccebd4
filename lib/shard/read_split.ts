/**
 * Reading an uncompressed pickle shard so that each large array's bytes arrive as a buffer of their own, read
 * by the kernel straight into it (read_worker.ts, in the read Worker). Read in fixed chunks, an array's bytes
 * would be copied once more on the main thread, out of the chunk into the record's own buffer (an aligned
 * array the record can keep and the writer can hand on: byte_source.ts's `takeOwned`); in the `shard` stage
 * that copy was ≈ 6 % of the CPU (perf, pickle → none).
 *
 * The splitter walks the pickle's opcodes (pickletools' argument layouts; it decodes nothing) in small windows,
 * and cuts the stream right before the data of every `BINBYTES`, `BINBYTES8` or `BYTEARRAY8` of at least
 * {@link BIG_PAYLOAD} bytes: the opcodes up to it come as one chunk, the data as the next, `whole`. Only where
 * the chunks end changes, never the bytes: an opcode it does not know, or anything after `STOP`, and it reads
 * the rest in plain chunks, which the reader copies as before.
 *
 * @example
 * ```ts
 * import { splitPickle } from "./read_split.ts";
 * // A pickle of one 300 kB bytes object: PROTO 4, BINBYTES8 n, the data, STOP.
 * const n = 300_000;
 * const bytes = new Uint8Array(2 + 9 + n + 1);
 * bytes.set([0x80, 4, 0x8e]);
 * new DataView(bytes.buffer).setBigUint64(3, BigInt(n), true);
 * bytes[bytes.length - 1] = 0x2e;
 * let at = 0;
 * const file = {
 *   read(p: Uint8Array): Promise<number | null> {
 *     const k = Math.min(p.length, bytes.length - at);
 *     p.set(bytes.subarray(at, at + k));
 *     at += k;
 *     return Promise.resolve(k > 0 ? k : null);
 *   },
 * };
 * for await (const c of splitPickle(file, (k) => new Uint8Array(k))) console.log(c.chunk.length, c.whole);
 * // 11 false, 300000 true, 1 false
 * ```
 *
 * @module
 */

/** Arrays' data from this size up come as buffers of their own (smaller ones stay in the opcodes' chunks). */
export const BIG_PAYLOAD = 256 << 10;
/** The opcodes are read in windows of this size first; a window with no large array in it doubles the next. */
const FIRST_WINDOW = 64 << 10;
/** Windows stop doubling here; the plain chunks past an unknown opcode are this size too. */
const LAST_WINDOW = 4 << 20;

/** What the splitter reads: sequential reads, `null` at the end (a Deno.FsFile). */
export interface SplitFile {
  read(p: Uint8Array): Promise<number | null>;
}

/** One piece of the stream: `whole` when it is exactly one large array's data, in a buffer of its own. */
export interface SplitChunk {
  chunk: Uint8Array;
  whole: boolean;
}

/** Opcodes with an argument of a fixed size: that size. */
const FIXED: Record<number, number> = {
  0x4b: 1, // BININT1
  0x4d: 2, // BININT2
  0x4a: 4, // BININT
  0x47: 8, // BINFLOAT
  0x68: 1, // BINGET
  0x6a: 4, // LONG_BINGET
  0x71: 1, // BINPUT
  0x72: 4, // LONG_BINPUT
  0x80: 1, // PROTO
  0x82: 1, // EXT1
  0x83: 2, // EXT2
  0x84: 4, // EXT4
  0x95: 8, // FRAME (its contents are opcodes, walked like the rest)
};
/** Opcodes whose argument is a little-endian length of this many bytes and then that many bytes. */
const COUNTED: Record<number, number> = {
  0x55: 1, // SHORT_BINSTRING
  0x54: 4, // BINSTRING
  0x43: 1, // SHORT_BINBYTES
  0x42: 4, // BINBYTES
  0x8e: 8, // BINBYTES8
  0x96: 8, // BYTEARRAY8
  0x8c: 1, // SHORT_BINUNICODE
  0x58: 4, // BINUNICODE
  0x8d: 8, // BINUNICODE8
  0x8a: 1, // LONG1
  0x8b: 4, // LONG4
};
/** Counted opcodes whose data may be a large array's (numpy's, protocols 3–5). */
const ARRAY_DATA = new Set([0x42, 0x8e, 0x96]);
/** Opcodes whose argument is this many newline-terminated lines (protocol 0's text forms). */
const LINES: Record<number, number> = {
  0x49: 1, // INT
  0x4c: 1, // LONG
  0x46: 1, // FLOAT
  0x53: 1, // STRING
  0x56: 1, // UNICODE
  0x50: 1, // PERSID
  0x67: 1, // GET
  0x70: 1, // PUT
  0x63: 2, // GLOBAL
  0x69: 2, // INST
};
/** Opcodes without an argument (STOP, 0x2e, ends the walk). */
const BARE = new Set(
  [..."(0123NRabd}el]ostu)Q"].map((c) => c.charCodeAt(0)).concat(
    [0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x97, 0x98],
  ),
);
const STOP = 0x2e;

/** The opcode at `s` of `w[0, len)`: where the next one starts, a large array's data, or more bytes needed. */
type Step =
  | { next: number }
  | { data: number; n: number }
  | { need: number }
  | { plain: true };

function step(w: Uint8Array, s: number, len: number): Step {
  const op = w[s];
  const fixed = FIXED[op];
  if (fixed !== undefined) return s + 1 + fixed <= len ? { next: s + 1 + fixed } : { need: 1 + fixed };
  const counted = COUNTED[op];
  if (counted !== undefined) {
    if (s + 1 + counted > len) return { need: 1 + counted };
    let n = 0;
    for (let i = counted - 1; i >= 0; i--) n = n * 256 + w[s + 1 + i];
    if (ARRAY_DATA.has(op) && n >= BIG_PAYLOAD) return { data: s + 1 + counted, n };
    return s + 1 + counted + n <= len ? { next: s + 1 + counted + n } : { need: 1 + counted + n };
  }
  const lines = LINES[op];
  if (lines !== undefined) {
    let at = s + 1;
    for (let k = 0; k < lines; k++) {
      const nl = w.subarray(at, len).indexOf(0x0a);
      if (nl < 0) return { need: 2 * (len - s) }; // the line's end is further on
      at += nl + 1;
    }
    return { next: at };
  }
  return BARE.has(op) && op !== STOP ? { next: s + 1 } : { plain: true };
}

/**
 * The bytes of `f` as chunks (see the module's doc): large arrays' data in buffers from `payload(n)` (one of
 * exactly `n` bytes, offset 0, the caller's to hand over), everything else in chunks of at most a window.
 * `fileBytes`: the file's length, where known (no array's data is cut out that would end past it).
 */
export async function* splitPickle(
  f: SplitFile,
  payload: (n: number) => Uint8Array,
  fileBytes = Infinity,
): AsyncGenerator<SplitChunk> {
  let eof = false;
  /** Bytes read from `f` so far. */
  let read = 0;
  /** Read into `b` from `from` until it is full or the file ends; the bytes held. */
  const fill = async (b: Uint8Array, from: number): Promise<number> => {
    let n = from;
    while (n < b.length && !eof) {
      const k = await f.read(b.subarray(n));
      if (k === null) eof = true;
      else {
        n += k;
        read += k;
      }
    }
    return n;
  };
  let size = FIRST_WINDOW;
  let w = new Uint8Array(size);
  let len = await fill(w, 0);
  let s = 0;
  for (;;) {
    if (s === len && eof) {
      if (len > 0) yield { chunk: w.subarray(0, len), whole: false };
      return;
    }
    const r: Step = s === len ? { need: 1 } : step(w, s, len);
    if ("next" in r) {
      s = r.next;
      continue;
    }
    // A length past the file's end (a corrupt one) is not allocated: the reader reports the short data.
    const past = "data" in r && read - (len - r.data) + r.n > fileBytes;
    if ("plain" in r || ("need" in r && eof) || past) {
      // Not walked further (or cut short: the reader reports the truncation): the rest as it comes.
      if (len > 0) yield { chunk: w.subarray(0, len), whole: false };
      while (!eof) {
        const b = new Uint8Array(LAST_WINDOW);
        const n = await fill(b, 0);
        if (n > 0) yield { chunk: n === b.length ? b : b.subarray(0, n), whole: false };
      }
      return;
    }
    // Everything the window holds past the walked opcodes goes into the next buffers before this window is
    // yielded (it is transferred then).
    if ("need" in r) {
      size = Math.min(LAST_WINDOW, size * 2);
      const next = new Uint8Array(Math.max(size, 2 * r.need));
      next.set(w.subarray(s, len));
      if (s > 0) yield { chunk: w.subarray(0, s), whole: false };
      len = await fill(next, len - s);
      w = next;
      s = 0;
      continue;
    }
    const data = payload(r.n);
    const head = Math.min(r.n, len - r.data);
    data.set(w.subarray(r.data, r.data + head));
    const tail = w.subarray(r.data + head, len);
    size = FIRST_WINDOW;
    const next = new Uint8Array(Math.max(size, 2 * tail.length));
    next.set(tail);
    yield { chunk: w.subarray(0, r.data), whole: false };
    const got = head < r.n ? await fill(data, head) : r.n;
    if (got < r.n) {
      yield { chunk: data.subarray(0, got), whole: false }; // cut short: the reader reports it
      return;
    }
    yield { chunk: data, whole: true };
    len = await fill(next, tail.length);
    w = next;
    s = 0;
  }
}
