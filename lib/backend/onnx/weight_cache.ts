/**
 * The ONNX backend's converted-weights cache. onnxruntime takes f32 initializers; a BF16/F16 checkpoint (the
 * Qwen2.5 releases are BF16) must be widened first, which for the 0.5B model is 1 GB read and 2 GB written —
 * seconds on every run. It is done once per checkpoint instead: the f32 file and its index live under
 * `$ACTSHARD_CACHE_DIR/onnx/<key>/` (default `$XDG_CACHE_HOME/actshard/onnx`, else `~/.cache/actshard/onnx`),
 * keyed by the checkpoint's identity — each safetensors file's header (names, dtypes, shapes, offsets), size and
 * modification time — so a re-downloaded or edited checkpoint gets a new entry, and any layer set is served by
 * one entry (all the checkpoint's graph weights are converted). An entry is built in a temp directory and
 * renamed into place: a killed conversion leaves no half entry, and concurrent runs on one machine race
 * harmlessly (the first rename wins). Entries can be deleted at any time.
 *
 * @example
 * ```ts
 * import { cachedF32Weights } from "./weight_cache.ts";
 * import { CheckpointWeights } from "../../model/safetensors.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 1, vocab: 1000, dtype: "BF16", tokenizer: false });
 * const weights = await CheckpointWeights.open(`${dir}/model`);
 * // defaultWeightCacheDir() in a run (~/.cache/actshard or $ACTSHARD_CACHE_DIR); a temp dir here
 * const entry = await cachedF32Weights(weights, ["model.norm.weight"], `${dir}/cache`, (t) => console.log(t));
 * console.log(entry.dir, entry.hit, entry.refs.get("model.norm.weight")); // a miss: converted once
 * weights.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { ActshardError } from "../../errors.ts";
import { writeAll } from "../../util/write_all.ts";
import type { CheckpointWeights } from "../../model/safetensors.ts";
import type { ExternalRef } from "./emit.ts";

/** Bumped whenever the entry layout changes (old entries are then simply not found). */
const LAYOUT_VERSION = 1;
/** The f32 weights file of an entry. */
export const CACHED_WEIGHTS = "weights.f32.bin";
const INDEX = "index.json";

/** The cache root: `$ACTSHARD_CACHE_DIR/onnx`, `$XDG_CACHE_HOME/actshard/onnx` or `~/.cache/actshard/onnx`. */
export function defaultWeightCacheDir(): string {
  const own = Deno.env.get("ACTSHARD_CACHE_DIR");
  if (own) return join(own, "onnx");
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "actshard", "onnx");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (home) return join(home, ".cache", "actshard", "onnx");
  return join(Deno.cwd(), ".cache", "onnx");
}

/** A cache entry: where its f32 file is and each weight's place in it. */
export interface CacheEntry {
  dir: string;
  refs: Map<string, ExternalRef>;
  /** True when the entry existed (nothing was converted). */
  hit: boolean;
}

interface IndexFile {
  version: number;
  key: string;
  tensors: Record<string, { offset: number; length: number }>;
}

/**
 * The key of `files` (a checkpoint's safetensors files): sha256 over each one's header bytes, size and mtime.
 * Reading 8 + N header bytes per file, not the gigabytes behind them.
 */
export async function checkpointKey(files: string[]): Promise<string> {
  const h = createHash("sha256");
  h.update(`actshard-onnx-f32 v${LAYOUT_VERSION}\n`);
  for (const f of [...files].sort()) {
    const real = await Deno.realPath(f);
    const st = await Deno.stat(real);
    const file = await Deno.open(real, { read: true });
    try {
      const len = new Uint8Array(8);
      await readAt(file, len, 0);
      const n = Number(new DataView(len.buffer).getBigUint64(0, true));
      const head = new Uint8Array(Math.min(n, st.size));
      await readAt(file, head, 8);
      h.update(`${real.split("/").pop()}:${st.size}:${st.mtime?.getTime() ?? 0}:`);
      h.update(head);
    } finally {
      file.close();
    }
  }
  return h.digest("hex").slice(0, 32);
}

