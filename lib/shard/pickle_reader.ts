/**
 * A restricted, streaming unpickler for activation shards. It understands the opcodes of pickle protocols 0–5
 * that plain data and numpy arrays use, and resolves only numpy's array-reconstruction globals
 * (`numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`, `numpy.ndarray`, `numpy.dtype`,
 * and `_codecs.encode` for protocol-2 byte strings). Any other global is refused with an error before anything
 * is built: nothing is ever executed — "calls" only construct inert {@link NdArray} values.
 *
 * Records are yielded as soon as they are appended to a layer's list, and dropped from the list, so a shard
 * written record by record (this project's writer) streams in one-record memory. `pickle.dump` output (the seed)
 * batches up to 1000 appends, which are held until their APPENDS opcode.
 *
 * @example
 * ```ts
 * import { unpickleRecords } from "./pickle_reader.ts";
 * import { PickleShardEncoder } from "./pickle_writer.ts";
 * const enc = new PickleShardEncoder("float32");
 * const bytes = [enc.begin(), ...enc.record({ task_id: "t", sample_idx: 5, layer: 3, prompt: "p",
 *   activation: new Float32Array(4), shape: [2, 2] }), enc.end()];
 * const stream = new Blob(bytes as Uint8Array<ArrayBuffer>[]).stream();
 * for await (const { layer, record } of unpickleRecords(stream, "shard_0001.pkl")) {
 *   console.log(layer, record.sample_idx); // 3 5
 * }
 * ```
 */
import { ActshardError } from "../errors.ts";
import { ByteSource } from "./byte_source.ts";
import { buildNumpy, callNumpy, NdArray, resolveGlobal } from "./pickle_numpy.ts";

export { NdArray };

const MARK = Symbol("mark");
type Value = unknown;

/** A record dict found in a shard, with its layer key. */
export interface PickledRecord {
  layer: number;
  record: Record<string, Value>;
}

function isRecord(v: Value): v is Record<string, Value> {
  return typeof v === "object" && v !== null && !Array.isArray(v) &&
    (v as Record<string, Value>).activation instanceof NdArray;
}

function fail(where: string, msg: string, hint = "the shard is corrupt or not an activation shard"): never {
  throw new ActshardError(msg, { where, kind: "data", hint });
}

const td = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

/** Stream the records of a pickled shard `{layer: [record, ...]}`. */
export async function* unpickleRecords(
  stream: ReadableStream<Uint8Array>,
  where: string,
): AsyncGenerator<PickledRecord> {
  const src = new ByteSource(stream, where);
  try {
    yield* unpickleFrom(src, where);
  } finally {
    // Also when the consumer stops early or decoding fails: the stream is an open file or a download.
    await src.cancel();
  }
}

