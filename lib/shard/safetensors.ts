/**
 * safetensors shards: `u64 header length | JSON header | tensor bytes`. One tensor per (layer, sample), named
 * `layer_<L>/sample_<idx>`; each tensor's descriptive facts (task_id, sample_idx, layer, prompt, extra keys) are
 * a JSON string under the tensor's name in `__metadata__` (safetensors metadata is string → string). Any
 * safetensors reader (Python `safetensors`, or header + `numpy.frombuffer`) reads the file.
 *
 * @example
 * ```ts
 * import { safetensorsHeader } from "./safetensors.ts";
 * const h = safetensorsHeader([{ name: "layer_0/sample_0", dtype: "float32", shape: [1, 2], begin: 0, end: 8 }], {});
 * console.log(h.length % 8); // 0 — header padded so data starts 8-aligned
 * ```
 */
import type { ActivationDType } from "../types.ts";
import { ActshardError } from "../errors.ts";
import { ByteSource } from "./byte_source.ts";

const ST_DTYPE: Record<ActivationDType, string> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const FROM_ST: Record<string, ActivationDType> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/** One tensor's place in the data section. */
export interface TensorEntry {
  name: string;
  dtype: ActivationDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Tensor name for a record. */
export function tensorName(layer: number, sampleIdx: number): string {
  return `layer_${layer}/sample_${sampleIdx}`;
}

/** The header bytes (length prefix + JSON padded with spaces to a multiple of 8). */
export function safetensorsHeader(entries: TensorEntry[], metadata: Record<string, string>): Uint8Array {
  const h: Record<string, unknown> = { __metadata__: metadata };
  for (const e of entries) {
    h[e.name] = { dtype: ST_DTYPE[e.dtype], shape: e.shape, data_offsets: [e.begin, e.end] };
  }
  let json = new TextEncoder().encode(JSON.stringify(h));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) {
    const p = new Uint8Array(json.length + pad).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

/** One tensor read from a stream. */
export interface SafetensorsTensor {
  name: string;
  dtype: ActivationDType;
  shape: number[];
  data: Uint8Array;
  /** The tensor's `__metadata__` entry, parsed (empty when absent or not JSON). */
  facts: Record<string, unknown>;
}

function fail(where: string, msg: string): never {
  throw new ActshardError(msg, {
    where,
    kind: "data",
    hint: "the shard is corrupt or not a safetensors file",
  });
}

/** Stream the tensors of a safetensors file in data order. */
export async function* readSafetensors(
  stream: ReadableStream<Uint8Array>,
  where: string,
): AsyncGenerator<SafetensorsTensor> {
  const src = new ByteSource(stream, where);
  const lenBytes = await src.read(8);
  const hlen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (hlen > 100_000_000) fail(where, `safetensors header length ${hlen} is implausible`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(await src.read(hlen)));
  } catch (e) {
    if (e instanceof ActshardError) throw e;
    fail(where, "safetensors header is not valid JSON");
  }
  const meta = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors: TensorEntry[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const t = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const dtype = FROM_ST[t?.dtype];
    if (!dtype) fail(where, `tensor ${name} has unsupported dtype ${t?.dtype}`);
    tensors.push({ name, dtype, shape: t.shape, begin: t.data_offsets[0], end: t.data_offsets[1] });
  }
  tensors.sort((a, b) => a.begin - b.begin);
  let pos = 0;
  for (const t of tensors) {
    if (t.begin < pos) fail(where, `tensor ${t.name} overlaps another`);
    if (t.begin > pos) await src.read(t.begin - pos);
    const data = await src.read(t.end - t.begin);
    pos = t.end;
    let facts: Record<string, unknown> = {};
    try {
      facts = meta[t.name] ? JSON.parse(meta[t.name]) : {};
    } catch { /* a foreign file's metadata: keep the tensor, no facts */ }
    yield { name: t.name, dtype: t.dtype, shape: t.shape, data, facts };
  }
  if (!(await src.atEnd())) fail(where, "trailing bytes after the last tensor");
  await src.cancel();
}
