/**
 * `deno task lint:layers`: fails on an import that points up the layer stack or sideways between folders of one
 * layer (which is how folder cycles start), in `lib/`, `native/` and `scripts/`. Modelled on denoland/std's
 * circular-dependency check, with the project's layers (docs/architecture.md):
 *
 *   scripts → cli → pipeline → backend | shard | prompts → model | storage | tokenizer | arc | native → util
 *
 * `lib/errors.ts`, `lib/types.ts` (any file directly in lib/) and lib/util/ are one unit at the bottom. Imports inside one folder are free. Tests and
 * benches may import anything. Prints one line per offending import and exits 1, or prints a summary and exits 0.
 *
 * @example
 * ```ts ignore
 * // deno run -A scripts/lint_layers.ts
 * ```
 */
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** Layer rank of each top-level unit: a module may import only units of a strictly lower rank. */
export const LAYERS: Record<string, number> = {
  "lib/util": 0, // with lib/errors.ts and lib/types.ts: one unit
  "native": 1,
  "lib/model": 1,
  "lib/storage": 1,
  "lib/tokenizer": 1,
  "lib/arc": 1,
  "lib/backend": 2,
  "lib/shard": 2,
  "lib/prompts": 2,
  "lib/pipeline": 3,
  "lib/cli": 4,
  "scripts": 5,
  "mod.ts": 6,
};

/** The unit (a key of {@link LAYERS}) a repository-relative path belongs to, or null (tests, bench, …). */
export function unitOf(path: string): string | null {
  const parts = path.split("/");
  if (parts[0] === "lib") return parts.length === 2 ? "lib/util" : `lib/${parts[1]}`;
  if (parts[0] === "native" || parts[0] === "scripts") return parts[0];
  if (path === "mod.ts") return path;
  return null;
}

/** Relative import specifiers of a TypeScript source (static, `export … from`, dynamic with a literal). */
export function importsOf(src: string): string[] {
  const out: string[] = [];
  const re =
    /(?:^|\n)\s*(?:import|export)\b[^"'`;]*?from\s*["'](\.{1,2}\/[^"']+)["']|(?:^|\n)\s*import\s*["'](\.{1,2}\/[^"']+)["']|\bimport\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g;
  for (const m of src.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** One offending import. */
export interface LayerViolation {
  from: string;
  to: string;
  why: string;
}

/** Every layer violation among `files` (repository-relative path → source). */
export function layerViolations(files: Map<string, string>): LayerViolation[] {
  const out: LayerViolation[] = [];
  for (const [from, src] of files) {
    const a = unitOf(from);
    if (!a) continue;
    for (const spec of importsOf(src)) {
      const to = normalize(join(dirname(from), spec));
      const b = unitOf(to);
      if (!b || a === b) continue;
      const ra = LAYERS[a], rb = LAYERS[b];
      if (ra === undefined) out.push({ from, to, why: `${a} has no layer (add it to LAYERS)` });
      else if (rb === undefined) out.push({ from, to, why: `${b} has no layer (add it to LAYERS)` });
      else if (rb > ra) out.push({ from, to, why: `${a} (layer ${ra}) imports up into ${b} (layer ${rb})` });
      else if (rb === ra) out.push({ from, to, why: `${a} imports sideways into ${b} (both layer ${ra})` });
    }
  }
  return out.sort((x, y) => x.from.localeCompare(y.from) || x.to.localeCompare(y.to));
}

async function* tsFiles(root: string, dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(join(root, dir))) {
    const p = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory && !["node_modules", ".cache", "build"].includes(e.name)) yield* tsFiles(root, p);
    else if (e.isFile && e.name.endsWith(".ts")) yield p;
  }
}

if (import.meta.main) {
  const root = relative(Deno.cwd(), fileURLToPath(new URL("..", import.meta.url))) || ".";
  const files = new Map<string, string>();
  for (const top of ["lib", "native", "scripts"]) {
    for await (const p of tsFiles(root, top)) files.set(p, await Deno.readTextFile(join(root, p)));
  }
  files.set("mod.ts", await Deno.readTextFile(join(root, "mod.ts")));
  const bad = layerViolations(files);
  for (const v of bad) console.error(`${v.from} → ${v.to}: ${v.why}`);
  if (bad.length) {
    console.error(`lint:layers: ${bad.length} import(s) break the layer order (see docs/architecture.md)`);
    Deno.exit(1);
  }
  console.log(`lint:layers: ${files.size} modules, every import points down`);
}
