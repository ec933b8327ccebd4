/**
 * Scale-out work split: which prompts a worker of an N-host run extracts. Inference needs no communication
 * between hosts, so every worker computes the same split from the same prompt list and takes its own part.
 *
 * The split is contiguous in `sample_idx` order and balanced by token count, not prompt count: the prompt list
 * (sorted by `sample_idx`) is laid out on a line of length T = total tokens, each prompt occupying its
 * `n_tokens`, and a prompt goes to the worker whose slice `[w·T/N, (w+1)·T/N)` contains the prompt's midpoint.
 * Each cut is then within half a prompt of its ideal position, so every worker's token count differs from the
 * mean T/N by at most one prompt's tokens (half the prompt straddling each of its two cuts). Contiguity keeps
 * each worker's sample range a single `[first, last]` interval, and `sample_idx` stays the global index, so
 * the union of all workers' records equals a single-host run's.
 *
 * Worker identity comes from flags (`--num_workers N --worker_index I`) or, so that every pod of a Kubernetes
 * Indexed Job can run the same command, from the environment: `JOB_COMPLETION_INDEX` (set by Kubernetes for
 * `completionMode: Indexed`) and `ACTSHARD_NUM_WORKERS` (set in the manifest to the Job's `completions`).
 * Flags override the environment.
 *
 * @example
 * ```ts
 * import { splitWork, workerDirName, workerFromEnv } from "./work_split.ts";
 * const items = [{ sample_idx: 0, n_tokens: 900 }, { sample_idx: 1, n_tokens: 100 }, { sample_idx: 2, n_tokens: 800 }];
 * splitWork(items, 2, 0); // [0]      (900 tokens)
 * splitWork(items, 2, 1); // [1, 2]   (900 tokens)
 * workerDirName(1, 2); // "worker-00001-of-00002"
 * workerFromEnv({ JOB_COMPLETION_INDEX: "1", ACTSHARD_NUM_WORKERS: "2" }); // { numWorkers: 2, workerIndex: 1 }
 * ```
 */
import { ActshardError, usageError } from "../errors.ts";

/** The environment variable holding the worker count (the Job's `completions`). */
export const NUM_WORKERS_ENV = "ACTSHARD_NUM_WORKERS";
/** The environment variable Kubernetes sets to a pod's index in an Indexed Job. */
export const WORKER_INDEX_ENV = "JOB_COMPLETION_INDEX";
/** Most workers a run may have: directory names carry 5 digits. */
export const MAX_WORKERS = 99999;

/** One prompt as the split sees it. */
export interface WorkItem {
  /** Global prompt index (the record's `sample_idx`). */
  sample_idx: number;
  /** Tokens of the prompt (after truncation): the cost of extracting it. */
  n_tokens: number;
}

/** A worker's identity within a run. */
export interface WorkerIdentity {
  numWorkers: number;
  workerIndex: number;
}

/**
 * Every worker's part at once: `result[w]` is the sorted `sample_idx` list of worker `w`. Deterministic (a pure
 * function of the items' sample_idx and n_tokens, independent of input order).
 */
export function splitAll(items: readonly WorkItem[], numWorkers: number): number[][] {
  checkWorkers(numWorkers, 0);
  const sorted = [...items].sort((a, b) => a.sample_idx - b.sample_idx);
  let total = 0;
  for (let i = 0; i < sorted.length; i++) {
    const it = sorted[i];
    if (!Number.isSafeInteger(it.sample_idx) || it.sample_idx < 0) {
      throw new ActshardError(`work split: sample_idx must be a non-negative integer, got ${it.sample_idx}`, {
        kind: "internal",
      });
    }
    if (!Number.isSafeInteger(it.n_tokens) || it.n_tokens < 0) {
      throw new ActshardError(`work split: n_tokens must be a non-negative integer, got ${it.n_tokens}`, {
        kind: "internal",
        where: `sample_idx ${it.sample_idx}`,
      });
    }
    if (i > 0 && sorted[i - 1].sample_idx === it.sample_idx) {
      throw new ActshardError(`work split: duplicate sample_idx ${it.sample_idx}`, { kind: "internal" });
    }
    total += it.n_tokens;
  }
  const parts: number[][] = Array.from({ length: numWorkers }, () => []);
  if (sorted.length === 0) return parts;
  if (total === 0) {
    // No token weights (all empty prompts): balance by count with the same midpoint rule.
    sorted.forEach((it, j) =>
      parts[Math.floor((numWorkers * (2 * j + 1)) / (2 * sorted.length))].push(it.sample_idx)
    );
    return parts;
  }
  // Integer arithmetic: worker = floor(N·(2·S_j + t_j) / (2·T)), S_j = tokens before item j.
  if (!Number.isSafeInteger(2 * total * numWorkers)) {
    throw new ActshardError(`work split: ${total} tokens × ${numWorkers} workers overflows`, {
      kind: "internal",
    });
  }
  let before = 0;
  for (const it of sorted) {
    const w = Math.min(numWorkers - 1, Math.floor((numWorkers * (2 * before + it.n_tokens)) / (2 * total)));
    parts[w].push(it.sample_idx);
    before += it.n_tokens;
  }
  return parts;
}

/**
 * The sorted `sample_idx` list of worker `workerIndex` of `numWorkers` (see the module doc for the rule).
 * Throws a usage error when the index is out of range.
 */
export function splitWork(items: readonly WorkItem[], numWorkers: number, workerIndex: number): number[] {
  checkWorkers(numWorkers, workerIndex);
  return splitAll(items, numWorkers)[workerIndex];
}

