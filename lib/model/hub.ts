/**
 * `--model_path`: a local directory, or a Hugging Face Hub repo id looked up in the local HF cache
 * (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`: `models--ORG--NAME/snapshots/*`) and otherwise
 * downloaded from `$HF_ENDPOINT` (default https://huggingface.co, `resolve/main/FILE` URLs) into that cache, with
 * a progress bar. Without network and cache → one error that says how to fetch the model.
 *
 * @example
 * ```ts
 * import { resolveModelDir } from "./hub.ts";
 * const dir = await resolveModelDir("KathirKs/qwen-2.5-0.5b"); // cache hit, or a download with progress
 * ```
 */
import { basename, join } from "node:path";
import { ActshardError } from "../errors.ts";

/** The default model (the seed's). */
export const DEFAULT_MODEL_ID = "KathirKs/qwen-2.5-0.5b";

/** Download progress of one file. */
export interface DownloadProgress {
  file: string;
  received: number;
  /** Total bytes when the server says (Content-Length), else undefined. */
  total?: number;
}

/** Options for {@link resolveModelDir}. */
export interface ResolveOptions {
  /** Download when not cached (default true). */
  download?: boolean;
  /** Hub endpoint (default `$HF_ENDPOINT` or https://huggingface.co). */
  endpoint?: string;
  /** HF hub cache root (default `$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** Progress callback; default: a progress bar on stderr when it is a terminal, else nothing. */
  onProgress?: (p: DownloadProgress) => void;
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

/** A local model directory for `pathOrRepoId` (see the module doc). */
export async function resolveModelDir(pathOrRepoId: string, opts: ResolveOptions = {}): Promise<string> {
  return await resolve(pathOrRepoId, opts, "model");
}

/** Like {@link resolveModelDir}, but only needs (and downloads) config.json and the tokenizer files. */
export async function resolveTokenizerDir(pathOrRepoId: string, opts: ResolveOptions = {}): Promise<string> {
  return await resolve(pathOrRepoId, opts, "tokenizer");
}

async function resolve(spec: string, opts: ResolveOptions, need: "model" | "tokenizer"): Promise<string> {
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
  return await download(repo, endpoint, repoDir, need, opts.onProgress ?? defaultProgress(), howTo);
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
  onProgress: (p: DownloadProgress) => void,
  howTo: string,
): Promise<string> {
  const headers: Record<string, string> = {};
  const token = Deno.env.get("HF_TOKEN");
  if (token) headers.authorization = `Bearer ${token}`;
  const url = (f: string) => `${endpoint}/${repo}/resolve/main/${f}`;
  const get = async (file: string): Promise<Response | null> => {
    let res: Response;
    try {
      res = await fetch(url(file), { headers });
    } catch (e) {
      throw new ActshardError(`cannot download ${repo} from ${endpoint} (no network?) and it is not cached`, {
        where: url(file),
        kind: "remote",
        hint: howTo,
        cause: e,
      });
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ActshardError(`download of ${file} failed: HTTP ${res.status}`, {
        where: url(file),
        kind: "remote",
        hint: res.status === 401 || res.status === 403 ? "set HF_TOKEN for a gated or private repo" : howTo,
      });
    }
    return res;
  };

  const config = await get("config.json");
  if (!config) {
    throw new ActshardError(`model ${repo} was not found on the Hub`, {
      where: url("config.json"),
      kind: "remote",
    });
  }
  const commit = config.headers.get("x-repo-commit") ?? "main";
  const snap = join(repoDir, "snapshots", commit);
  await Deno.mkdir(snap, { recursive: true });
  await save(config, join(snap, "config.json"), "config.json", onProgress);
  const fetchOptional = async (f: string) => {
    const r = await get(f);
    if (r) await save(r, join(snap, f), f, onProgress);
    return r !== null;
  };
  for (const f of [...TOKENIZER_FILES, ...OPTIONAL_FILES]) await fetchOptional(f);
  if (need === "model") {
    const index = await get("model.safetensors.index.json");
    if (index) {
      const text = await index.text();
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
        const r = await get(s);
        if (!r) {
          throw new ActshardError(`weight shard ${s} is missing on the Hub`, {
            where: url(s),
            kind: "remote",
          });
        }
        await save(r, join(snap, s), s, onProgress);
      }
      // The index goes in last: with it, the snapshot counts as complete (findSnapshot).
      await Deno.writeTextFile(join(snap, "model.safetensors.index.json.incomplete"), text);
      await Deno.rename(
        join(snap, "model.safetensors.index.json.incomplete"),
        join(snap, "model.safetensors.index.json"),
      );
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

/** Stream a response to `path` via a `.incomplete` temp file, reporting progress. */
async function save(res: Response, path: string, file: string, onProgress: (p: DownloadProgress) => void) {
  const totalHeader = res.headers.get("content-length");
  const total = totalHeader ? Number(totalHeader) : undefined;
  const tmp = `${path}.incomplete`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  let received = 0;
  try {
    for await (const chunk of res.body!) {
      let p = 0;
      while (p < chunk.length) p += await f.write(chunk.subarray(p));
      received += chunk.length;
      onProgress({ file, received, total });
    }
  } finally {
    f.close();
  }
  if (total !== undefined && received !== total) {
    throw new ActshardError(`download of ${file} was cut short (${received} of ${total} bytes)`, {
      where: path,
      kind: "remote",
      hint: "run again to retry",
    });
  }
  await Deno.rename(tmp, path);
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

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}