/**
 * The f32 weights of `names` (from `weights`) in the cache under `root`: found, or converted now and stored.
 * `onPhase` hears "converting …" while a conversion runs.
 */
export async function cachedF32Weights(
  weights: CheckpointWeights,
  names: string[],
  root: string,
  onPhase?: (text: string) => void,
): Promise<CacheEntry> {
  const infos = names.map((n) => weights.info(n));
  const key = await checkpointKey([...new Set(infos.map((t) => t.file))]);
  const dir = join(root, key);
  const found = await readIndex(dir, key, names);
  if (found) return { dir, refs: found, hit: true };

  await Deno.mkdir(root, { recursive: true });
  // An entry that does not check out (a truncated file, another layout) is rebuilt, not trusted.
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await removeStaleTemps(root, key);
  const tmp = await Deno.makeTempDir({ dir: root, prefix: `.${key}.tmp-` });
  try {
    const total = infos.reduce((s, t) => s + t.byteLength, 0);
    const dtypes = [...new Set(infos.map((t) => t.dtype))].join("/");
    onPhase?.(
      `converting ${(total / 2 ** 20).toFixed(0)} MB of ${dtypes} weights to f32, once (cached in ${dir})`,
    );
    const out = await Deno.open(join(tmp, CACHED_WEIGHTS), { write: true, create: true });
    const index: IndexFile = { version: LAYOUT_VERSION, key, tensors: {} };
    let pos = 0;
    try {
      for (const i of infos.keys()) {
        const f32 = await weights.read(names[i]);
        const bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
        await writeAll(out, bytes);
        index.tensors[names[i]] = { offset: pos, length: bytes.length };
        pos += bytes.length;
      }
      await out.sync();
    } finally {
      out.close();
    }
    await Deno.writeTextFile(join(tmp, INDEX), JSON.stringify(index));
    try {
      await Deno.rename(tmp, dir);
    } catch (e) {
      // Another run on this machine finished the same entry first: use it.
      const theirs = await readIndex(dir, key, names);
      if (theirs) return { dir, refs: theirs, hit: true };
      throw new ActshardError("could not store converted weights in the cache", {
        where: dir,
        kind: "io",
        cause: e,
        hint: "check that the cache directory is writable, or set ACTSHARD_CACHE_DIR elsewhere",
      });
    }
    return { dir, refs: refsOf(index), hit: false };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Temp dirs of `key` left by a killed conversion (untouched for 10 minutes: not one in progress). */
async function removeStaleTemps(root: string, key: string): Promise<void> {
  for await (const e of Deno.readDir(root)) {
    if (!e.isDirectory || !e.name.startsWith(`.${key}.tmp-`)) continue;
    const p = join(root, e.name);
    const st = await Deno.stat(p).catch(() => null);
    if (st?.mtime && Date.now() - st.mtime.getTime() > 10 * 60_000) {
      await Deno.remove(p, { recursive: true }).catch(() => {});
    }
  }
}

/** The refs of a complete entry holding every one of `names`, or null (absent, partial, other layout). */
async function readIndex(
  dir: string,
  key: string,
  names: string[],
): Promise<Map<string, ExternalRef> | null> {
  let index: IndexFile;
  let size: number;
  try {
    index = JSON.parse(await Deno.readTextFile(join(dir, INDEX)));
    size = (await Deno.stat(join(dir, CACHED_WEIGHTS))).size;
  } catch {
    return null;
  }
  if (index.version !== LAYOUT_VERSION || index.key !== key) return null;
  const refs = refsOf(index);
  const fits = names.every((n) => {
    const r = refs.get(n);
    return r !== undefined && r.offset + r.length <= size;
  });
  return fits ? refs : null;
}

function refsOf(index: IndexFile): Map<string, ExternalRef> {
  return new Map(
    Object.entries(index.tensors).map(([n, t]) => [n, { location: CACHED_WEIGHTS, ...t }]),
  );
}

async function readAt(f: Deno.FsFile, buf: Uint8Array, offset: number): Promise<void> {
  await f.seek(offset, Deno.SeekMode.Start);
  for (let got = 0; got < buf.length;) {
    const n = await f.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
}
