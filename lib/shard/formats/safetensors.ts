/**
 * The safetensors shard format: one tensor per (layer, sample), named `layer_<L>/sample_<idx>`, dtype F32 | F16 |
 * BF16; each tensor's descriptive facts (task_id, sample_idx, layer, prompt, extra keys) are a JSON string under
 * the tensor's name in `__metadata__` (safetensors metadata is string → string), plus `"format": "actshard"`.
 * Any safetensors reader (Python `safetensors`, or header + `numpy.frombuffer`) reads the file. The header must
 * precede the data, so the encoder stages tensor bytes in a scratch file and, at finish, writes header + body.
 * Header encoding and its strict validation are lib/util/safetensors.ts (shared with model checkpoints).
 * Uncompressed shards can be read by range: the header, then single tensors.
 *
 * @example
 * ```ts
 * import { SAFETENSORS_FORMAT, tensorName } from "./safetensors.ts";
 * console.log(SAFETENSORS_FORMAT.extension, tensorName(12, 3)); // "safetensors" "layer_12/sample_3"
 * ```
 */
import type { ActivationDType } from "../../types.ts";
import type { BlobStore } from "../../storage/types.ts";
import { ActshardError } from "../../errors.ts";
import { decodeOwnedActivation, encodeActivation } from "../../util/dtype.ts";
import {
  encodeSafetensorsHeader,
  parseSafetensorsJson,
  readHeaderLength,
  type SafetensorsEntry,
} from "../../util/safetensors.ts";
import { writeAll } from "../../util/write_all.ts";
import { ByteSource } from "../byte_source.ts";
import type { DecodedRecord, ShardFormatSpec, ShardItem } from "./spec.ts";

const ST_DTYPE: Record<ActivationDType, string> = { float32: "F32", float16: "F16", bfloat16: "BF16" };
const FROM_ST: Record<string, ActivationDType> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/** Tensor name for a record. */
export function tensorName(layer: number, sampleIdx: number): string {
  return `layer_${layer}/sample_${sampleIdx}`;
}

/** A shard's parsed header: tensors in data order, `__metadata__`, where the data starts. */
interface ShardHeader {
  /** Byte offset of the data section in the file (8 + header length). */
  dataStart: number;
  tensors: (SafetensorsEntry & { stored: ActivationDType })[];
  meta: Record<string, string>;
}

function corrupt(where: string): (why: string) => ActshardError {
  return (why) =>
    new ActshardError(`safetensors shard: ${why}`, {
      where,
      kind: "data",
      hint: "the shard is corrupt or not a safetensors file",
    });
}

/** Parse and validate the JSON header (lib/util/safetensors.ts's checks), keeping activation dtypes only. */
function parseShardHeader(json: Uint8Array, where: string): ShardHeader {
  const h = parseSafetensorsJson(json, corrupt(where));
  const tensors = h.tensors.map((t) => {
    const stored = FROM_ST[t.dtype];
    if (!stored) throw corrupt(where)(`tensor ${t.name} has dtype ${t.dtype}, not an activation dtype`);
    return { ...t, stored };
  }).sort((a, b) => a.begin - b.begin);
  return { dataStart: 8 + json.length, tensors, meta: h.metadata };
}

/** A tensor's `__metadata__` facts, parsed (empty when absent or not JSON: a foreign file). */
function tensorFacts(h: ShardHeader, name: string): Record<string, unknown> {
  try {
    return h.meta[name] ? JSON.parse(h.meta[name]) : {};
  } catch {
    return {};
  }
}

/** A tensor as a {@link ShardItem}: keys from its facts (else its name), values from `data()`. */
function tensorItem(
  t: ShardHeader["tensors"][number],
  facts: Record<string, unknown>,
  data: () => Uint8Array | Promise<Uint8Array>,
): ShardItem {
  const f = facts as Partial<DecodedRecord>;
  const m = t.name.match(/^layer_(\d+)\/sample_(\d+)$/);
  const layer = f.layer ?? (m ? Number(m[1]) : -1);
  const sample_idx = f.sample_idx ?? (m ? Number(m[2]) : -1);
  const task_id = f.task_id ?? "";
  const toRecord = (bytes: Uint8Array): DecodedRecord => ({
    task_id,
    sample_idx,
    layer,
    activation: decodeOwnedActivation(bytes, t.stored),
    shape: [t.shape[0], t.shape[1] ?? 1],
    prompt: f.prompt ?? "",
    ...(f.extra ? { extra: f.extra } : {}),
    dtype: t.stored,
  });
  return {
    layer,
    task_id,
    sample_idx,
    record() {
      const d = data();
      return d instanceof Uint8Array ? toRecord(d) : d.then(toRecord);
    },
  };
}

