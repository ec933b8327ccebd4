import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { fixturePathArgs, makeExtractFixture, runExtractCli } from "./_extract_fixture.ts";
import { LOCK_NAME, lockOutputDir } from "../lib/pipeline/lock.ts";
import { ActshardError } from "../lib/errors.ts";

Deno.test("output dir lock: a second holder is refused until the first releases", async () => {
  await using d = await tempDir();
  const out = `${d.path}/out`;
  const a = await lockOutputDir(out);
  await assertRejects(() => lockOutputDir(out), ActshardError);
  a.release();
  a.release(); // idempotent
  const b = await lockOutputDir(out);
  b.release();
  assertEquals((await Deno.readFile(`${out}/${LOCK_NAME}`)).length, 0, "the lock file stays empty");
  // the refusal names the holder's pid (from /proc/locks)
  const c = await lockOutputDir(out);
  try {
    await assertRejects(
      () => lockOutputDir(out),
      ActshardError,
      `another actshard process (pid ${Deno.pid}) is writing to this output directory`,
    );
  } finally {
    c.release();
  }
  await assertRejects(
    () => lockOutputDir(`${d.path}/absent`, { create: false }),
    ActshardError,
    "directory not found",
  );
});

Deno.test("extract: a second process on the same output dir stops with one line, writing nothing", async () => {
  await using d = await tempDir();
  const fx = await makeExtractFixture(d.path, { tasks: 2 });
  const out = `${d.path}/out`;
  const held = await lockOutputDir(out); // stands for a first extract still running there
  try {
    const r = await runExtractCli([...fixturePathArgs(fx, out), "--layers_to_extract", "0", "1"]);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assert(
      lines[0].includes(
        `another actshard process (pid ${Deno.pid}) is writing to this output directory`,
      ),
      lines[0],
    );
    const names = [...Deno.readDirSync(out)].map((e) => e.name);
    assertEquals(names, [LOCK_NAME], "nothing written besides the lock file");
  } finally {
    held.release();
  }
  const r2 = await runExtractCli([...fixturePathArgs(fx, out), "--layers_to_extract", "0", "1"]);
  assertEquals(r2.code, 0, r2.stderr);
});
