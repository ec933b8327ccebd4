/** Test helpers for direct (O_DIRECT) writes: whether they work here; an environment variable set for a scope. */
import { DirectFile } from "../lib/util/direct_file.ts";

/**
 * Whether a file in a fresh temporary directory takes direct writes here (Linux, FFI, a filesystem that accepts
 * O_DIRECT): one file of 5000 bytes written through {@link DirectFile}, read back and compared.
 */
export async function directWritesWork(): Promise<boolean> {
  const dir = await Deno.makeTempDir({ prefix: "actshard-direct-" });
  try {
    const path = `${dir}/probe`;
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    const d = DirectFile.open(path, file);
    if (!d) return false;
    const want = new Uint8Array(5000).map((_, i) => i & 255);
    await d.write(want);
    await d.finish();
    await d.close();
    const got = await Deno.readFile(path);
    return !d.fellBack && got.length === want.length && got.every((v, i) => v === want[i]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Set `name` to `value` until the scope ends (then restore it): `await using _ = withEnv(…)`. */
export function withEnv(name: string, value: string): AsyncDisposable {
  const before = Deno.env.get(name);
  Deno.env.set(name, value);
  return {
    [Symbol.asyncDispose]() {
      if (before === undefined) Deno.env.delete(name);
      else Deno.env.set(name, before);
      return Promise.resolve();
    },
  };
}
