/**
 * The one safetensors codec, for model checkpoints (lib/model/safetensors.ts) and activation shards
 * (lib/shard/formats/safetensors.ts): `u64 little-endian header length N · N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}} · tensor bytes`, offsets
 * relative to the end of the header. Encoding pads the JSON with spaces so the data starts 8-aligned (as the
 * reference writer does). Parsing is strict, as the reference reader is: a bounded header length, valid JSON,
 * known dtypes, integer shapes, each tensor's byte range exactly its shape × dtype size, and ranges that tile the
 * data section from 0 with no overlap and no gap. Callers say how a failure reads (`corrupt`), so a checkpoint
 * and a shard each get their own one-line error.
 *
 * @example
 * ```ts
 * import { encodeSafetensorsHeader, parseSafetensorsJson, readHeaderLength } from "./safetensors.ts";
 * const head = encodeSafetensorsHeader([{ name: "x", dtype: "F32", shape: [2], begin: 0, end: 8 }], {});
 * const corrupt = (why: string) => new Error(why);
 * const n = readHeaderLength(head, corrupt);
 * const h = parseSafetensorsJson(head.subarray(8, 8 + n), corrupt);
 * console.log(head.length % 8, h.tensors[0].shape); // 0 [2]
 * ```
 */

/** Element size of every safetensors dtype code this project knows. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  BF16: 2,
  F16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Largest JSON header accepted (the reference implementation's bound): anything larger is corrupt. */
export const MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024;

/** One tensor's entry: offsets relative to the start of the data section. */
export interface SafetensorsEntry {
  /** Tensor name (a key of the JSON header). */
  name: string;
  /** safetensors dtype code (`F32`, `BF16`, …). */
  dtype: string;
  /** Dimensions. */
  shape: number[];
  /** First byte, relative to the data section. */
  begin: number;
  /** One past the last byte. */
  end: number;
}

/** A parsed, validated header. */
export interface ParsedSafetensors {
  /** Tensors in header (JSON) order. */
  tensors: SafetensorsEntry[];
  /** `__metadata__` (empty when absent). */
  metadata: Record<string, string>;
  /** Bytes the tensors cover: the data section ends here. */
  dataBytes: number;
}

/** Builds the error a failed check throws, from a short reason. */
export type CorruptError = (why: string) => Error;

/** The JSON header length from the file's first bytes (at least 8), bounded by {@link MAX_SAFETENSORS_HEADER}. */
export function readHeaderLength(first: Uint8Array, corrupt: CorruptError): number {
  if (first.length < 8) throw corrupt("file shorter than 8 bytes");
  const n = Number(new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true));
  if (n < 2 || n > MAX_SAFETENSORS_HEADER) throw corrupt(`header length ${n} is implausible`);
  return n;
}

/**
 * Parse and validate the JSON header (the N bytes after the length prefix). `dataBytes`, when the file's size is
 * known, bounds the data section: a tensor reaching past it is a truncated file.
 */
export function parseSafetensorsJson(
  json: Uint8Array,
  corrupt: CorruptError,
  dataBytes?: number,
): ParsedSafetensors {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch {
    throw corrupt("header is not valid JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw corrupt("header is not an object");
  }
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (v !== null && (typeof v !== "object" || Array.isArray(v))) {
        throw corrupt("__metadata__ is not an object");
      }
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const size = SAFETENSORS_DTYPE_BYTES[String(t?.dtype)];
    const shape = t?.shape, offs = t?.data_offsets;
    if (!size) throw corrupt(`tensor ${name} has unsupported dtype ${t?.dtype}`);
    if (
      !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0) ||
      !Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) throw corrupt(`bad entry for tensor ${name}`);
    const [begin, end] = offs as number[];
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    if (end - begin !== count * size || (dataBytes !== undefined && end > dataBytes)) {
      throw corrupt(`tensor ${name} data [${begin}, ${end}) does not match its shape or the file size`);
    }
    tensors.push({ name, dtype: String(t!.dtype), shape: shape as number[], begin, end });
  }
  // The ranges must tile the data section: an overlap aliases two tensors, a gap hides bytes nobody checks.
  let pos = 0;
  for (const t of [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    if (t.begin < pos) throw corrupt(`tensor ${t.name} overlaps another`);
    if (t.begin > pos) throw corrupt(`gap of ${t.begin - pos} bytes before tensor ${t.name}`);
    pos = t.end;
  }
  return { tensors, metadata, dataBytes: pos };
}

/**
 * The header bytes: the u64 length prefix and the JSON (`__metadata__` first when given, then the tensors in
 * the order given), space-padded to a multiple of 8 so the data section starts aligned.
 */
export function encodeSafetensorsHeader(
  tensors: readonly SafetensorsEntry[],
  metadata?: Record<string, string>,
): Uint8Array {
  const h: Record<string, unknown> = {};
  if (metadata) h.__metadata__ = metadata;
  for (const t of tensors) h[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] };
  const json = new TextEncoder().encode(JSON.stringify(h));
  const padded = json.length + (8 - (json.length % 8)) % 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}
