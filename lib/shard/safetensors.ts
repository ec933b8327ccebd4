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
import type { BlobStore } from "../storage/types.ts";

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

/** A parsed header: tensors in data order and the `__metadata__` strings. */
export interface SafetensorsHeader {
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  tensors: TensorEntry[];
  meta: Record<string, string>;
}

/** The u64 header length from the first 8 bytes (checked for plausibility). */
export function headerLength(first8: Uint8Array, where: string): number {
  if (first8.length < 8) fail(where, "file is shorter than a safetensors header");
  const hlen = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (hlen > 100_000_000) fail(where, `safetensors header length ${hlen} is implausible`);
  return hlen;
}

/** Parse the JSON header (the `hlen` bytes after the length prefix). */
export function parseHeader(json: Uint8Array, where: string): SafetensorsHeader {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(json));
  } catch {
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
  return { dataStart: 8 + json.length, tensors, meta };
}

/** A tensor's `__metadata__` facts, parsed (empty when absent or not JSON: a foreign file). */
export function tensorFacts(h: SafetensorsHeader, name: string): Record<string, unknown> {
  try {
    return h.meta[name] ? JSON.parse(h.meta[name]) : {};
  } catch {
    return {};
  }
}

/** Stream the tensors of a safetensors file in data order. */
export async function* readSafetensors(
  stream: ReadableStream<Uint8Array>,
  where: string,
): AsyncGenerator<SafetensorsTensor> {
  const src = new ByteSource(stream, where);
  try {
    const h = parseHeader(await src.read(headerLength(await src.read(8), where)), where);
    let pos = 0;
    for (const t of h.tensors) {
      if (t.begin < pos) fail(where, `tensor ${t.name} overlaps another`);
      if (t.begin > pos) await src.read(t.begin - pos);
      const data = await src.read(t.end - t.begin);
      pos = t.end;
      yield { name: t.name, dtype: t.dtype, shape: t.shape, data, facts: tensorFacts(h, t.name) };
    }
    if (!(await src.atEnd())) fail(where, "trailing bytes after the last tensor");
  } finally {
    // Also when the consumer stops early or decoding fails: the stream is an open file or a download.
    await src.cancel();
  }
}

/**
 * The header of an uncompressed safetensors object through two small range reads (the 8-byte length, then the
 * JSON), so single tensors can then be fetched by range without reading the file.
 */
export async function readHeaderRanged(
  store: BlobStore,
  name: string,
  where: string,
): Promise<SafetensorsHeader> {
  const hlen = headerLength(await store.readRange(name, 0, 8), where);
  const json = await store.readRange(name, 8, 8 + hlen);
  if (json.length !== hlen) fail(where, `safetensors header cut short (${json.length} of ${hlen} bytes)`);
  return parseHeader(json, where);
}

/** One tensor's bytes by range (after {@link readHeaderRanged}). */
export async function readTensorRanged(
  store: BlobStore,
  name: string,
  h: SafetensorsHeader,
  t: TensorEntry,
  where: string,
): Promise<Uint8Array> {
  const data = await store.readRange(name, h.dataStart + t.begin, h.dataStart + t.end);
  if (data.length !== t.end - t.begin) fail(where, `tensor ${t.name} cut short: the file is truncated`);
  return data;
}