/** Directory (or GCS sub-prefix) of one worker's output: `worker-IIIII-of-NNNNN`. */
export function workerDirName(workerIndex: number, numWorkers: number): string {
  checkWorkers(numWorkers, workerIndex);
  return `worker-${String(workerIndex).padStart(5, "0")}-of-${String(numWorkers).padStart(5, "0")}`;
}

/** Parse a `worker-IIIII-of-NNNNN` name (last path component); null when it is not one. */
export function parseWorkerDirName(name: string): WorkerIdentity | null {
  const m = /^worker-(\d{5})-of-(\d{5})$/.exec(name.replace(/\/+$/, "").split("/").pop() ?? "");
  if (!m) return null;
  const id = { workerIndex: Number(m[1]), numWorkers: Number(m[2]) };
  return id.numWorkers >= 1 && id.workerIndex < id.numWorkers ? id : null;
}

/** Anything that yields environment variables: a plain record or `Deno.env`. */
export type EnvSource = Record<string, string | undefined> | { get(key: string): string | undefined };

/**
 * Worker identity from the environment: `JOB_COMPLETION_INDEX` and `ACTSHARD_NUM_WORKERS`. Neither set → a
 * single-worker run `{1, 0}`. Either one alone is a usage error: Kubernetes does not export the Job's
 * `completions`, so the count must be set explicitly in the manifest, and a count without an index cannot say
 * which part to take.
 */
export function workerFromEnv(env: EnvSource = Deno.env): WorkerIdentity {
  const rawN = envValue(env, NUM_WORKERS_ENV);
  const rawI = envValue(env, WORKER_INDEX_ENV);
  if (rawN === undefined && rawI === undefined) return { numWorkers: 1, workerIndex: 0 };
  if (rawN === undefined) {
    throw usageError(
      `${WORKER_INDEX_ENV}=${rawI} is set but ${NUM_WORKERS_ENV} is not`,
      `set ${NUM_WORKERS_ENV} to the Job's completions (see deploy/k8s/), or pass --num_workers`,
      NUM_WORKERS_ENV,
    );
  }
  const numWorkers = envInt(NUM_WORKERS_ENV, rawN, 1);
  if (rawI === undefined) {
    throw usageError(
      `${NUM_WORKERS_ENV}=${rawN} is set but ${WORKER_INDEX_ENV} is not`,
      `run as a Kubernetes Indexed Job, set ${WORKER_INDEX_ENV}, or pass --worker_index`,
      WORKER_INDEX_ENV,
    );
  }
  const workerIndex = envInt(WORKER_INDEX_ENV, rawI, 0);
  checkWorkers(numWorkers, workerIndex, WORKER_INDEX_ENV);
  return { numWorkers, workerIndex };
}

/**
 * Worker identity from flags, falling back to the environment per field: `--num_workers` overrides
 * `ACTSHARD_NUM_WORKERS`, `--worker_index` overrides `JOB_COMPLETION_INDEX`. A count with no index anywhere is
 * an error; neither anywhere is a single-worker run.
 */
export function resolveWorker(
  flags: { num_workers?: number; worker_index?: number },
  env: EnvSource = Deno.env,
): WorkerIdentity {
  const envN = envValue(env, NUM_WORKERS_ENV);
  const envI = envValue(env, WORKER_INDEX_ENV);
  const rawN = flags.num_workers ?? (envN === undefined ? undefined : envInt(NUM_WORKERS_ENV, envN, 1));
  const rawI = flags.worker_index ?? (envI === undefined ? undefined : envInt(WORKER_INDEX_ENV, envI, 0));
  if (rawN === undefined && rawI === undefined) return { numWorkers: 1, workerIndex: 0 };
  if (rawN === undefined) {
    throw usageError(
      `worker index ${rawI} given but no worker count`,
      `pass --num_workers or set ${NUM_WORKERS_ENV}`,
      "--num_workers",
    );
  }
  if (rawI === undefined) {
    throw usageError(
      `worker count ${rawN} given but no worker index`,
      `pass --worker_index or set ${WORKER_INDEX_ENV}`,
      "--worker_index",
    );
  }
  checkWorkers(rawN, rawI, flags.worker_index !== undefined ? "--worker_index" : WORKER_INDEX_ENV);
  return { numWorkers: rawN, workerIndex: rawI };
}

function envValue(env: EnvSource, key: string): string | undefined {
  const v = typeof env.get === "function"
    ? (env as { get(k: string): string | undefined }).get(key)
    : (env as Record<string, string | undefined>)[key];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function envInt(name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw usageError(
      `${name} must be an integer ≥ ${min}, got "${raw}"`,
      "fix the environment variable",
      name,
    );
  }
  return n;
}

function checkWorkers(numWorkers: number, workerIndex: number, where = "--worker_index"): void {
  if (!Number.isInteger(numWorkers) || numWorkers < 1 || numWorkers > MAX_WORKERS) {
    throw usageError(
      `the number of workers must be an integer in [1, ${MAX_WORKERS}], got ${numWorkers}`,
      "see --help",
      "--num_workers",
    );
  }
  if (!Number.isInteger(workerIndex) || workerIndex < 0 || workerIndex >= numWorkers) {
    throw usageError(
      `worker index ${workerIndex} is out of range for ${numWorkers} workers`,
      `use an index in [0, ${numWorkers - 1}]`,
      where,
    );
  }
}
