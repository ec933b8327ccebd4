/**
 * The shard format registry: the one table of formats ({@link SHARD_FORMATS}, keyed by the {@link ShardFormat}
 * union), from which the `--format` choices ({@link FORMATS}), shard file names ({@link shardFileName},
 * {@link parseShardFileName}), the dtype rules ({@link checkFormatDtype}) and the reader's dispatch
 * ({@link shardKind}: metadata.json's `format`/`codec` first, the file name only for seed-written entries) all
 * derive. Adding a format is one new file in this folder (a {@link ShardFormatSpec}) plus its line in
 * {@link SHARD_FORMATS} and its name in {@link ShardFormat} (see docs/architecture.md, "Adding a shard format").
 *
 * @example
 * ```ts
 * import { checkFormatDtype, parseShardFileName, shardFileName } from "./mod.ts";
 * console.log(shardFileName(7, "safetensors", "zstd")); // "shard_0007.safetensors.zst"
 * console.log(parseShardFileName("shard_0007.pkl.gz")); // { id: 7, format: "pickle", codec: "gzip" }
 * checkFormatDtype("safetensors", "bfloat16"); // fine; ("pickle", "bfloat16") throws a usage error
 * ```
 *
 * @module
 */
import type { ActivationDType } from "../../types.ts";
import { ActshardError } from "../../errors.ts";
import { type Codec, CODEC_TABLE, CODECS, isCodec } from "../codecs.ts";
import { PICKLE_FORMAT } from "./pickle.ts";
import { SAFETENSORS_FORMAT } from "./safetensors.ts";
import type { ShardFormatSpec } from "./spec.ts";

export type { DecodedRecord, EncoderContext, ShardEncoder, ShardFormatSpec, ShardItem } from "./spec.ts";

/**
 * Shard payload formats: the names of {@link SHARD_FORMATS} (spelled out so the public type stands alone; the
 * compiler holds the two to the same names: a name without its entry, or an entry without its name, fails).
 */
export type ShardFormat = "pickle" | "safetensors";

/** The formats, by name (one line each). The first is the default. */
export const SHARD_FORMATS: { readonly [F in ShardFormat]: ShardFormatSpec } = {
  pickle: PICKLE_FORMAT,
  safetensors: SAFETENSORS_FORMAT,
};

/** Every built-in format, in table order (the `--format` choices). */
export const FORMATS: readonly ShardFormat[] = Object.keys(SHARD_FORMATS) as ShardFormat[];

const registry = new Map<string, ShardFormatSpec>(Object.values(SHARD_FORMATS).map((f) => [f.name, f]));
let fileRe: RegExp | null = null;

/**
 * Register a format at run time (a plugin, or a test's toy format): the writer, reader, verify and file-name
 * checks then know it. Its name and extension must be new.
 */
export function registerShardFormat(spec: ShardFormatSpec): void {
  for (const f of registry.values()) {
    if (f.name === spec.name || f.extension === spec.extension) {
      throw new ActshardError(`shard format ${spec.name} (.${spec.extension}) is already registered`, {
        kind: "internal",
      });
    }
  }
  if (!/^[a-z][a-z0-9]*$/.test(spec.extension)) {
    throw new ActshardError(`shard format extension "${spec.extension}" must be [a-z][a-z0-9]*`, {
      kind: "internal",
    });
  }
  registry.set(spec.name, spec);
  fileRe = null;
}

/** Every format this process knows (built-in and registered), by name. */
export function knownFormats(): string[] {
  return [...registry.keys()];
}

/** The registry entry of format `name`, or undefined when this version does not know it. */
export function findShardFormat(name: unknown): ShardFormatSpec | undefined {
  return typeof name === "string" ? registry.get(name) : undefined;
}

/** The registry entry of a format the caller already checked (an unknown one is an internal error). */
export function shardFormat(name: string): ShardFormatSpec {
  const f = registry.get(name);
  if (!f) throw new ActshardError(`unknown shard format ${name}`, { kind: "internal" });
  return f;
}

/** `shard_0001.pkl.gz`-style name: four-digit id (or more), the format's extension, the codec's suffix. */
export function shardFileName(id: number, format: ShardFormat, codec: Codec): string {
  return `shard_${String(id).padStart(4, "0")}.${shardFormat(format).extension}${CODEC_TABLE[codec].suffix}`;
}

function shardFileRe(): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const exts = [...registry.values()].map((f) => esc(f.extension)).join("|");
  const suffixes = CODECS.map((c) => CODEC_TABLE[c].suffix).filter((s) => s).map(esc).join("|");
  return fileRe ??= new RegExp(`^shard_(\\d{4,})\\.(${exts})(${suffixes})?$`);
}

/** What a shard file name says: its id, format and codec (null when it is not a shard name this version knows). */
export function parseShardFileName(name: string): { id: number; format: ShardFormat; codec: Codec } | null {
  const m = shardFileRe().exec(name);
  if (!m) return null;
  const format = [...registry.values()].find((f) => f.extension === m[2])!.name as ShardFormat;
  const codec = CODECS.find((c) => CODEC_TABLE[c].suffix === (m[3] ?? ""))!;
  return { id: Number(m[1]), format, codec };
}

