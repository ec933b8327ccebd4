/**
 * The one mapping from raw OS errors to a user's line. Deno's errors read "File exists (os error 17): mkdir
 * '/x/out'": true, but they name neither the flag the path came from nor what to do. Given the path and port
 * flags the CLI parsed (paths.ts), {@link osErrorLine} finds the flag whose path the error is about and says
 * what is wrong with it and how to fix it: "--output_dir /x/out: /x/out is a file, not a directory: give a
 * directory path (it is created if missing), or move the file away".
 *
 * @example
 * ```ts
 * import { osErrorLine } from "./os_errors.ts";
 * const e = new Deno.errors.AlreadyExists("File exists (os error 17): mkdir '/x/out'");
 * console.log(osErrorLine(e, [{ flag: "--output_dir", kind: "path", value: "/x/out" }]));
 * ```
 */
import { dirname } from "node:path";
import type { NotedFlag } from "./paths.ts";

/** One line for an OS error about one of `flags`' paths or ports, or null when it is about none of them. */
export function osErrorLine(e: unknown, flags: readonly NotedFlag[]): string | null {
  if (!(e instanceof Error)) return null;
  const code = (e as { code?: string }).code ?? "";
  if (e instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
    const port = flags.find((f) => f.kind === "port");
    const what = port
      ? `${port.flag} ${port.value}: the port is already in use`
      : "the address is already in use";
    const fix = port
      ? `stop the process holding it, or pick another ${port.flag} (0 = any free port)`
      : "stop the process holding it";
    return `${what}: ${fix}`;
  }
  const paths = [...e.message.matchAll(/'([^']+)'/g)].map((m) => m[1]);
  if (paths.length === 0) return null;
  // The flag the error is about: its own path first, then one the error is inside of (a file written under
  // --output_dir), then one inside the error's path (a parent that is a file); the most specific wins.
  let best: { f: NotedFlag; path: string; rank: number } | null = null;
  for (const path of paths) {
    for (const f of flags) {
      if (f.kind !== "path" || !f.value) continue;
      const rank = path === f.value
        ? 3
        : path.startsWith(f.value + "/")
        ? 2
        : f.value.startsWith(path + "/")
        ? 1
        : 0;
      if (rank === 0) continue;
      if (!best || rank > best.rank || (rank === best.rank && f.value.length > best.f.value.length)) {
        best = { f, path, rank };
      }
    }
  }
  if (!best) return null;
  const { f, path } = best;
  const problem = describe(e, code, path);
  if (!problem) return null;
  return `${f.flag} ${f.value}: ${problem.what}: ${problem.fix}`;
}

function describe(e: Error, code: string, path: string): { what: string; fix: string } | null {
  if (e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory) {
    const file = firstFileOnPath(path) ?? path;
    if (file !== path) {
      return {
        what: `${file} is a file, so nothing can be created under it`,
        fix: "fix the path, or move that file away",
      };
    }
    return {
      what: `${file} is a file, not a directory`,
      fix: "give a directory path (it is created if missing), or move the file away",
    };
  }
  if (e instanceof Deno.errors.NotFound) {
    const missing = firstMissingOnPath(path) ?? path;
    return {
      what: `${missing} does not exist`,
      fix: missing === path ? "check the path" : "create that directory first, or fix the path",
    };
  }
  if (e instanceof Deno.errors.PermissionDenied || code === "EACCES" || code === "EPERM") {
    return {
      what: `permission denied on ${path}`,
      fix: "choose a location you can write to (and read), or fix its permissions",
    };
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return { what: `${path} is a directory`, fix: "give a file path" };
  }
  if (code === "EROFS" || /read-only file system/i.test(e.message)) {
    return { what: `${path} is on a read-only file system`, fix: "choose a writable location" };
  }
  if (code === "ENOSPC" || /no space left/i.test(e.message)) {
    return {
      what: `no space left on the disk holding ${path}`,
      fix: "free some space, or choose another disk",
    };
  }
  return null;
}

/** The first existing non-directory among `path`'s ancestors (and itself), from the root down. */
function firstFileOnPath(path: string): string | null {
  for (const p of ancestors(path)) {
    try {
      if (!Deno.statSync(p).isDirectory) return p;
    } catch {
      return null;
    }
  }
  return null;
}

/** The first missing entry among `path`'s ancestors (and itself), from the root down. */
function firstMissingOnPath(path: string): string | null {
  for (const p of ancestors(path)) {
    try {
      Deno.statSync(p);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return p;
      return null;
    }
  }
  return null;
}

function ancestors(path: string): string[] {
  const out = [path];
  for (let p = dirname(path); p !== out[out.length - 1]; p = dirname(p)) out.push(p);
  return out.reverse();
}
