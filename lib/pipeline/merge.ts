/**
 * Merge the outputs of an N-worker run (`worker-IIIII-of-NNNNN/` directories, local or on GCS) into one
 * dataset: a root `metadata.json` that lists every worker's shards, with `path` relative to the root, their
 * checksums and sample ranges, and a `workers` array. Shard bytes are never rewritten: when the destination is
 * the workers' parent (the usual `--merge OUT --output OUT`), nothing is copied at all; a worker that lives
 * elsewhere is copied under the destination first (local destinations only), so the relative paths hold.
 *
 * The merge refuses, naming the workers, unless all N of N are present exactly once, every one says
 * `status: complete`, every listed shard exists with its recorded size, and all ran the same config.
 *
 * @example
 * ```ts ignore
 * // ignore: needs the worker directories of a finished N-worker run (see mergeDatasets' example for one built here)
 * import { mergeDatasets } from "./merge.ts";
 * const meta = await mergeDatasets(["out"], "out"); // out/worker-0000i-of-00003/ → out/metadata.json
 * console.log(meta.total_shards, meta.workers);
 * ```
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { ActshardError } from "../errors.ts";
import { openStore } from "../storage/open.ts";
import type { BlobStore, ObjectInfo } from "../storage/types.ts";
import { parseWorkerDirName, workerDirName } from "./work_split.ts";
import {
  checkComplete,
  checkConfigs,
  checkRanges,
  checkSet,
  checkShardsPresent,
  type FoundWorker,
  parentOf,
  PER_WORKER_KEYS,
  trimSlash,
  workerRange,
} from "./merge_checks.ts";
import {
  type DatasetMetadata,
  METADATA_NAME,
  readMetadata,
  SCHEMA_VERSION,
  type ShardEntry,
  shardLocation,
  TOOL_VERSION,
  writeMetadataAtomic,
} from "../shard/metadata.ts";

/** One worker as listed in a merged root's `workers` array. */
export interface MergedWorker {
  /** `worker-IIIII-of-NNNNN`, also the sub-directory / sub-prefix under the root. */
  name: string;
  /** The worker's index, 0-based. */
  worker_index: number;
  /** How many workers the run had. */
  num_workers: number;
  /** The worker's own metadata status (always `complete` in a merged root). */
  status: string;
  /** Shards the worker wrote. */
  total_shards: number;
  /** Records the worker wrote. */
  total_samples: number;
  /** Sample range of the worker's records (null when it wrote none). */
  sample_idx_min: number | null;
  /** Upper end of the sample range (null when it wrote none). */
  sample_idx_max: number | null;
  /** Where the worker's output was found (informational). */
  source: string;
}

/** What the merge needs of a remote root: GcsStore's small-object write. */
interface WritableRoot {
  writeSmall(name: string, data: Uint8Array): Promise<unknown>;
}

