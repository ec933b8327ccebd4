/**
 * Test support: the real XLA CPU PJRT plugin (a Python wheel: lammps-jax-pjrt-cpu or xla-cpu-pjrt, pinned in
 * .ci/requirements.txt), found by the backend's own discovery (`kinds: ["cpu"]`) or `$ACTSHARD_XLA_CPU_PLUGIN`.
 * Like tests/_python.ts: outside CI a missing plugin skips these tests with a note; in CI (`CI=true` or
 * `ACTSHARD_REQUIRE_PYTHON=1`) they run and fail, so the real-XLA tests are always counted there.
 */
import { REQUIRE_PYTHON } from "../_python.ts";
import { findPjrtPlugin } from "../../lib/backend/pjrt/discover.ts";

function find(): string | null {
  const explicit = Deno.env.get("ACTSHARD_XLA_CPU_PLUGIN");
  try {
    return findPjrtPlugin(explicit || null, Deno.env, { kinds: ["cpu"] });
  } catch {
    return null;
  }
}

/** Path of the XLA CPU plugin, or null when none is installed. */
export const XLA_CPU_PLUGIN: string | null = find();

let noted = false;

/** For `Deno.test({ ignore })`: skip (with a note) when no plugin is installed, unless CI requires it. */
export function ignoreWithoutXlaCpu(): boolean {
  if (XLA_CPU_PLUGIN || REQUIRE_PYTHON) return false;
  if (!noted) {
    noted = true;
    console.warn(
      "note: no XLA CPU PJRT plugin (pip install -r .ci/requirements.txt): real-XLA tests are skipped",
    );
  }
  return true;
}

/** The plugin's path; throws (failing the test, in CI) when none is installed. */
export function xlaCpuPlugin(): string {
  if (!XLA_CPU_PLUGIN) {
    throw new Error(
      "no XLA CPU PJRT plugin found, and CI requires it (.ci/run installs it from .ci/requirements.txt)",
    );
  }
  return XLA_CPU_PLUGIN;
}
