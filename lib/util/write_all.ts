/**
 * Write every byte: `Deno.FsFile.write` (like write(2)) may write fewer bytes than it was given, so every writer
 * of a whole buffer loops until it is all out. This is that loop, once.
 *
 * @example
 * ```ts
 * import { writeAll } from "./write_all.ts";
 * const path = await Deno.makeTempFile();
 * const f = await Deno.open(path, { write: true });
 * await writeAll(f, new TextEncoder().encode("all of it"));
 * f.close();
 * console.log(await Deno.readTextFile(path)); // "all of it"
 * await Deno.remove(path);
 * ```
 *
 * @module
 */

/** Anything with a write(2)-like `write` (`Deno.FsFile`, a `Deno.Conn`). */
export interface PartialWriter {
  /** Write some prefix of `p`; resolves to how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

/** Write all of `bytes` to `w`, looping over short writes. */
export async function writeAll(w: PartialWriter, bytes: Uint8Array): Promise<void> {
  let o = 0;
  while (o < bytes.length) o += await w.write(bytes.subarray(o));
}

/**
 * Write all of `bytes` to `f` synchronously, looping over short writes; at most `maxPerWrite` bytes per call
 * (the shard sink's 1 MiB: the kernel's buffered write costs more per byte in larger ones).
 *
 * @example
 * ```ts
 * import { writeAllSync } from "./write_all.ts";
 * const path = await Deno.makeTempFile();
 * using f = Deno.openSync(path, { write: true });
 * writeAllSync(f, new Uint8Array(3000).fill(1), 1024); // three writes
 * console.log(Deno.statSync(path).size); // 3000
 * Deno.removeSync(path);
 * ```
 */
export function writeAllSync(f: Deno.FsFile, bytes: Uint8Array, maxPerWrite = Infinity): void {
  let o = 0;
  while (o < bytes.length) o += f.writeSync(bytes.subarray(o, Math.min(bytes.length, o + maxPerWrite)));
}