/**
 * Merge worker outputs into one dataset rooted at `dest` and return the root metadata written there.
 * `sources` are worker directories or parents of worker directories, local paths or `gs://bucket/prefix`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { mergeDatasets } from "./merge.ts";
 * import { ShardWriter } from "../shard/writer.ts";
 * const out = await Deno.makeTempDir();
 * for (const i of [0, 1]) { // what `extract --num_workers 2 --worker_index I` leaves under out/
 *   const w = await ShardWriter.open({
 *     dir: `${out}/worker-0000${i}-of-00002`, format: "pickle", codec: "gzip", dtype: "float32",
 *     shardSizeBytes: 1 << 20, base: { config: { num_workers: 2, worker_index: i } },
 *   });
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 *   await w.close();
 * }
 * const meta = await mergeDatasets([out], out); // writes out/metadata.json; no shard is copied
 * assert(meta.total_shards === 2 && meta.status === "complete");
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function mergeDatasets(sources: string[], dest: string): Promise<DatasetMetadata> {
  if (sources.length === 0) {
    throw new ActshardError("nothing to merge", {
      kind: "usage",
      hint: "give the workers' parent directory",
    });
  }
  const found: FoundWorker[] = [];
  for (const src of sources) found.push(...(await findWorkers(src)));
  if (found.length === 0) {
    throw new ActshardError("no worker-IIIII-of-NNNNN directories found", {
      where: sources.join(", "),
      hint: "give the --output_dir / gs:// prefix that an extract run with --num_workers wrote into",
    });
  }
  const workers = checkSet(found);
  const metas = await Promise.all(workers.map((w) => readMetadata(sub(w))));
  checkComplete(workers, metas);
  checkConfigs(workers, metas);
  checkShardsPresent(workers, metas);
  checkRanges(workers, metas);

  const destNorm = normalize(dest);
  for (const w of workers) {
    const parent = normalize(parentOf(w.url));
    if (parent === destNorm) continue;
    await copyWorker(w, dest);
  }
  const meta = buildRoot(workers, metas, dest);
  await writeRoot(dest, meta);
  return meta;
}

/** Workers under (or at) one source location. */
async function findWorkers(src: string): Promise<FoundWorker[]> {
  const id = parseWorkerDirName(src);
  if (id) {
    const store = await openStore(src);
    const objects = new Map((await store.list()).map((o) => [o.name, o]));
    if (objects.has(METADATA_NAME)) {
      return [{
        name: workerDirName(id.workerIndex, id.numWorkers),
        index: id.workerIndex,
        count: id.numWorkers,
        store,
        prefix: "",
        url: trimSlash(src),
        objects,
      }];
    }
  }
  const store = await openStore(src);
  const byWorker = new Map<string, Map<string, ObjectInfo>>();
  for (const o of await store.list()) {
    const slash = o.name.indexOf("/");
    if (slash < 0) continue;
    const dir = o.name.slice(0, slash);
    if (!parseWorkerDirName(dir)) continue;
    if (!byWorker.has(dir)) byWorker.set(dir, new Map());
    byWorker.get(dir)!.set(o.name.slice(slash + 1), { ...o, name: o.name.slice(slash + 1) });
  }
  const out: FoundWorker[] = [];
  for (const [dir, objects] of [...byWorker].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const id = parseWorkerDirName(dir)!;
    out.push({
      name: dir,
      index: id.workerIndex,
      count: id.numWorkers,
      store,
      prefix: `${dir}/`,
      url: joinUrl(src, dir),
      objects,
    });
  }
  return out;
}

/** The root metadata: seed fields, every worker's shards with root-relative paths, and `workers`. */
function buildRoot(workers: FoundWorker[], metas: DatasetMetadata[], dest: string): DatasetMetadata {
  const shards: ShardEntry[] = [];
  const list: MergedWorker[] = [];
  workers.forEach((w, i) => {
    const m = metas[i];
    for (const s of m.shards) {
      shards.push({ ...s, shard_id: shards.length + 1, path: `${w.name}/${shardLocation(s)}` });
    }
    const r = workerRange(m.shards);
    list.push({
      name: w.name,
      worker_index: w.index,
      num_workers: w.count,
      status: m.status,
      total_shards: m.shards.length,
      total_samples: m.total_samples,
      sample_idx_min: r.min,
      sample_idx_max: r.max,
      source: w.url,
    });
  });
  const first = metas[0];
  const config: Record<string, unknown> = Object.fromEntries(
    Object.entries(first.config ?? {}).filter(([k]) => !PER_WORKER_KEYS.includes(k)),
  );
  if ("n_prompts" in (first.config ?? {})) {
    config.n_prompts = metas.reduce((s, m) => s + Number(m.config?.n_prompts ?? 0), 0);
  }
  const gcs = /^gs:\/\/([^/]+)\/?(.*)$/.exec(trimSlash(dest));
  const now = new Date().toISOString();
  return {
    ...first,
    total_shards: shards.length,
    total_samples: metas.reduce((s, m) => s + m.total_samples, 0),
    shard_size_gb: first.shard_size_gb,
    upload_to_gcs: metas.some((m) => m.upload_to_gcs),
    gcs_bucket: gcs ? gcs[1] : first.gcs_bucket,
    gcs_prefix: gcs ? gcs[2] : (first.gcs_prefix ? parentOf(first.gcs_prefix) || null : null),
    shards,
    status: "complete",
    tool: TOOL_VERSION,
    schema_version: SCHEMA_VERSION,
    created_at: metas.map((m) => m.created_at).filter(Boolean).sort()[0] ?? now,
    updated_at: now,
    config,
    merged_at: now,
    workers: list,
  };
}

