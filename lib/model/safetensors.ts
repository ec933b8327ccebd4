/**
 * Safetensors checkpoints: header parsing, tensor reads by name (F32, BF16, F16 → Float32Array, one tensor at a
 * time, straight from the file), sharded `model.safetensors.index.json`, and an encoder for writing checkpoints.
 * Format: 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [b, e]},
 * "__metadata__"?: {...}}`, then the data; offsets are relative to the end of the header.
 *
 * @example
 * ```ts
 * import { CheckpointWeights } from "./safetensors.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir(); // a generated checkpoint (or a Hugging Face model directory)
 * await writeTinyModel(dir, { hidden: 32, layers: 1, heads: 2, kvHeads: 1, vocab: 50 });
 * const w = await CheckpointWeights.open(dir);
 * const norm = await w.read("model.norm.weight", [32]); // Float32Array(32)
 * w.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { basename, join } from "node:path";
import { ActshardError } from "../errors.ts";
import { decodeActivation, f16BitsToF32, f32ToBf16Bits } from "../util/dtype.ts";
import {
  encodeSafetensorsHeader,
  MAX_SAFETENSORS_HEADER,
  parseSafetensorsJson,
  readHeaderLength,
  SAFETENSORS_DTYPE_BYTES,
} from "../util/safetensors.ts";
import { writeAll } from "../util/write_all.ts";

/** Stored dtypes this reader converts to f32. */
export type StoredDType = "F32" | "BF16" | "F16";
const DTYPE_BYTES = SAFETENSORS_DTYPE_BYTES;

/** Where one tensor lives. `offset` is absolute within `file`. */
export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  offset: number;
  byteLength: number;
}

/** A parsed safetensors header. */
export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
}

/**
 * Parse the header of a safetensors file from its first bytes (`head` must hold 8 + N bytes), with the strict
 * checks of lib/util/safetensors.ts (offsets against shapes and dtypes, no overlaps or gaps, bounded length).
 */
export function parseSafetensorsHeader(head: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const corrupt = (why: string) =>
    new ActshardError(`corrupt safetensors header: ${why}`, {
      where: file,
      kind: "data",
      hint: "re-download the checkpoint",
    });
  if (fileSize < 8) throw corrupt("file shorter than 8 bytes");
  const n = readHeaderLength(head, corrupt);
  if (8 + n > fileSize) throw corrupt(`header length ${n} does not fit the file`);
  if (head.length < 8 + n) throw corrupt("header truncated");
  const dataStart = 8 + n;
  const parsed = parseSafetensorsJson(head.subarray(8, 8 + n), corrupt, fileSize - dataStart);
  const tensors = new Map<string, TensorInfo>();
  for (const t of parsed.tensors) {
    tensors.set(t.name, {
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      file,
      offset: dataStart + t.begin,
      byteLength: t.end - t.begin,
    });
  }
  return { tensors, metadata: parsed.metadata, dataStart };
}

/** Read the header of one safetensors file. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const f = await Deno.open(path, { read: true });
  try {
    const size = (await f.stat()).size;
    const first = new Uint8Array(8);
    const got = await readFull(f, first, 0);
    if (got < 8) return parseSafetensorsHeader(first.subarray(0, got), size, path);
    const n = Number(new DataView(first.buffer).getBigUint64(0, true));
    if (8 + n > size || n > MAX_SAFETENSORS_HEADER) return parseSafetensorsHeader(first, size, path);
    const head = new Uint8Array(8 + n);
    await readFull(f, head, 0);
    return parseSafetensorsHeader(head, size, path);
  } finally {
    f.close();
  }
}

/** The tensors of a model directory: `model.safetensors`, or the shards listed by its index. */
export class CheckpointWeights {
  readonly dir: string;
  readonly tensors: Map<string, TensorInfo>;
  #files = new Map<string, Deno.FsFile>();

  private constructor(dir: string, tensors: Map<string, TensorInfo>) {
    this.dir = dir;
    this.tensors = tensors;
  }

  /** Open a model directory's weights (headers only; tensors are read on demand). */
  static async open(dir: string): Promise<CheckpointWeights> {
    const single = join(dir, "model.safetensors");
    const index = join(dir, "model.safetensors.index.json");
    const tensors = new Map<string, TensorInfo>();
    if (await exists(single)) {
      for (const [k, v] of (await readSafetensorsHeader(single)).tensors) tensors.set(k, v);
    } else if (await exists(index)) {
      let map: Record<string, string>;
      try {
        map = JSON.parse(await Deno.readTextFile(index)).weight_map;
        if (typeof map !== "object" || map === null) throw new Error("no weight_map");
      } catch (e) {
        throw new ActshardError("model.safetensors.index.json has no valid weight_map", {
          where: index,
          kind: "data",
          cause: e,
        });
      }
      for (const shard of new Set(Object.values(map))) {
        const path = join(dir, basename(String(shard)));
        if (!(await exists(path))) {
          throw new ActshardError(`weight shard ${shard} listed in the index is missing`, {
            where: path,
            hint: "re-download the checkpoint",
          });
        }
        for (const [k, v] of (await readSafetensorsHeader(path)).tensors) tensors.set(k, v);
      }
    } else {
      throw new ActshardError(
        "model weights are missing (no model.safetensors or model.safetensors.index.json)",
        {
          where: dir,
          hint: "--model_path must point at a Hugging Face checkpoint with safetensors weights",
        },
      );
    }
    return new CheckpointWeights(dir, tensors);
  }