/**
 * Format and codec from any file name's ending (`x.pkl.gz`, `seed_written_shard_0001.pkl.gz`): the longest
 * `.<format extension><codec suffix>` it ends with, or null.
 */
export function kindFromFileName(name: string): { format: ShardFormat; codec: Codec } | null {
  let best: { format: ShardFormat; codec: Codec; len: number } | null = null;
  for (const f of registry.values()) {
    for (const c of CODECS) {
      const end = `.${f.extension}${CODEC_TABLE[c].suffix}`;
      if (name.endsWith(end) && (!best || end.length > best.len)) {
        best = { format: f.name as ShardFormat, codec: c, len: end.length };
      }
    }
  }
  return best && { format: best.format, codec: best.codec };
}

/** True for shard file names this project (or the seed) writes: `shard_NNNN.<format ext>[codec suffix]`. */
export function isShardFileName(name: string): boolean {
  return shardFileRe().test(name);
}

/** The formats that hold `dtype`, by name. */
export function formatsHolding(dtype: ActivationDType): string[] {
  return [...registry.values()].filter((f) => f.dtypes[dtype] === true).map((f) => f.name);
}

/**
 * Throw a usage error (one line, naming `where`) when `format` cannot hold `dtype` — e.g. pickle and bfloat16,
 * since numpy has none. The rule is the format's own `dtypes` entry.
 */
export function checkFormatDtype(format: string, dtype: ActivationDType, where = "--dtype"): void {
  const f = shardFormat(format);
  const ok = f.dtypes[dtype];
  if (ok === true) return;
  const mine = Object.entries(f.dtypes).filter(([, v]) => v === true).map(([d]) => d);
  throw new ActshardError(`${format} shards cannot hold ${dtype} (${ok})`, {
    kind: "usage",
    where,
    hint: `use --dtype ${mine.join("|")}, or --format ${formatsHolding(dtype).join("|")} for ${dtype}`,
  });
}

/**
 * The dtype rules as a `--help` note: ` (bfloat16: safetensors only)` for every dtype some format cannot hold,
 * "" when every format holds every dtype.
 */
export function dtypeRulesNote(dtypes: readonly ActivationDType[]): string {
  const all = knownFormats().length;
  const rules = dtypes.map((d) => [d, formatsHolding(d)] as const).filter(([, fs]) => fs.length < all);
  return rules.length ? ` (${rules.map(([d, fs]) => `${d}: ${fs.join("/")} only`).join("; ")})` : "";
}

/** A shard's format and codec, as the reader and verify dispatch on them. */
export interface ShardKind {
  /** The format's registry entry (its decoder). */
  format: ShardFormatSpec;
  /** The codec to decompress with. */
  codec: Codec;
}

/** The fields of a metadata.json shard entry that name its format and codec (absent in the seed's entries). */
export interface ShardKindFields {
  /** metadata.json's `format` (untrusted: any JSON value). */
  format?: unknown;
  /** metadata.json's `codec` (untrusted: any JSON value). */
  codec?: unknown;
}

/**
 * How to decode shard `name`: from its metadata.json entry's `format`/`codec` when it has them, else (seed-written
 * entries, or no metadata.json) from the file name. An entry naming a format or codec this version does not
 * know, or a file name that says otherwise than its entry, is one line naming the shard (kind "data").
 */
export function shardKind(name: string, entry: ShardKindFields | undefined, where: string): ShardKind {
  const base = name.split("/").pop()!;
  const fromName = kindFromFileName(base);
  const bad = (message: string, hint: string) => new ActshardError(message, { where, kind: "data", hint });
  const has = (k: keyof ShardKindFields) => entry?.[k] !== undefined && entry?.[k] !== null;
  let format: ShardFormatSpec | undefined;
  if (has("format")) {
    format = findShardFormat(entry!.format);
    if (!format) {
      throw bad(
        `metadata.json says format ${JSON.stringify(entry!.format)}, which this actshard does not know ` +
          `(it knows ${knownFormats().join(", ")})`,
        "upgrade actshard, or fix the shard's entry in metadata.json",
      );
    }
  }
  let codec: Codec | undefined;
  if (has("codec")) {
    if (!isCodec(entry!.codec)) {
      throw bad(
        `metadata.json says codec ${JSON.stringify(entry!.codec)}, which this actshard does not know ` +
          `(it knows ${CODECS.join(", ")})`,
        "upgrade actshard, or fix the shard's entry in metadata.json",
      );
    }
    codec = entry!.codec;
  }
  if (fromName && ((format && fromName.format !== format.name) || (codec && fromName.codec !== codec))) {
    throw bad(
      `file name says ${fromName.format}/${fromName.codec} but metadata.json says ` +
        `${format?.name ?? fromName.format}/${codec ?? fromName.codec}`,
      "the file was renamed or metadata.json edited: restore the original name or entry",
    );
  }
  if (!format && fromName) format = shardFormat(fromName.format);
  if (!format) {
    throw bad(
      `cannot tell the shard's format: no format in metadata.json and the name does not end in .<${
        [...registry.values()].map((f) => f.extension).join("|")
      }>[${CODECS.map((c) => CODEC_TABLE[c].suffix).filter((s) => s).join("|")}]`,
      "name the file as actshard writes it, or add its format and codec to metadata.json",
    );
  }
  return { format, codec: codec ?? fromName?.codec ?? "none" };
}
