/**
 * Dropping a durable file's pages from the page cache (Linux `posix_fadvise(POSIX_FADV_DONTNEED)`, through Deno
 * FFI to libc), so that a writer of many GB does not fill the cache with shards nobody reads again soon.
 *
 * Why: where memory is bounded (a container's memory cgroup; measured on this project's VM, whose cgroup holds
 * ≈ 7.5 GB of cache), a full cache makes every new page of a write reclaim an old one, in the writing thread:
 * the blocking pool's write CPU went from ≈ 0.2 to 1.4–2.3 s/GB and the instant-backend ceiling from ≈ 1260 to
 * ≈ 470 MB/s (pickle, none, 2 cores). Dropping what this process wrote, once it is durable and hashed, gives
 * back as much as each shard takes, so after the first shard its writes find free pages.
 *
 * A no-op returning false elsewhere: not Linux, no FFI permission, no libc; and `ACTSHARD_PAGE_CACHE=keep`
 * turns it off (e.g. to upload or verify right after writing, from the cache).
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
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const POSIX_FADV_DONTNEED = 4;

let libc: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | null | undefined;

function load(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | null {
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
 * Ask the kernel to drop `path`'s cached pages (all of them; dirty ones it keeps, so call it once the file is
 * fsynced). True when the advice was taken, false when it could not be given (see the module's notes).
 */
export function dropCachedPages(path: string): boolean {
  const c = load();
  if (!c) return false;
  const fd = c.open(new TextEncoder().encode(path + "\0"), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  try {
    return c.posix_fadvise(fd, 0n, 0n, POSIX_FADV_DONTNEED) === 0;
  } finally {
    c.close(fd);
  }
}