  /** Where a tensor is; accepts HF names with or without the `model.` prefix. Missing → ActshardError. */
  info(name: string, shape?: number[]): TensorInfo {
    const t = this.tensors.get(name) ??
      this.tensors.get(name.startsWith("model.") ? name.slice(6) : `model.${name}`);
    if (!t) {
      throw new ActshardError(`tensor ${name} is missing from the checkpoint`, {
        where: this.dir,
        kind: "data",
        hint: "is this a Qwen2 checkpoint?",
      });
    }
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new ActshardError(
        `tensor ${name} has shape [${t.shape}], expected [${shape}] from config.json`,
        { where: t.file, kind: "data" },
      );
    }
    if (!["F32", "BF16", "F16"].includes(t.dtype)) {
      throw new ActshardError(`tensor ${name} has unsupported dtype ${t.dtype}`, {
        where: t.file,
        kind: "data",
        hint: "supported: F32, BF16, F16",
      });
    }
    return t;
  }

  /** The stored bytes of a tensor. */
  async readBytes(name: string, shape?: number[]): Promise<Uint8Array> {
    const t = this.info(name, shape);
    let f = this.#files.get(t.file);
    if (!f) {
      f = await Deno.open(t.file, { read: true });
      this.#files.set(t.file, f);
    }
    const buf = new Uint8Array(t.byteLength);
    const got = await readFull(f, buf, t.offset);
    if (got !== t.byteLength) {
      throw new ActshardError(`tensor ${name} is truncated`, { where: t.file, kind: "data" });
    }
    return buf;
  }

  /** A tensor as f32 (converted from BF16/F16), checked against `shape` when given. */
  async read(name: string, shape?: number[]): Promise<Float32Array> {
    const t = this.info(name, shape);
    return toFloat32(await this.readBytes(name, shape), t.dtype as StoredDType);
  }

  /** Close open files. */
  close(): void {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
  }
}

/** Convert stored bytes (any view; an aligned F32 view is returned without copying) to f32. */
export function toFloat32(bytes: Uint8Array, dtype: StoredDType): Float32Array {
  if (dtype === "F32" && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  return decodeActivation(bytes, dtype === "F32" ? "float32" : dtype === "BF16" ? "bfloat16" : "float16");
}

/** IEEE binary16 → number (lib/util/dtype.ts's `f16BitsToF32`, under the name checkpoint code uses). */
export const halfToFloat: (h: number) => number = f16BitsToF32;

/** f32 → bfloat16 bits, round to nearest even (lib/util/dtype.ts's `f32ToBf16Bits`). */
export const floatToBf16Bits: (x: number) => number = f32ToBf16Bits;

/** One tensor to write. */
export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Encode tensors as one safetensors file (header padded to 8 bytes, as the reference writer does). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  let off = 0;
  const entries = tensors.map((t) => {
    const e = { name: t.name, dtype: t.dtype, shape: t.shape, begin: off, end: off + t.data.byteLength };
    off = e.end;
    return e;
  });
  const head = encodeSafetensorsHeader(entries, metadata);
  const out = new Uint8Array(head.length + off);
  out.set(head);
  let p = head.length;
  for (const t of tensors) {
    out.set(t.data, p);
    p += t.data.byteLength;
  }
  return out;
}

async function readFull(f: Deno.FsFile, buf: Uint8Array, pos: number): Promise<number> {
  await f.seek(pos, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = await f.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** A tensor whose bytes are produced on demand, for {@link writeSafetensorsFile}. */
export interface LazyTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: () => Uint8Array;
}

/**
 * Write a safetensors file tensor by tensor (only one tensor's bytes in memory at a time), via a temp file
 * renamed into place.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: LazyTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  const size = (t: LazyTensor) => t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
  let off = 0;
  const entries = tensors.map((t) => {
    const e = { name: t.name, dtype: t.dtype, shape: t.shape, begin: off, end: off + size(t) };
    off = e.end;
    return e;
  });
  const head = encodeSafetensorsHeader(entries, metadata);
  const tmp = `${path}.tmp-${Deno.pid}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(f, head);
    for (const t of tensors) {
      const b = t.bytes();
      if (b.byteLength !== size(t)) {
        throw new Error(`tensor ${t.name}: ${b.byteLength} bytes, expected ${size(t)}`);
      }
      await writeAll(f, b);
    }
  } finally {
    f.close();
  }
  await Deno.rename(tmp, path);
}
