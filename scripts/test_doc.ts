/**
 * `deno task test:doc`: runs (not only type-checks) the JSDoc examples of the deno.json `exports` entry points,
 * of every local module they import, and of the rest of lib/ and native/, with `deno test --doc`. Examples make their fixtures by code (temp
 * dirs, generated checkpoints, the built-in GCS emulator, the C test PJRT plugin built here by native/build.sh
 * when missing); only ```ts ignore blocks, which say why, are skipped. Prints deno test's own summary line
 * (`ok | N passed | N failed`), which .ci/run counts, and exits with its status.
 *
 * `--no-check`: `deno check --doc` (CI, `deno task check`) already type-checks every example; checking again
 * here would also re-check the shard writer's Worker modules in every example that starts one, which made the
 * run 2.5 minutes instead of one (same 110 examples, all passing either way).
 *
 * @example
 * ```ts ignore
 * // ignore: runs every example again (a minute) — this is the task itself
 * // deno task test:doc            # all of them
 * // deno task test:doc lib/errors.ts lib/model/config.ts   # only these modules' examples
 * ```
 *
 * @module
 */
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { findPjrtPlugin } from "../lib/backend/pjrt/discover.ts";
import { errorLine } from "../lib/errors.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function denoJson(args: string[]): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** The local modules the entry points reach (static imports), relative to the repository root, sorted. */
export async function reachedModules(entries: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const entry of entries) {
    const info = await denoJson(["info", "--json", entry]) as { modules: { specifier: string }[] };
    for (const m of info.modules) {
      if (!m.specifier.startsWith("file://")) continue;
      const path = relative(ROOT, fileURLToPath(m.specifier));
      if (!path.startsWith("..") && !path.startsWith("node_modules")) found.add(path);
    }
  }
  return [...found].sort();
}

/** Every module of mod.ts, lib/ and native/ holding a ```ts example (Worker modules reached only at run time too). */
async function modulesWithExamples(): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (path.endsWith(".ts") && (await Deno.readTextFile(join(ROOT, path))).includes("```ts")) {
        found.push(path);
      }
    }
  };
  await walk("lib");
  await walk("native");
  return ["mod.ts", ...found.sort()];
}

async function main(args: string[]): Promise<number> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))) as {
    exports: Record<string, string>;
  };
  let modules = args;
  if (modules.length === 0) {
    modules = await modulesWithExamples();
    // What the brief promises: every module the entry points import is covered.
    const uncovered = (await reachedModules(Object.values(config.exports))).filter((m) =>
      !modules.includes(m) &&
      (Deno.readTextFileSync(join(ROOT, m))).includes("```ts")
    );
    if (uncovered.length > 0) {
      console.error(`test:doc: not covered: ${uncovered.join(", ")}`);
      return 1;
    }
  }
  // Outside CI a missing optional piece skips the examples that need it, saying so (as tests/_python.ts does);
  // in CI (CI=true, ACTSHARD_REQUIRE_PYTHON=1) .ci/run installs everything, so nothing is skipped.
  const required = Deno.env.get("CI") === "true" || Deno.env.get("ACTSHARD_REQUIRE_PYTHON") === "1";
  const skip = (why: string, which: (m: string) => boolean) => {
    if (required) return;
    const gone = modules.filter(which);
    if (gone.length) console.error(`test:doc: skipped ${gone.join(", ")}: ${why}`);
    modules = modules.filter((m) => !which(m));
  };
  // The PJRT binding's examples open the C test plugin (a test double; tests/support/pjrt_test_plugin.ts).
  try {
    await Deno.stat(join(ROOT, "native/build/libpjrt_test_plugin.so"));
  } catch {
    const built = await new Deno.Command("bash", { args: [join(ROOT, "native/build.sh")], cwd: ROOT })
      .output();
    if (!built.success) {
      const why = `native/build.sh failed (needs a C compiler: cc): ${
        new TextDecoder().decode(built.stderr).trim()
      }`;
      if (required) {
        console.error(`test:doc: ${why}`);
        return 1;
      }
      skip(why, (m) => m.startsWith("native/") || m === "lib/backend/pjrt/handshake.ts");
    }
  }
  // createPjrtBackend's examples compile on an XLA CPU plugin (pip install xla-cpu-pjrt; CI installs it).
  try {
    findPjrtPlugin(null, Deno.env, { kinds: ["cpu"] });
  } catch (e) {
    skip(errorLine(e), (m) => m === "lib/backend/pjrt/index.ts");
  }
  console.error(
    `test:doc: examples of ${modules.length} modules`,
  );
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["test", "--doc", "--no-check", "-A", ...modules],
    cwd: ROOT,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return run.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
