/**
 * metadata.json is untrusted input: datasets travel between people and buckets, exactly like pickles. Every
 * name a stage takes from it — a shard's `filename`, `path` (merged roots), `local_path`, `gcs_path`, a merged
 * root's worker directories — is checked here, once, when the file is parsed ({@link readMetadata} calls
 * {@link checkMetadataEntries}), so no stage ever reads, uploads or deletes a file outside the dataset because a
 * metadata.json said so. A shard location is `shard_NNNN.<format ext>[codec suffix]` (`shard_0001.pkl.gz`; the
 * extensions and suffixes are the format and codec registries', lib/shard/formats/mod.ts), optionally under
 * `worker-IIIII-of-NNNNN/`: no `..`, no absolute path, no other directory. `gcs_path` must name the same shard in
 * the dataset's own bucket; `local_path` (informational: never opened) must end in the same file name. The
 * checksum fields, when present, must have their types (a string `crc32c` would otherwise skip the comparison).
 *
 * @example
 * ```ts
 * import { isShardLocation } from "./metadata_check.ts";
 * isShardLocation("worker-00001-of-00004/shard_0003.pkl.gz"); // true
 * isShardLocation("../victim.pkl.gz"); // false
 * ```
 */
import { ActshardError } from "../errors.ts";
import { isShardFileName } from "./formats/mod.ts";

/**
 * Matches shard files this project (or the seed) writes: `shard_NNNN.<format ext>[codec suffix]`, for every
 * format and codec the registries know (`test` only: formats registered at run time count too).
 */
export const SHARD_FILE_RE: { test(name: string): boolean } = { test: isShardFileName };

/** Matches a worker directory of an N-worker run (`worker-IIIII-of-NNNNN`). */
export const WORKER_DIR_RE = /^worker-\d{5}-of-\d{5}$/;

/** True for `shard_NNNN.<ext>` or `worker-IIIII-of-NNNNN/shard_NNNN.<ext>`: a location inside a dataset root. */
export function isShardLocation(loc: string): boolean {
  const parts = loc.split("/");
  if (parts.length === 1) return isShardFileName(parts[0]);
  return parts.length === 2 && WORKER_DIR_RE.test(parts[0]) && isShardFileName(parts[1]);
}

/** The fields of one shard entry this check reads (a metadata.json as parsed, before it is trusted). */
interface RawEntry {
  shard_id?: unknown;
  filename?: unknown;
  path?: unknown;
  local_path?: unknown;
  gcs_path?: unknown;
  bytes?: unknown;
  crc32c?: unknown;
  sha256?: unknown;
}

/** Where the metadata came from, for the checks that depend on it. */
export interface MetadataOrigin {
  /** `DIR/metadata.json` or `gs://B/P/metadata.json`, named in errors. */
  where: string;
  /** The bucket of a gs:// dataset (its gcs_paths must stay in it when the metadata names no bucket). */
  bucket?: string;
}

const HINT = "a shard must be shard_NNNN.<ext>, optionally under worker-IIIII-of-NNNNN/; " +
  "fix or restore metadata.json (nothing outside the dataset is read, uploaded or deleted)";

/**
 * Throw a one-line {@link ActshardError} naming the first entry of `meta` whose names or checksum fields are
 * not what this project writes. `meta` is the parsed JSON (an object with a `shards` array).
 */
export function checkMetadataEntries(
  meta: { shards: unknown[]; gcs_bucket?: unknown; workers?: unknown },
  origin: MetadataOrigin,
): void {
  const refuse = (what: string): never => {
    throw new ActshardError(`metadata.json lists ${what}`, { where: origin.where, kind: "data", hint: HINT });
  };
  const bucket = typeof meta.gcs_bucket === "string" && meta.gcs_bucket ? meta.gcs_bucket : origin.bucket;
  const seen = new Set<string>();
  meta.shards.forEach((raw, i) => {
    const e = raw as RawEntry;
    const who = `shard entry ${i + 1}${typeof e.shard_id === "number" ? ` (shard_id ${e.shard_id})` : ""}`;
    const f = e.filename;
    if (typeof f !== "string" || !isShardFileName(f)) {
      refuse(`an unsafe shard filename ${JSON.stringify(f)} in ${who}`);
    }
    const filename = f as string;
    let loc = filename;
    if (e.path !== undefined && e.path !== null) {
      if (typeof e.path !== "string" || !isShardLocation(e.path) || e.path.split("/").pop() !== filename) {
        refuse(`an unsafe shard path ${JSON.stringify(e.path)} in ${who}`);
      }
      loc = e.path as string;
    }
    if (seen.has(loc)) refuse(`shard ${JSON.stringify(loc)} twice (${who})`);
    seen.add(loc);
    if (e.local_path !== undefined && e.local_path !== null) {
      const lp = e.local_path;
      if (typeof lp !== "string" || lp.replaceAll("\\", "/").split("/").pop() !== filename) {
        refuse(`a local_path ${JSON.stringify(lp)} that is not ${filename} in ${who}`);
      }
    }
    if (e.gcs_path !== undefined && e.gcs_path !== null) checkGcsPath(e.gcs_path, loc, bucket, who, refuse);
    if (e.bytes !== undefined && !(Number.isSafeInteger(e.bytes) && (e.bytes as number) >= 0)) {
      refuse(`a malformed bytes ${JSON.stringify(e.bytes)} in ${who}`);
    }
    if (
      e.crc32c !== undefined &&
      !(Number.isInteger(e.crc32c) && (e.crc32c as number) >= -(2 ** 31) && (e.crc32c as number) < 2 ** 32)
    ) refuse(`a malformed crc32c ${JSON.stringify(e.crc32c)} in ${who}`);
    if (e.sha256 !== undefined && !(typeof e.sha256 === "string" && /^[0-9a-f]{64}$/.test(e.sha256))) {
      refuse(`a malformed sha256 ${JSON.stringify(e.sha256)} in ${who}`);
    }
  });
  if (Array.isArray(meta.workers)) {
    for (const w of meta.workers) {
      const name = (w as { name?: unknown })?.name;
      if (typeof name !== "string" || !WORKER_DIR_RE.test(name)) {
        refuse(`an unsafe worker directory ${JSON.stringify(name)} in workers`);
      }
    }
  }
}

function checkGcsPath(
  g: unknown,
  loc: string,
  bucket: string | undefined,
  who: string,
  refuse: (what: string) => never,
): void {
  const m = typeof g === "string" ? /^gs:\/\/([^/]+)\/(.+)$/.exec(g) : null;
  const segs = m ? m[2].split("/") : [];
  if (!m || segs.some((s) => s === "" || s === "." || s === "..") || segs.at(-1) !== loc.split("/").pop()) {
    refuse(`an unsafe gcs_path ${JSON.stringify(g)} in ${who}`);
  }
  if (bucket && m![1] !== bucket) refuse(`a gcs_path in another bucket (${m![1]}, not ${bucket}) in ${who}`);
}
