/**
 * `--model_path`: a local directory, or a Hugging Face Hub repo id looked up in the local HF cache
 * (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`: `models--ORG--NAME/snapshots/*`) and otherwise
 * downloaded from `$HF_ENDPOINT` (default https://huggingface.co, `resolve/main/FILE` URLs) into that cache, with
 * a progress bar. Without network and cache → one error that says how to fetch the model.
 *
 * Each file download has an inactivity timeout (no response or no body bytes for `stallTimeoutMs` aborts the
 * attempt) and bounded retries with exponential backoff for stalls, dropped connections, short bodies and HTTP
 * 408/429/5xx; a retry resumes with a `Range` request when the server answers 206 for it, else restarts the
 * file. When every attempt failed: one error naming the file and the last reason.
 *
 * @example
 * ```ts ignore
 * // ignore: downloads the 1 GB checkpoint from the Hugging Face Hub (no network on a CI box)
 * import { resolveModelDir } from "./hub.ts";
 * const dir = await resolveModelDir("KathirKs/qwen-2.5-0.5b"); // cache hit, or a download with progress
 * ```
 *
 * @module
 */
import { basename, join } from "node:path";
import { ActshardError } from "../errors.ts";
import { type DownloadProgress, fetchToFile, type TransferPolicy } from "./hub_transfer.ts";
import { isFile } from "../util/is_file.ts";

export type { DownloadProgress };

/** The default model (the seed's). */
export const DEFAULT_MODEL_ID = "KathirKs/qwen-2.5-0.5b";

/** Options for {@link resolveModelDir}. */
export interface ResolveModelOptions {
  /** Download when not cached (default true). */
  download?: boolean;
  /** Hub endpoint (default `$HF_ENDPOINT` or https://huggingface.co). */
  endpoint?: string;
  /** HF hub cache root (default `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** Progress callback; default: a progress bar on stderr when it is a terminal, else nothing. */
  onProgress?: (p: DownloadProgress) => void;
  /** Abort an attempt when no response / no body bytes arrive for this long (default 60 000 ms). */
  stallTimeoutMs?: number;
  /** Retries per file after the first attempt (default 4). */
  retries?: number;
  /** Backoff before retry k (1-based): retryBaseMs · 2^(k-1), at most 30 s (default 1000 ms). */
  retryBaseMs?: number;
}

const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"];
const OPTIONAL_FILES = ["generation_config.json", "special_tokens_map.json", "added_tokens.json"];

/** The HF hub cache root. */
export function hubCacheDir(): string {
  const env = (k: string) => Deno.env.get(k);
  if (env("HF_HUB_CACHE")) return env("HF_HUB_CACHE")!;
  if (env("HF_HOME")) return join(env("HF_HOME")!, "hub");
  return join(env("HOME") ?? ".", ".cache", "huggingface", "hub");
}

/**
 * A local model directory for `pathOrRepoId` (see the module doc).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { resolveModelDir } from "./hub.ts";
 * const local = await Deno.makeTempDir();
 * assert((await resolveModelDir(local)) === local); // a directory is taken as it is
 * const cacheDir = await Deno.makeTempDir(); // an empty cache and no download: one line saying how to fetch it
 * await resolveModelDir("KathirKs/qwen-2.5-0.5b", { cacheDir, download: false }).catch((e) => console.log(e.line()));
 * await Deno.remove(local);
 * await Deno.remove(cacheDir);
 * ```
 */
export async function resolveModelDir(pathOrRepoId: string, opts: ResolveModelOptions = {}): Promise<string> {
  return await resolve(pathOrRepoId, opts, "model");
}

/** Like {@link resolveModelDir}, but only needs (and downloads) config.json and the tokenizer files. */
export async function resolveTokenizerDir(
  pathOrRepoId: string,
  opts: ResolveModelOptions = {},
): Promise<string> {
  return await resolve(pathOrRepoId, opts, "tokenizer");
}

