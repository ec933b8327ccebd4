/**
 * One writer per output directory. Two extract processes on the same directory (a duplicated pod index, a
 * second terminal) would interleave shards and metadata rewrites; an advisory lock on `.actshard.lock` makes the
 * second one stop with one line instead. The kernel drops the lock when the process dies (kill -9 included), so
 * there is no stale lock to clean up after a preemption. The file stays empty, so it never changes a snapshot
 * of the directory.
 *
 * @example
 * ```ts
 * import { lockOutputDir } from "./lock.ts";
 * const lock = await lockOutputDir("./activations_arc");
 * try {
 *   // ... write shards and metadata.json ...
 * } finally {
 *   lock.release();
 * }
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

/** Take the output directory's lock (creating the directory), or throw a one-line error if another process holds it. */
export async function lockOutputDir(dir: string): Promise<DirLock> {
  await Deno.mkdir(dir, { recursive: true });
  const file = await Deno.open(join(dir, LOCK_NAME), { read: true, write: true, create: true });
  let held = false;
  try {
    held = await file.tryLock(true);
  } catch {
    held = true; // the filesystem has no locks (some network mounts): carry on unguarded, as before
  }
  if (!held) {
    file.close();
    throw new ActshardError("another actshard process is writing to this output directory", {
      where: dir,
      hint: "wait for it to finish, or give this run its own --output_dir (or --worker_index)",
    });
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
