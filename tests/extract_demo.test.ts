import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { main } from "../scripts/demo.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { ActshardError } from "../lib/errors.ts";

Deno.test("demo: tiny checkpoint + generated tasks → extract with upload to the emulator → verify → read", async () => {
  await using tmp = await tempDir();
  const out = join(tmp.path, "demo");
  assertEquals(await main(["--out", out]), 0);
  const meta = await readMetadata(new LocalStore(join(out, "activations")));
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_samples, 4 * 2 * 3, "4 tasks × 2 predictions × 3 layers");
  assert(
    meta.shards.every((s) =>
      s.gcs_verified === true && s.gcs_path?.startsWith("gs://actshard-demo/activations/")
    ),
  );
  // The emulator persisted the uploaded objects (and metadata.json) under demo/gcs.
  const files: string[] = [];
  for await (const e of Deno.readDir(join(out, "gcs"))) files.push(e.name);
  assert(files.length > 0, "emulator state written");
});

Deno.test("demo: --out holding files the demo did not write is refused, nothing deleted; a previous demo's is replaced", async () => {
  // `--out .` or `--out ~/work` must not wipe the directory (the demo replaces only its own output).
  await using tmp = await tempDir();
  const mine = join(tmp.path, "notes.txt");
  await Deno.writeTextFile(mine, "keep me");
  let err: unknown;
  try {
    await main(["--out", tmp.path]);
  } catch (e) {
    err = e;
  }
  assertEquals(await Deno.readTextFile(mine), "keep me");
  assert(err instanceof ActshardError && /did not write/.test(err.line()), String(err));
  const cli = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "scripts", "demo.ts"), "--out", tmp.path],
    stdout: "null",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(cli.stderr).trim();
  assertEquals(cli.code, 2, stderr);
  assert(/^demo: --out holds files the demo did not write \(notes\.txt\)/.test(stderr), stderr);
  assertEquals(stderr.split("\n").length, 1, stderr);
  assertEquals(await Deno.readTextFile(mine), "keep me");
  // A demo dir from an earlier run (its own entries only) is still replaced.
  const prev = join(tmp.path, "prev");
  await Deno.mkdir(join(prev, "activations"), { recursive: true });
  await Deno.writeTextFile(join(prev, "activations", "stale.txt"), "old");
  await Deno.writeTextFile(join(prev, "arc_tasks.json"), "[]");
  assertEquals(await main(["--out", prev]), 0);
  assert(!(await Deno.stat(join(prev, "activations", "stale.txt")).then(() => true, () => false)));
});