async function resolve(
  spec: string,
  opts: ResolveModelOptions,
  need: "model" | "tokenizer",
): Promise<string> {
  if (await isDir(spec)) return spec;
  const repo = /^[\w.-]+\/[\w.-]+$/.test(spec) && !spec.startsWith(".") ? spec : null;
  if (!repo) {
    throw new ActshardError("model directory not found", {
      where: spec,
      kind: "usage",
      hint: "--model_path must be a local Hugging Face model directory or a Hub repo id like ORG/NAME",
    });
  }
  const cache = opts.cacheDir ?? hubCacheDir();
  const repoDir = join(cache, `models--${repo.replace("/", "--")}`);
  const cached = await findSnapshot(repoDir, need);
  if (cached) return cached;
  const endpoint = (opts.endpoint ?? Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
  const howTo = `run \`huggingface-cli download ${repo}\` where there is network and copy ${repoDir} here, ` +
    `or pass --model_path DIR (a directory with config.json and *.safetensors)`;
  if (opts.download === false) {
    throw new ActshardError(`model ${repo} is not in the local Hugging Face cache`, {
      where: repoDir,
      hint: howTo,
    });
  }
  const headers: Record<string, string> = {};
  const token = Deno.env.get("HF_TOKEN");
  if (token) headers.authorization = `Bearer ${token}`;
  const policy: TransferPolicy = {
    headers,
    stallTimeoutMs: opts.stallTimeoutMs ?? 60_000,
    retries: Math.max(0, opts.retries ?? 4),
    retryBaseMs: opts.retryBaseMs ?? 1000,
    onProgress: opts.onProgress ?? defaultProgress(),
    reachable: false,
  };
  return await download(repo, endpoint, repoDir, need, policy, howTo);
}

/**
 * Whether `dir` has a sharded index and every shard it lists (an interrupted download, ours or
 * huggingface-cli's, can leave the index without all its shards).
 */
async function indexComplete(dir: string): Promise<boolean> {
  let map: unknown;
  try {
    map = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json"))).weight_map;
  } catch {
    return false;
  }
  if (typeof map !== "object" || map === null) return false;
  for (const shard of new Set(Object.values(map as Record<string, string>))) {
    if (!(await isFile(join(dir, basename(String(shard)))))) return false;
  }
  return true;
}

/** A snapshot directory holding what `need` requires, preferring the one `refs/main` names. */
async function findSnapshot(repoDir: string, need: "model" | "tokenizer"): Promise<string | null> {
  const snaps = join(repoDir, "snapshots");
  const names: string[] = [];
  try {
    const main = (await Deno.readTextFile(join(repoDir, "refs", "main"))).trim();
    if (main) names.push(main);
  } catch { /* no refs/main */ }
  try {
    for await (const e of Deno.readDir(snaps)) if (!names.includes(e.name)) names.push(e.name);
  } catch {
    return null;
  }
  for (const n of names) {
    const d = join(snaps, n);
    const has = async (f: string) => await isFile(join(d, f));
    const tok = await has("tokenizer.json") || (await has("vocab.json") && await has("merges.txt"));
    const weights = await has("model.safetensors") || await indexComplete(d);
    if (await has("config.json") && (need === "tokenizer" ? tok : weights)) return d;
  }
  return null;
}

async function download(
  repo: string,
  endpoint: string,
  repoDir: string,
  need: "model" | "tokenizer",
  policy: TransferPolicy,
  howTo: string,
): Promise<string> {
  const url = (f: string) => `${endpoint}/${repo}/resolve/main/${f}`;
  const unreachable = (file: string, cause: unknown) =>
    new ActshardError(`cannot download ${repo} from ${endpoint} (no network?) and it is not cached`, {
      where: url(file),
      kind: "remote",
      hint: howTo,
      cause,
    });
  let snap = "";
  const config = await fetchToFile(
    url("config.json"),
    "config.json",
    async (h) => {
      snap = join(repoDir, "snapshots", h.get("x-repo-commit") ?? "main");
      await Deno.mkdir(snap, { recursive: true });
      return join(snap, "config.json");
    },
    policy,
    howTo,
    unreachable,
  );
  if (!config) {
    throw new ActshardError(`model ${repo} was not found on the Hub`, {
      where: url("config.json"),
      kind: "remote",
    });
  }
  const commit = config.get("x-repo-commit") ?? "main";
  const fetchOptional = async (f: string, dest = join(snap, f)) =>
    await fetchToFile(url(f), f, () => Promise.resolve(dest), policy, howTo, unreachable) !== null;
  for (const f of [...TOKENIZER_FILES, ...OPTIONAL_FILES]) await fetchOptional(f);
  if (need === "model") {
    // The index is fetched under another name and put in place last: with it, the snapshot counts as
    // complete (findSnapshot).
    const pending = join(snap, "model.safetensors.index.json.pending");
    if (await fetchOptional("model.safetensors.index.json", pending)) {
      const text = await Deno.readTextFile(pending);
      let shards: Set<string>;
      try {
        shards = new Set(Object.values((JSON.parse(text).weight_map ?? {}) as Record<string, string>));
      } catch (e) {
        throw new ActshardError("model.safetensors.index.json on the Hub is not valid JSON", {
          where: url("model.safetensors.index.json"),
          kind: "remote",
          cause: e,
        });
      }
      for (const s of shards) {
        if (!(await fetchOptional(s))) {
          throw new ActshardError(`weight shard ${s} is missing on the Hub`, {
            where: url(s),
            kind: "remote",
          });
        }
      }
      await Deno.rename(pending, join(snap, "model.safetensors.index.json"));
    } else if (!(await fetchOptional("model.safetensors"))) {
      throw new ActshardError(`model ${repo} has no safetensors weights on the Hub`, {
        where: url("model.safetensors"),
        kind: "remote",
      });
    }
  }
  await Deno.mkdir(join(repoDir, "refs"), { recursive: true });
  await Deno.writeTextFile(join(repoDir, "refs", "main"), commit);
  return snap;
}

/** A one-line progress bar on stderr, redrawn at most every 200 ms (nothing when stderr is not a terminal). */
export function defaultProgress(): (p: DownloadProgress) => void {
  if (!Deno.stderr.isTerminal()) return () => {};
  let last = 0;
  const enc = new TextEncoder();
  return (p) => {
    const now = Date.now(), done = p.total !== undefined && p.received >= p.total;
    if (now - last < 200 && !done) return;
    last = now;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const frac = p.total ? p.received / p.total : 0;
    const bar = p.total
      ? `[${"#".repeat(Math.round(frac * 30)).padEnd(30)}] ${(frac * 100).toFixed(0)}% `
      : "";
    const line = `\r${p.file.padEnd(28).slice(0, 28)} ${bar}${mb(p.received)}${
      p.total ? `/${mb(p.total)}` : ""
    } MB`;
    Deno.stderr.writeSync(enc.encode(line + (done ? "\n" : "")));
  };
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}
