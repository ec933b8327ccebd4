/**
 * Whether a path names a regular file: false for a directory, a missing path or one that cannot be stat'ed
 * (no permission), never a throw. Shared by the callers that look for optional files (credentials, model
 * files, plugins, shards to upload).
 *
 * @example
 * ```ts
 * import { isFile, isFileSync } from "./is_file.ts";
 * const path = await Deno.makeTempFile();
 * console.log(await isFile(path), isFileSync(Deno.cwd()), await isFile("/no/such/file")); // true false false
 * await Deno.remove(path);
 * ```
 *
 * @module
 */

/**
 * True when `p` is a regular file (following links); false otherwise, and where it cannot be told.
 *
 * @example
 * ```ts
 * import { isFile } from "./is_file.ts";
 * console.log(await isFile("/no/such/file")); // false
 * ```
 */
export async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/**
 * {@link isFile}, synchronously.
 *
 * @example
 * ```ts
 * import { isFileSync } from "./is_file.ts";
 * console.log(isFileSync(Deno.cwd())); // false: a directory
 * ```
 */
export function isFileSync(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}
