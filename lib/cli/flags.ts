/**
 * Flag parsing for every stage, on `node:util` `parseArgs` (JSR's @std/cli is unreachable here). Adds what the
 * old argparse-based script accepted: `--flag value`, `--flag=value`, argparse-style lists
 * (`--layers_to_extract 20 21 22`, collected as "20,21,22"), `--no_X` negations of boolean flags, and a
 * generated `--help`. Every parse failure is a usage error (exit 2) naming the flag.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const r = parseFlags("read", ["out", "--layer", "3"], {
 *   layer: { type: "string", help: "layer to show" },
 * }, { positionals: "DIR" });
 * if (r.help) console.log(r.help); else console.log(r.values.layer, r.positionals); // "3" ["out"]
 * ```
 */
import { parseArgs } from "node:util";
import { usageError } from "../errors.ts";
import { noteFlag, resolveModelPathOrId, resolveUserPath } from "./paths.ts";

/** One flag. */
export interface FlagSpec {
  type: "string" | "boolean";
  help: string;
  default?: string | boolean;
  /** argparse `nargs="+"`: following non-flag tokens are collected and joined with ",". */
  list?: boolean;
  /** For booleans: also accept `--no_NAME` (sets false). */
  negatable?: boolean;
  /** Placeholder shown in --help (e.g. "DIR"). */
  metavar?: string;
  /**
   * A local path (or gs:// URL): resolved against the directory the user ran the command in (paths.ts).
   * `"or-id"`: a path or a Hugging Face id, resolved only when it names an existing path.
   */
  path?: boolean | "or-id";
  /** A TCP port: named by the CLI edge when it is already in use. */
  port?: boolean;
}

/** The parsed result; `help` is set (and values empty) when `--help`/`-h` was given. */
export interface ParsedFlags {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  help?: string;
}

/** Options for {@link parseFlags}. */
export interface ParseOptions {
  /** Name of positional arguments in usage text; omit to reject positionals. */
  positionals?: string;
  /** One-paragraph description printed at the top of --help. */
  description?: string;
  /** Positionals are local paths or gs:// URLs (resolved like `path` flags). */
  positionalPaths?: boolean;
  /** Paragraph printed at the end of --help (e.g. how GCS credentials are found). */
  epilog?: string;
}

/** The --help paragraph of every stage that reads or writes gs:// (credentials, the emulator). */
export const GCS_HELP =
  "GCS: gs://BUCKET/PREFIX is read/written with Application Default Credentials (gcloud auth " +
  "application-default login, a service-account key in $GOOGLE_APPLICATION_CREDENTIALS, or the VM's service " +
  "account); STORAGE_EMULATOR_HOST=http://HOST:PORT sends every request to an emulator instead " +
  "(deno task gcs-emulator).";

/** Parse `args` against `specs`. Throws a usage error (exit 2) on unknown flags or missing values. */
export function parseFlags(
  tool: string,
  args: string[],
  specs: Record<string, FlagSpec>,
  opts: ParseOptions = {},
): ParsedFlags {
  if (args.includes("--help") || args.includes("-h")) {
    return { values: {}, positionals: [], help: helpText(tool, specs, opts) };
  }
  const pre: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const name = a.startsWith("--") ? a.slice(2).split("=")[0] : null;
    if (name && name.startsWith("no_") && specs[name.slice(3)]?.negatable && !a.includes("=")) {
      pre.push(`--${name.slice(3)}=false`);
      continue;
    }
    if (name && specs[name]?.list && !a.includes("=")) {
      const vals: string[] = [];
      while (i + 1 < args.length && !args[i + 1].startsWith("--")) vals.push(args[++i]);
      if (vals.length === 0) throw usageError(`--${name} needs a value`, "see --help", `--${name}`);
      pre.push(`--${name}=${vals.join(",")}`);
      continue;
    }
    if (
      name && specs[name]?.type === "string" && !specs[name].list && !a.includes("=") &&
      i + 1 < args.length &&
      !args[i + 1].startsWith("--")
    ) {
      // "--flag value": join here so values that start with "-" (e.g. --random_seed -1) are taken as values.
      pre.push(`--${name}=${args[++i]}`);
      continue;
    }
    if (name && specs[name]?.type === "boolean" && a.includes("=")) {
      const v = a.split("=")[1].toLowerCase();
      if (!["true", "false", "1", "0"].includes(v)) {
        throw usageError(`--${name} takes no value or true/false, got "${v}"`, "see --help", `--${name}`);
      }
      pre.push(`--${name}=${v === "true" || v === "1"}`);
      continue;
    }
    pre.push(a);
  }
  // Booleans given as "--x=false" are parsed as strings first, so declare booleans as strings for parseArgs.
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [k, s] of Object.entries(specs)) {
    options[k] = { type: s.type === "boolean" ? "string" : "string" };
  }
  const boolFlags = new Set(Object.entries(specs).filter(([, s]) => s.type === "boolean").map(([k]) => k));
  // A bare boolean flag ("--verbose") needs a value for parseArgs(type string): rewrite it.
  const norm = pre.map((
    a,
  ) => (a.startsWith("--") && !a.includes("=") && boolFlags.has(a.slice(2)) ? `${a}=true` : a));
  let parsed;
  try {
    parsed = parseArgs({ args: norm, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    const m = msg.match(/Unknown option '([^']+)'/);
    if (m) {
      const near = closestFlag(m[1].replace(/^-+/, "").split("=")[0], Object.keys(specs));
      throw usageError(
        `unknown flag ${m[1]}`,
        near ? `did you mean --${near}? (--help lists the flags)` : "run with --help to list the flags",
        m[1],
      );
    }
    throw usageError(msg.replace(/\.$/, ""), "run with --help to list the flags");
  }
  if (parsed.positionals.length && !opts.positionals) {
    throw usageError(`unexpected argument "${parsed.positionals[0]}"`, "run with --help to list the flags");
  }
  const values: Record<string, string | boolean | undefined> = {};
  for (const [k, s] of Object.entries(specs)) {
    const raw = (parsed.values as Record<string, string | undefined>)[k];
    if (s.type === "boolean") {
      values[k] = raw === undefined ? (s.default as boolean | undefined) ?? false : raw === "true";
    } else values[k] = raw ?? (s.default as string | undefined);
    const v = values[k];
    if (s.path && typeof v === "string" && v !== "") {
      values[k] = s.path === "or-id" ? resolveModelPathOrId(v) : resolveUserPath(v);
      noteFlag({ flag: `--${k}`, kind: "path", value: values[k] as string });
    }
    if (s.port && typeof v === "string") noteFlag({ flag: `--${k}`, kind: "port", value: v });
  }
  let positionals = parsed.positionals;
  if (opts.positionalPaths) {
    positionals = positionals.map(resolveUserPath);
    // Named by the usage's placeholder ("DIR" of "DIR|gs://BUCKET/PREFIX") in an OS error's line.
    const flag = (opts.positionals ?? "PATH").split("|")[0];
    for (const p of positionals) noteFlag({ flag, kind: "path", value: p });
  }
  return { values, positionals };
}

