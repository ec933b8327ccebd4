/**
 * User paths at the CLI edge. `deno task` (and `npm run`/`npx`) run a task in the project root, so a relative
 * path typed in another directory (`--model_path ../tiny` from `sub/`) would resolve against the repository,
 * not the shell: they set `INIT_CWD` to the directory the user ran the command in, and every path flag is
 * resolved against it here. The flags that held paths (and ports) are noted, so the CLI edge can name the flag
 * when the OS refuses one of them (see os_errors.ts).
 *
 * @example
 * ```ts
 * import { resolveUserPath, userCwd } from "./paths.ts";
 * console.log(userCwd(), resolveUserPath("out"), resolveUserPath("gs://b/p")); // gs:// stays as it is
 * ```
 */
import { isAbsolute, resolve } from "node:path";

/** The directory the user ran the command in: `$INIT_CWD` when it names a directory, else the process cwd. */
export function userCwd(): string {
  const init = Deno.env.get("INIT_CWD");
  if (init && isAbsolute(init)) {
    try {
      if (Deno.statSync(init).isDirectory) return init;
    } catch {
      // a stale INIT_CWD (a directory since removed): fall back to the process's own
    }
  }
  return Deno.cwd();
}

/** A local path resolved against {@link userCwd} (absolute); `gs://…` URLs are returned unchanged. */
export function resolveUserPath(p: string): string {
  if (p === "" || p.startsWith("gs://")) return p;
  return resolve(userCwd(), p);
}

/**
 * `--model_path` takes a directory or a Hugging Face id (`Org/name`): resolved when it names an existing path
 * (or is written as one: `./x`, `../x`, `/x`, `~`-free), else kept as the id.
 */
export function resolveModelPathOrId(p: string): string {
  if (p === "" || p.startsWith("gs://")) return p;
  const abs = resolve(userCwd(), p);
  if (/^\.{0,2}\//.test(p) || p === "." || p === "..") return abs;
  try {
    Deno.statSync(abs);
    return abs;
  } catch {
    return p;
  }
}

/** A flag value the OS may refuse: a path (as resolved) or a TCP port. */
export interface NotedFlag {
  /** `--output_dir`, or the positional's metavar (`DIR`). */
  flag: string;
  kind: "path" | "port";
  /** The resolved path, or the port number as text. */
  value: string;
}

const noted: NotedFlag[] = [];

/** Remember that `flag` holds `value` (called by parseFlags for path and port flags). */
export function noteFlag(f: NotedFlag): void {
  const i = noted.findIndex((n) => n.flag === f.flag);
  if (i >= 0) noted.splice(i, 1);
  noted.push(f);
}

/** The flags noted since the last {@link clearNotedFlags}. */
export function notedFlags(): readonly NotedFlag[] {
  return noted;
}

/** Forget noted flags (runCli calls it before each main). */
export function clearNotedFlags(): void {
  noted.length = 0;
}
