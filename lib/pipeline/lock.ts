/**
 * One writer per output directory. Every stage that writes or deletes in a dataset directory — extract, upload
 * (its metadata.json rewrite and --delete_local_after_upload's deletions), `shard --output`, `shard --merge` —
 * takes an advisory lock on `.actshard.lock` first, so a second one stops with one line naming the holder's pid
 * instead of interleaving shards, overwriting metadata.json or deleting shards another process just committed.
 * The kernel drops the lock when the process dies (kill -9 included), so there is no stale lock to clean up after
 * a preemption; the pid written into the file is read only while the lock is held by someone.
 *
 * @example
 * ```ts
 * import { lockOutputDir } from "./lock.ts";
 * const lock = await lockOutputDir("./activations_arc", { stage: "extract" });
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

/** Options for {@link lockOutputDir}. */
export interface LockOptions {
  /** Create the directory when missing (default true: extract and shard write new ones). */
  create?: boolean;
  /** The stage taking the lock, written beside the pid (`upload`, `shard`, …) for the refusal line. */
  stage?: string;
}

/**
 * Take the output directory's lock, or throw a one-line error naming the process that holds it. Writes
 * `pid stage` into the lock file once held.
 */
export async function lockOutputDir(dir: string, opts: LockOptions = {}): Promise<DirLock> {
  if (opts.create ?? true) await Deno.mkdir(dir, { recursive: true });
  let file: Deno.FsFile;
  try {
    file = await Deno.open(join(dir, LOCK_NAME), { read: true, write: true, create: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("directory not found", { where: dir, kind: "input", hint: "check the path" });
    }
    throw e;
  }
  let held = false;
  let supported = true;
  try {
    held = await file.tryLock(true);
  } catch {
    held = true; // the filesystem has no locks (some network mounts): carry on unguarded, as before
    supported = false;
  }
  if (!held) {
    const holder = await readHolder(file);
    file.close();
    throw new ActshardError(
      `another actshard process${holder ? ` (${holder})` : ""} is writing to this output directory`,
      {
        where: dir,
        hint: "wait for it to finish, or give this run its own --output_dir (or --worker_index)",
      },
    );
  }
  if (supported) await writeHolder(file, opts.stage ?? "actshard").catch(() => {});
  let open = true;
  return {
    release() {
      if (!open) return;
      open = false;
      file.close(); // closing the descriptor releases the lock
    },
  };
}

/** `pid 1234, extract` from the lock file (written by the holder), or null when not readable yet. */
async function readHolder(file: Deno.FsFile): Promise<string | null> {
  try {
    const buf = new Uint8Array(256);
    await file.seek(0, Deno.SeekMode.Start);
    const n = await file.read(buf);
    const m = /^(\d+)(?: (\S+))?/.exec(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
    return m ? `pid ${m[1]}${m[2] ? `, ${m[2]}` : ""}` : null;
  } catch {
    return null;
  }
}

async function writeHolder(file: Deno.FsFile, stage: string): Promise<void> {
  const bytes = new TextEncoder().encode(`${Deno.pid} ${stage}\n`);
  await file.truncate(0);
  await file.seek(0, Deno.SeekMode.Start);
  let o = 0;
  while (o < bytes.length) o += await file.write(bytes.subarray(o));
}