/** The flag name nearest to a mistyped `name` (edit distance ≤ 1/3 of its length, at least 2), or null. */
export function closestFlag(name: string, names: string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const n of names) {
    const d = editDistance(name.toLowerCase(), n.toLowerCase());
    if (d < bestD) [best, bestD] = [n, d];
  }
  // A flag of the same words in another order or with a dropped word ("layers" for layers_to_extract).
  if (best && bestD <= Math.max(2, Math.floor(name.length / 3))) return best;
  const prefix = names.filter((n) => n.startsWith(name) && name.length >= 3);
  return prefix.length === 1 ? prefix[0] : null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * Parse a flag value as a number in [min, max] (`above`: strictly greater); usage error otherwise, one message
 * for every bad value ("--shard_size_gb must be a number > 0, got "-1"").
 */
export function numberFlag(
  name: string,
  raw: string | boolean | undefined,
  opts: { integer?: boolean; min?: number; max?: number; above?: number } = {},
): number | undefined {
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  const bad = typeof raw !== "string" || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max) ||
    (opts.above !== undefined && !(n > opts.above));
  if (bad) {
    const kind = opts.integer ? "an integer" : "a number";
    const range = opts.above !== undefined
      ? ` > ${opts.above}`
      : opts.min !== undefined && opts.max !== undefined
      ? ` in ${opts.min}..${opts.max}`
      : opts.min !== undefined
      ? ` ≥ ${opts.min}`
      : "";
    throw usageError(`--${name} must be ${kind}${range}, got "${raw}"`, "see --help", `--${name}`);
  }
  return n;
}

/** Parse a flag value that must be one of `choices`. */
export function choiceFlag<T extends string>(
  name: string,
  raw: string | boolean | undefined,
  choices: readonly T[],
): T {
  if (typeof raw !== "string" || !(choices as readonly string[]).includes(raw)) {
    throw usageError(
      `--${name} must be one of ${choices.join("|")}, got "${raw}"`,
      "see --help",
      `--${name}`,
    );
  }
  return raw as T;
}

function helpText(tool: string, specs: Record<string, FlagSpec>, opts: ParseOptions): string {
  const lines = [`usage: deno task ${tool}${opts.positionals ? ` ${opts.positionals}` : ""} [flags]`];
  if (opts.description) lines.push("", opts.description);
  lines.push("", "flags:");
  const rows: [string, string][] = Object.entries(specs).map(([k, s]) => {
    const left = `--${k}${s.type === "string" ? ` ${s.metavar ?? "VALUE"}${s.list ? " [...]" : ""}` : ""}` +
      (s.negatable ? ` | --no_${k}` : "");
    const def = s.default === undefined || s.default === "" ? "" : ` (default: ${s.default})`;
    return [left, `${s.help}${def}`];
  });
  rows.push(["--help", "show this help"]);
  // One column for the flags, as wide as the widest (capped so long ones wrap onto their own line).
  const width = Math.min(44, Math.max(...rows.map(([l]) => l.length)));
  for (const [left, right] of rows) {
    if (left.length <= width) lines.push(`  ${left.padEnd(width)}  ${right}`);
    else lines.push(`  ${left}`, `  ${" ".repeat(width)}  ${right}`);
  }
  if (opts.epilog) lines.push("", ...wrap(opts.epilog, 100));
  return lines.join("\n");
}

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out;
}
