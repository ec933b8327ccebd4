/**
 * Test support: the one place that decides whether a test needing Python (and which modules) runs.
 *
 * - Outside CI, a test whose Python or modules are missing is registered as ignored, with a note saying what to
 *   install, so `deno task test` passes on a fresh clone with nothing installed by hand.
 * - In CI (`CI=true`) or with `ACTSHARD_REQUIRE_PYTHON=1`, the same test runs and fails with that note: `.ci/run`
 *   installs every module, so a missing one is a broken CI, never a silent skip.
 *
 * `ACTSHARD_PYTHON` names the main Python (default `python3`, numpy 2.x); `/usr/bin/python3` is Debian's, with
 * numpy 1.x (python3-numpy), for the pickle-compatibility checks.
 */

/** Whether missing Python modules fail the tests that need them (CI) instead of skipping them. */
export const REQUIRE_PYTHON: boolean = Deno.env.get("CI") === "true" ||
  Deno.env.get("ACTSHARD_REQUIRE_PYTHON") === "1";

/** The main Python interpreter (numpy 2.x, torch, transformers, … in CI). */
export const PYTHON: string = Deno.env.get("ACTSHARD_PYTHON") ?? "python3";

/** Debian's interpreter, with numpy 1.x from python3-numpy. */
export const DEBIAN_PYTHON = "/usr/bin/python3";

const cache = new Map<string, string[]>();

/** The modules of `modules` that `exe` cannot import (all of them when `exe` does not run). Cached. */
export function missingModules(exe: string, modules: string[]): string[] {
  const key = `${exe}\0${modules.join(",")}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const code = "import importlib.util,sys\n" +
    "print(','.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))";
  let missing: string[];
  try {
    const r = new Deno.Command(exe, { args: ["-c", code, ...modules], stdout: "piped", stderr: "null" })
      .outputSync();
    missing = r.success ? new TextDecoder().decode(r.stdout).trim().split(",").filter(Boolean) : modules;
  } catch {
    missing = modules;
  }
  cache.set(key, missing);
  return missing;
}

/** Whether `exe` runs and imports every module. */
export function pythonHas(exe: string, modules: string[]): boolean {
  return missingModules(exe, modules).length === 0;
}

const noted = new Set<string>();

/** Options of {@link pythonTest}. */
export interface PythonTestOptions {
  /** Modules the test imports (e.g. `["numpy"]`, `["torch", "transformers"]`). */
  modules: string[];
  /** Interpreter (default {@link PYTHON}). */
  python?: string;
  /** Other reasons to skip (a missing CLI tool, say): a note, or null to run. Not overridden by CI. */
  skipBecause?: string | null;
}

/**
 * `Deno.test` for a test needing Python modules: ignored with a note when they are missing (outside CI), run —
 * and failed with the same note — when {@link REQUIRE_PYTHON} is set.
 */
export function pythonTest(
  name: string,
  opts: PythonTestOptions,
  fn: (t: Deno.TestContext) => void | Promise<void>,
): void {
  const exe = opts.python ?? PYTHON;
  const missing = missingModules(exe, opts.modules);
  const why = missing.length ? `${exe} lacks ${missing.join(", ")}` : null;
  if (opts.skipBecause) {
    Deno.test({ name, ignore: true, fn });
    return;
  }
  if (why && !REQUIRE_PYTHON) {
    if (!noted.has(why)) {
      noted.add(why);
      console.warn(`note: ${why}: tests needing it are skipped (CI installs it: see .ci/run)`);
    }
    Deno.test({ name, ignore: true, fn });
    return;
  }
  Deno.test({
    name,
    fn: why
      ? () => {
        throw new Error(`${why}, and CI requires it (.ci/run installs it; ACTSHARD_REQUIRE_PYTHON/CI set)`);
      }
      : fn,
  });
}

/**
 * For `Deno.test({ ignore })`: true (skip, with a note) when `exe` lacks a module and {@link REQUIRE_PYTHON} is
 * off; false otherwise — in CI the test then runs and fails on the missing module.
 */
export function ignoreWithoutPython(modules: string[], exe: string = PYTHON): boolean {
  const missing = missingModules(exe, modules);
  if (!missing.length || REQUIRE_PYTHON) return false;
  const why = `${exe} lacks ${missing.join(", ")}`;
  if (!noted.has(why)) {
    noted.add(why);
    console.warn(`note: ${why}: tests needing it are skipped (CI installs it: see .ci/run)`);
  }
  return true;
}
