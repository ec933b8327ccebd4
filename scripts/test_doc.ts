/**
 * `deno task test:doc`: runs (not only type-checks) the JSDoc examples of the deno.json `exports` entry points
 * and of every local module they import, with `deno test --doc`. Examples make their fixtures by code (temp
 * dirs, generated checkpoints, the built-in GCS emulator, the C test PJRT plugin built here by native/build.sh
 * when missing); only ```ts ignore blocks, which say why, are skipped. Prints deno test's own summary line
 * (`ok | N passed | N failed`), which .ci/run counts, and exits with its status.
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

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * Modules whose examples are rewritten by a branch in flight (they still write into the working directory or
 * declare free names): listed in the apidocs report with the text to paste; drop an entry once it has landed.
 */
export const PENDING_DOC_TESTS: readonly string[] = [
  "lib/pipeline/extract.ts",
  "lib/shard/pickle_reader.ts",
  "lib/shard/reader.ts",
  "lib/shard/verify.ts",
  "lib/shard/writer.ts",
  "lib/model/safetensors.ts",
];

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

async function main(args: string[]): Promise<number> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))) as {
    exports: Record<string, string>;
  };
  const modules = args.length > 0
    ? args
    : (await reachedModules(Object.values(config.exports))).filter((m) => !PENDING_DOC_TESTS.includes(m));
  // The PJRT binding's examples open the C test plugin (a test double; tests/support/pjrt_test_plugin.ts).
  try {
    await Deno.stat(join(ROOT, "native/build/libpjrt_test_plugin.so"));
  } catch {
    const built = await new Deno.Command("bash", { args: [join(ROOT, "native/build.sh")], cwd: ROOT })
      .output();
    if (!built.success) {
      console.error(`test:doc: native/build.sh failed: ${new TextDecoder().decode(built.stderr).trim()}`);
      return 1;
    }
  }
  console.error(
    `test:doc: examples of ${modules.length} modules (skipped, pending: ${PENDING_DOC_TESTS.join(", ")})`,
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
