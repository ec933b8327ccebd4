/**
 * Test support: the one place that resolves the read-only reference data in `../shared` (or `$ACTSHARD_SHARED`).
 * Tests that need it use {@link sharedTest}, which registers them as ignored — and says so — when it is absent
 * (a user's fresh clone), so everything else still runs.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function resolveShared(): string | null {
  const env = Deno.env.get("ACTSHARD_SHARED");
  const dir = env ?? join(ROOT, "..", "shared");
  try {
    return Deno.statSync(join(dir, "data")).isDirectory ? dir : null;
  } catch {
    return null;
  }
}

/** Absolute path of the shared folder, or null when absent. */
export const SHARED_DIR: string | null = resolveShared();

/** Path inside the shared folder (throws if absent: call only from a {@link sharedTest}). */
export function sharedPath(...parts: string[]): string {
  if (!SHARED_DIR) throw new Error("../shared is not present");
  return join(SHARED_DIR, ...parts);
}

/** The repository root. */
export const REPO_ROOT: string = ROOT;

let warned = false;
/** `Deno.test` that is ignored (and announced once) when ../shared is absent. */
export function sharedTest(name: string, fn: (t: Deno.TestContext) => void | Promise<void>): void {
  if (!SHARED_DIR && !warned) {
    warned = true;
    console.warn(
      "note: ../shared not found (set ACTSHARD_SHARED); tests that need reference data are skipped",
    );
  }
  Deno.test({ name, ignore: !SHARED_DIR, fn });
}

/** A fresh temporary directory, removed by the returned disposer. */
export async function tempDir(
  prefix = "actshard-test-",
): Promise<{ path: string; [Symbol.asyncDispose](): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** Whether `cmd --version` runs here (a CLI tool some tests need: zstd, fincore). */
export function hasCommand(cmd: string): boolean {
  try {
    return new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}
