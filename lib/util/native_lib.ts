/**
 * Finding an optional system library for Deno FFI (libzstd, ISA-L): an environment variable naming the file
 * wins, else the platform's usual names; and reading the environment without failing where there is no env
 * permission.
 *
 * @example
 * ```ts
 * import { libraryCandidates } from "./native_lib.ts";
 * const names = { linux: ["libzstd.so.1"], darwin: ["libzstd.1.dylib"], windows: ["zstd.dll"] };
 * console.log(libraryCandidates("ACTSHARD_ZSTD_LIB", names, "linux")); // ["libzstd.so.1"] unless the variable is set
 * ```
 */

/** An environment variable, or undefined when unset or unreadable (no env permission: defaults apply). */
export function envGet(name: string): string | undefined {
  try {
    return globalThis.Deno?.env.get(name);
  } catch {
    return undefined;
  }
}

/** The library files to try, in order: `$envVar` alone when set, else `names` for the platform `os`. */
export function libraryCandidates(
  envVar: string,
  names: { linux: string[]; darwin: string[]; windows: string[] },
  os: string = globalThis.Deno?.build.os ?? "linux",
): string[] {
  const env = envGet(envVar);
  if (env) return [env];
  return os === "darwin" ? names.darwin : os === "windows" ? names.windows : names.linux;
}