async function* unpickleFrom(src: ByteSource, where: string): AsyncGenerator<PickledRecord> {
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  const listLayer = new Map<Value[], number>();
  const out: PickledRecord[] = [];
  let top: Value = undefined;

  const popMark = (): Value[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail(where, "pickle MARK missing");
    const items = stack.splice(i);
    items.shift();
    return items;
  };
  const pop = (): Value => {
    if (stack.length === 0) fail(where, "pickle stack underflow");
    return stack.pop();
  };
  const readN = async (n: number): Promise<Uint8Array> =>
    src.available >= n ? src.take(n) : await src.read(n);
  // bytes objects (numpy's array data) get a buffer of their own: one copy, and the array may use it as is.
  const readOwned = (n: number): Promise<Uint8Array> => src.readOwned(n);
  const u32 = async () => {
    const b = await readN(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16)) + b[3] * 2 ** 24;
  };
  const u64 = async () => {
    const b = await readN(8);
    const lo = (b[0] | (b[1] << 8) | (b[2] << 16)) + b[3] * 2 ** 24;
    const hi = (b[4] | (b[5] << 8) | (b[6] << 16)) + b[7] * 2 ** 24;
    return lo + hi * 2 ** 32;
  };
  const line = async (): Promise<string> => {
    const bytes: number[] = [];
    for (;;) {
      const c = await src.byte();
      if (c < 0) fail(where, "unexpected end of pickle");
      if (c === 0x0a) break;
      bytes.push(c);
    }
    return latin1.decode(new Uint8Array(bytes));
  };
  const resolve = (module: string, name: string) => resolveGlobal(module, name, where);
  const layerOf = (list: Value[], pos: number): number | undefined => {
    const known = listLayer.get(list);
    if (known !== undefined) return known;
    const below = stack[pos - 1];
    return typeof below === "number" ? below : undefined;
  };
  const append = (list: Value, items: Value[]) => {
    if (!Array.isArray(list)) fail(where, "pickle APPEND to a non-list");
    const layer = layerOf(list, stack.lastIndexOf(list));
    for (const it of items) {
      if (layer !== undefined && isRecord(it)) out.push({ layer, record: it });
      else list.push(it);
    }
  };
  const setItems = (d: Value, kv: Value[]) => {
    if (typeof d !== "object" || d === null || Array.isArray(d)) fail(where, "pickle SETITEM on a non-dict");
    for (let i = 0; i + 1 < kv.length; i += 2) {
      const [k, v] = [kv[i], kv[i + 1]];
      if (typeof k === "number" && Array.isArray(v)) listLayer.set(v, k);
      (d as Record<string, Value>)[String(k)] = v;
    }
  };
  const callGlobal = (fn: Value, args: Value) => callNumpy(fn, args, where);
  const build = (obj: Value, state: Value) => buildNumpy(obj, state, where);

  for (;;) {
    const op = await src.byte();
    if (op < 0) fail(where, "unexpected end of pickle", "the shard is truncated");
    switch (op) {
      case 0x80: // PROTO
        await readN(1);
        break;
      case 0x95: // FRAME
        await readN(8);
        break;
      case 0x2e: // STOP
        top = pop();
        break;
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(stack[stack.length - 1]);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a: { // BININT
        const b = await readN(4);
        stack.push(new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true));
        break;
      }
      case 0x4b:
        stack.push((await readN(1))[0]);
        break;
      case 0x4d: {
        const b = await readN(2);
        stack.push(b[0] | (b[1] << 8));
        break;
      }
      case 0x8a:
      case 0x8b: { // LONG1 / LONG4
        const n = op === 0x8a ? (await readN(1))[0] : await u32();
        const b = await readN(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number(v));
        break;
      }
      case 0x49: { // INT (protocol 0)
        const s = await line();
        stack.push(s === "01" ? true : s === "00" ? false : parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (protocol 0)
        stack.push(parseInt((await line()).replace(/L$/, ""), 10));
        break;
      case 0x47: { // BINFLOAT
        const b = await readN(8);
        stack.push(new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false));
        break;
      }
      case 0x46: // FLOAT
        stack.push(parseFloat(await line()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(td.decode(await readN((await readN(1))[0])));
        break;
      case 0x58:
        stack.push(td.decode(await readN(await u32())));
        break;
      case 0x8d:
        stack.push(td.decode(await readN(await u64())));
        break;
      case 0x55: // SHORT_BINSTRING (py2 str) → latin1 text
        stack.push(latin1.decode(await readN((await readN(1))[0])));
        break;
      case 0x54:
        stack.push(latin1.decode(await readN(await u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(await readOwned((await readN(1))[0]));
        break;
      case 0x42:
        stack.push(await readOwned(await u32()));
        break;
      case 0x8e:
      case 0x96: // BINBYTES8 / BYTEARRAY8
        stack.push(await readOwned(await u64()));
        break;
      case 0x7d: // EMPTY_DICT
        stack.push({});
        break;
      case 0x64: { // DICT
        const d = {};
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85:
        stack.push([pop()]);
        break;
      case 0x86: {
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        append(stack[stack.length - 1], [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        append(stack[stack.length - 1], items);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(stack[stack.length - 1], [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const kv = popMark();
        setItems(stack[stack.length - 1], kv);
        break;
      }
      case 0x67: { // GET
        const k = parseInt(await line(), 10);
        stack.push(memoGet(memo, k, where));
        break;
      }
      case 0x68:
        stack.push(memoGet(memo, (await readN(1))[0], where));
        break;
      case 0x6a:
        stack.push(memoGet(memo, await u32(), where));
        break;
      case 0x70: // PUT
        memo.set(parseInt(await line(), 10), stack[stack.length - 1]);
        break;
      case 0x71:
        memo.set((await readN(1))[0], stack[stack.length - 1]);
        break;
      case 0x72:
        memo.set(await u32(), stack[stack.length - 1]);
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, stack[stack.length - 1]);
        break;
      case 0x63: { // GLOBAL
        const module = await line();
        const name = await line();
        stack.push(resolve(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        stack.push(resolve(String(module), String(name)));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(callGlobal(fn, args));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        build(stack[stack.length - 1], state);
        break;
      }
      default:
        fail(
          where,
          `unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")} at byte ${src.offset - 1}`,
        );
    }
    while (out.length) yield out.shift()!;
    if (op === 0x2e) break;
  }
  // A shard is exactly one pickle: bytes after STOP are corruption (or another file appended), never ignored.
  if (!(await src.atEnd())) fail(where, `trailing bytes after the end of the pickle (at byte ${src.offset})`);
  await src.cancel();
  // Records not yet attributed to a layer (e.g. lists never seen beside their key) are in the top dict.
  if (typeof top !== "object" || top === null || Array.isArray(top)) {
    fail(where, "pickle does not hold a {layer: [records]} dict");
  }
  for (const [k, list] of Object.entries(top as Record<string, Value>)) {
    const layer = Number(k);
    if (!Array.isArray(list) || !Number.isInteger(layer)) {
      fail(where, `pickle key ${k} is not a layer → list`);
    }
    for (const r of list) {
      if (!isRecord(r)) fail(where, `layer ${k} holds a non-record`);
      yield { layer, record: r };
    }
  }
}

function memoGet(memo: Map<number, Value>, k: number, where: string): Value {
  if (!memo.has(k)) fail(where, `pickle memo ${k} missing`);
  return memo.get(k);
}
