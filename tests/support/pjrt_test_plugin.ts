/**
 * Test support: the path of the PJRT TEST DOUBLE plugin (native/build/libpjrt_test_plugin.so), built with
 * native/build.sh when missing, and its live-object counters (see native/pjrt_test_plugin/plugin.c).
 */
import { join } from "node:path";
import { REPO_ROOT } from "../_shared.ts";

/** Absolute path of the built test plugin. */
export const TEST_PLUGIN_PATH: string = join(REPO_ROOT, "native", "build", "libpjrt_test_plugin.so");

let built = false;
/** Modification time of `path` in ms (0 when missing). */
function mtime(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** Build the test plugin if it is missing or older than its sources (needs `cc`); returns its path. */
export function ensureTestPlugin(): string {
  if (built) return TEST_PLUGIN_PATH;
  const src = join(REPO_ROOT, "native", "pjrt_test_plugin");
  const sources = Math.max(mtime(join(src, "plugin.c")), mtime(join(src, "pjrt_abi.h")));
  if (mtime(TEST_PLUGIN_PATH) < sources) {
    const r = new Deno.Command("bash", { args: [join(REPO_ROOT, "native", "build.sh")] }).outputSync();
    if (!r.success) throw new Error(`native/build.sh failed: ${new TextDecoder().decode(r.stderr)}`);
  }
  built = true;
  return TEST_PLUGIN_PATH;
}

/** Counter kinds of `PjrtTestPlugin_Live`. */
export const LIVE = {
  errors: 0,
  events: 1,
  buffers: 2,
  executables: 3,
  clients: 4,
  violations: 5,
  all: -1,
} as const;

type CounterLib = Deno.DynamicLibrary<{ PjrtTestPlugin_Live: { parameters: ["i32"]; result: "i64" } }>;
let counterLib: CounterLib | null = null;

/**
 * Open the test plugin once for the whole test process (the binding keeps plugins loaded; opening here, at
 * module load of a test file, keeps the open library out of any one test's resource sanitizer).
 */
export function preloadTestPlugin(): void {
  counterLib ??= Deno.dlopen(ensureTestPlugin(), {
    PjrtTestPlugin_Live: { parameters: ["i32"], result: "i64" },
  });
}

/** Read the test plugin's counters (the same shared object, so the same state). */
export function pluginCounts(): Record<keyof typeof LIVE, number> {
  preloadTestPlugin();
  const out = {} as Record<keyof typeof LIVE, number>;
  for (const [k, v] of Object.entries(LIVE)) {
    out[k as keyof typeof LIVE] = Number(counterLib!.symbols.PjrtTestPlugin_Live(v));
  }
  return out;
}
