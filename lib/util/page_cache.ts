/**
 * A file's pages in the kernel's page cache, steered through libc (Deno FFI, Linux): start the writeback of
 * bytes just written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), and drop a durable file's pages
 * (`posix_fadvise(POSIX_FADV_DONTNEED)`). The shard writer's sink uses both for the files it writes through the
 * page cache (file_sink_worker.ts): where direct writes (direct_file.ts) are refused or turned off.
 *
 * Why writeback early: this kernel starts none until 10 % of RAM is dirty or 30 s pass, so a whole shard went to
 * disk inside the final fsync, after its last byte, while the disk had sat idle (12–15 % of the `shard` stage's
 * wall clock). `sync_file_range` only starts the writes: no wait, no journal commit (an fdatasync would commit
 * each time, and on a FUSE mount such as gcsfuse an fsync can upload the file), and it orders nothing: the
 * final fsync alone makes the file durable.
 *
 * Why drop: where memory is bounded (a container's memory cgroup), a cache full of shards nobody reads again
 * soon makes every later write reclaim pages in the writing thread: measured here, the blocking pool's write CPU
 * went from ≈ 0.2 to 1.3 s/GB and the instant-backend ceiling (pickle, none, 2 cores) from 1264 to 487 MB/s;
 * with the drop, on the same full cache, 1162 MB/s.
 *
 * Everything is advice: where it cannot be given (not Linux, no FFI permission, no libc) it is a no-op, and
 * nothing about the bytes or their durability depends on it. `ACTSHARD_PAGE_CACHE=keep` turns both off (for
 * example to upload or verify right after writing, from memory).
 *
 * @example
 * ```ts
 * import { dropCachedPages } from "./page_cache.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(1 << 20));
 * using f = await Deno.open(path);
 * await f.sync(); // only clean pages are dropped: make them durable first
 * console.log(typeof dropCachedPages(path)); // "boolean" (false where it cannot)
 * await Deno.remove(path);
 * ```
 *
 * @module
 */
import { envGet } from "./native_lib.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  sync_file_range: { parameters: ["i32", "i64", "i64", "u32"], result: "i32" },
} as const;

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const POSIX_FADV_DONTNEED = 4;
const SYNC_FILE_RANGE_WRITE = 2;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (envGet("ACTSHARD_PAGE_CACHE") === "keep") return libc;
  if (globalThis.Deno?.build.os !== "linux" || typeof Deno.dlopen !== "function") return libc;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      return libc = Deno.dlopen(name, SYMBOLS).symbols;
    } catch { /* no FFI permission, or not this name: try the next, else stay a no-op */ }
  }
  return libc;
}

/**
 * A read-only descriptor of one file, for advice about its cached pages (any descriptor of a file reaches its
 * page cache: the writer keeps its own handle).
 *
 * @example
 * ```ts
 * import { CachedFile } from "./page_cache.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(4 << 20));
 * const c = CachedFile.open(path); // null where advice cannot be given
 * c?.writeBack(0, 4 << 20); // start writing those bytes to disk; returns at once
 * c?.close();
 * await Deno.remove(path);
 * ```
 */
export class CachedFile {
  private constructor(private c: Libc, private fd: number) {}

  /** A descriptor of `path`, or null where advice cannot be given (see the module's notes). */
  static open(path: string): CachedFile | null {
    const c = load();
    if (!c) return null;
    const fd = c.open(new TextEncoder().encode(path + "\0"), O_RDONLY | O_CLOEXEC);
    return fd < 0 ? null : new CachedFile(c, fd);
  }

  /** Start the writeback of `length` bytes from `offset` (dirty pages only; returns without waiting). */
  writeBack(offset: number, length: number): boolean {
    return this.fd >= 0 &&
      this.c.sync_file_range(this.fd, BigInt(offset), BigInt(length), SYNC_FILE_RANGE_WRITE) === 0;
  }

  /** Drop the file's cached pages (the kernel keeps dirty ones: call it once the file is fsynced). */
  drop(): boolean {
    return this.fd >= 0 && this.c.posix_fadvise(this.fd, 0n, 0n, POSIX_FADV_DONTNEED) === 0;
  }

  /** Release the descriptor (idempotent). */
  close(): void {
    if (this.fd >= 0) this.c.close(this.fd);
    this.fd = -1;
  }
}

/**
 * Ask the kernel to drop `path`'s cached pages (all of them; dirty ones it keeps, so call it once the file is
 * fsynced). True when the advice was taken, false when it could not be given (see the module's notes).
 *
 * @example
 * ```ts
 * import { dropCachedPages } from "./page_cache.ts";
 * console.log(dropCachedPages("/no/such/file")); // false
 * ```
 */
export function dropCachedPages(path: string): boolean {
  const f = CachedFile.open(path);
  try {
    return f?.drop() ?? false;
  } finally {
    f?.close();
  }
}
