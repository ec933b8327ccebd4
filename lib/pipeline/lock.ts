/**
 * One writer per output directory. Every stage that writes or deletes in a dataset directory — extract, upload
 * (its metadata.json rewrite and --delete_local_after_upload's deletions), `shard --output`, `shard --merge` —
 * takes an advisory lock on `.actshard.lock` first, so a second one stops with one line naming the holder's pid
 * (found in /proc/locks, where the kernel lists who holds the lock) instead of interleaving shards, overwriting
 * metadata.json or deleting shards another process just committed. The kernel drops the lock when the process
 * dies (kill -9 included), so there is no stale lock to clean up after a preemption. The file stays empty, so it
 * never changes a snapshot of the directory.
 *
 * @example
 * ```ts
 * import { lockOutputDir } from "./lock.ts";
 * const dir = await Deno.makeTempDir(); // the output dir, e.g. ./activations_arc
 * const lock = await lockOutputDir(dir);
 * try {
 *   // ... write shards and metadata.json ...
 * } finally {
 *   lock.release();
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";

/** Name of the lock file inside an output directory. */
export const LOCK_NAME = ".actshard.lock";

/** A held lock; `release()` is idempotent. */
export interface DirLock {
  release(): void;
}

/** Options for {@link lockOutputDir}. */
export interface LockOptions {
  /** Create the directory when missing (default true: extract and shard write new ones). */
  create?: boolean;
}

/** Take the output directory's lock, or throw a one-line error naming the process that holds it. */
export async function lockOutputDir(dir: string, opts: LockOptions = {}): Promise<DirLock> {
  if (opts.create ?? true) await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, LOCK_NAME);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("directory not found", { where: dir, kind: "input", hint: "check the path" });
    }
    throw e;
  }
  let held = false;
  try {
    held = await file.tryLock(true);
  } catch {
    held = true; // the filesystem has no locks (some network mounts): carry on unguarded, as before
  }
  if (!held) {
    file.close();
    const holder = await lockHolder(path);
    throw new ActshardError(
      `another actshard process${holder ? ` (${holder})` : ""} is writing to this output directory`,
      {
        where: dir,
        hint: "wait for it to finish, or give this run its own --output_dir (or --worker_index)",
      },
    );
  }
  let open = true;
  return {
    release() {
      if (!open) return;
      open = false;
      file.close(); // closing the descriptor releases the lock
    },
  };
}

/**
 * `pid 1234, extract` for the process holding the flock on `path`, from /proc/locks (Linux) and the holder's
 * command line; null where that is not available.
 */
export async function lockHolder(path: string): Promise<string | null> {
  try {
    const ino = (await Deno.stat(path)).ino;
    for (const line of (await Deno.readTextFile("/proc/locks")).split("\n")) {
      // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2148172 0 EOF" (waiters are listed with "->": skipped)
      const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line);
      if (!m || Number(m[2]) !== ino || m[1] === "0") continue;
      const stage = await Deno.readTextFile(`/proc/${m[1]}/cmdline`).then(
        (c) => c.split("\0").map((a) => /scripts\/(\w+)\.ts$/.exec(a)?.[1]).find(Boolean),
        () => undefined,
      );
      return `pid ${m[1]}${stage ? `, ${stage}` : ""}`;
    }
  } catch { /* not Linux, or /proc not readable */ }
  return null;
}