/** Write the root metadata.json: atomically on local disk; on GCS as one object after all shards are there. */
async function writeRoot(dest: string, meta: DatasetMetadata): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(meta, null, 2) + "\n");
  if (dest.startsWith("gs://")) {
    // GcsStore (lib/storage/gcs.ts), seen through the one method used here.
    const store = (await openStore(dest)) as BlobStore & Partial<WritableRoot>;
    if (typeof store.writeSmall !== "function") {
      throw new ActshardError("gs:// destination cannot be written", { where: dest, kind: "internal" });
    }
    if (await store.stat(METADATA_NAME)) {
      refuseForeignRoot(
        new TextDecoder().decode(await store.read(METADATA_NAME)),
        `${store.url}/${METADATA_NAME}`,
      );
    }
    await store.writeSmall(METADATA_NAME, bytes);
    return;
  }
  await Deno.mkdir(dest, { recursive: true });
  const existing = await Deno.readTextFile(join(dest, METADATA_NAME)).catch(() => null);
  if (existing !== null) refuseForeignRoot(existing, join(dest, METADATA_NAME));
  await writeMetadataAtomic(dest, meta);
}

/** A metadata.json at the destination that is not a merged root belongs to another dataset: never replace it. */
function refuseForeignRoot(text: string, where: string): void {
  let old: unknown;
  try {
    old = JSON.parse(text);
  } catch {
    old = null;
  }
  if (!old || typeof old !== "object" || !Array.isArray((old as { workers?: unknown }).workers)) {
    throw new ActshardError("the destination already holds another dataset's metadata.json", {
      where,
      hint: "merge into the workers' parent directory or an empty one",
    });
  }
}

/** Copy one worker's files to DEST/worker-…/ (local destinations), streamed. */
async function copyWorker(w: FoundWorker, dest: string): Promise<void> {
  if (dest.startsWith("gs://")) {
    throw new ActshardError(`worker ${w.name} is not under the destination`, {
      where: w.url,
      hint: `merge into its parent (--output ${parentOf(w.url)}), or copy it to ${
        joinUrl(dest, w.name)
      } first`,
    });
  }
  const outDir = join(dest, w.name);
  await Deno.mkdir(outDir, { recursive: true });
  for (const name of [...w.objects.keys()].sort()) {
    const target = join(outDir, ...name.split("/"));
    await Deno.mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.partial`;
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    await (await w.store.openRead(w.prefix + name)).pipeTo(f.writable);
    await Deno.rename(tmp, target);
  }
}

/** A store view of one worker directory within its source store. */
function sub(w: FoundWorker): BlobStore {
  if (!w.prefix) return w.store;
  const s = w.store;
  const p = w.prefix;
  return {
    url: w.url,
    list: async () =>
      (await s.list()).filter((o) => o.name.startsWith(p)).map((o) => ({
        ...o,
        name: o.name.slice(p.length),
      })),
    stat: async (name) => {
      const o = await s.stat(p + name);
      return o ? { ...o, name } : null;
    },
    read: (name) => s.read(p + name),
    readRange: (name, a, b) => s.readRange(p + name, a, b),
    openRead: (name) => s.openRead(p + name),
  };
}

function joinUrl(base: string, name: string): string {
  return base.startsWith("gs://") ? `${trimSlash(base)}/${name}` : join(base, name);
}
function normalize(u: string): string {
  return u.startsWith("gs://") ? trimSlash(u) : resolve(u);
}