/** Stream the tensors of a safetensors shard in data order. */
async function* decodeSafetensors(
  stream: ReadableStream<Uint8Array>,
  where: string,
): AsyncGenerator<ShardItem> {
  const src = new ByteSource(stream, where);
  try {
    const h = parseShardHeader(await src.read(readHeaderLength(await src.read(8), corrupt(where))), where);
    for (const t of h.tensors) {
      // the header's ranges tile the data section (checked), so the bytes come in order, back to back
      const data = await src.readOwned(t.end - t.begin); // a buffer of its own: the record may take it
      yield tensorItem(t, tensorFacts(h, t.name), () => data);
    }
    if (!(await src.atEnd())) throw corrupt(where)("trailing bytes after the last tensor");
  } finally {
    // Also when the consumer stops early or decoding fails: the stream is an open file or a download.
    await src.cancel();
  }
}

/**
 * The tensors of an uncompressed shard through range reads: the 8-byte length, the JSON header, then each
 * tensor's bytes only when its record is asked for. The rest of the shard is never fetched.
 */
async function* readSafetensorsRanged(
  store: BlobStore,
  name: string,
  where: string,
): AsyncGenerator<ShardItem> {
  const hlen = readHeaderLength(await store.readRange(name, 0, 8), corrupt(where));
  const json = await store.readRange(name, 8, 8 + hlen);
  if (json.length !== hlen) throw corrupt(where)(`header cut short (${json.length} of ${hlen} bytes)`);
  const h = parseShardHeader(json, where);
  for (const t of h.tensors) {
    yield tensorItem(t, tensorFacts(h, t.name), async () => {
      const data = await store.readRange(name, h.dataStart + t.begin, h.dataStart + t.end);
      if (data.length !== t.end - t.begin) {
        throw corrupt(where)(`tensor ${t.name} cut short: the file is truncated`);
      }
      return data;
    });
  }
}

/** The safetensors format's registry entry. */
export const SAFETENSORS_FORMAT: ShardFormatSpec = {
  name: "safetensors",
  extension: "safetensors",
  dtypes: { float32: true, float16: true, bfloat16: true },
  scratchShards: 1,
  encoder(ctx) {
    const tensors: SafetensorsEntry[] = [];
    const facts: Record<string, string> = {};
    const names = new Set<string>();
    let body: Deno.FsFile | undefined;
    let size = 0;
    const close = () => {
      try {
        body?.close();
      } catch { /* already closed */ }
      body = undefined;
    };
    return {
      async begin() {
        body = await Deno.open(ctx.scratchPath, { read: true, write: true, create: true, truncate: true });
      },
      async record(r, stored) {
        const name = tensorName(r.layer, r.sample_idx);
        if (names.has(name)) {
          throw new ActshardError(`duplicate record layer ${r.layer} sample ${r.sample_idx} in one shard`, {
            where: ctx.shard,
            kind: "data",
            hint: "each (layer, sample_idx) may appear once per safetensors shard",
          });
        }
        names.add(name);
        const data = stored ?? encodeActivation(r.activation, ctx.dtype);
        tensors.push({
          name,
          dtype: ST_DTYPE[ctx.dtype],
          shape: [...r.shape],
          begin: size,
          end: size + data.length,
        });
        facts[name] = JSON.stringify({
          task_id: r.task_id,
          sample_idx: r.sample_idx,
          layer: r.layer,
          prompt: r.prompt,
          ...(r.extra && Object.keys(r.extra).length ? { extra: r.extra } : {}),
        });
        await writeAll(body!, data);
        size += data.length;
      },
      async finish() {
        await ctx.out(encodeSafetensorsHeader(tensors, { format: "actshard", ...facts }));
        await body!.seek(0, Deno.SeekMode.Start);
        const buf = new Uint8Array(4 << 20);
        for (;;) {
          const n = await body!.read(buf);
          if (n === null) break;
          await ctx.out(buf.subarray(0, n));
        }
        close();
        await Deno.remove(ctx.scratchPath);
      },
      async abort() {
        close();
        await Deno.remove(ctx.scratchPath).catch(() => {});
      },
    };
  },
  decode: decodeSafetensors,
  readRanged: readSafetensorsRanged,
};
