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
