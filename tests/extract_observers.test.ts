/**
 * The extract's observers and the crash-test kill points built on them: `onShardCommitted` hears every shard,
 * in order, once it is durable and listed in metadata.json; `onShardVerified` hears every uploaded shard once
 * its verification is recorded in the local metadata.json; `killPointHooks` is empty without
 * ACTSHARD_TEST_KILL_AT and SIGKILLs exactly at the named point; and no library module carries the test hook
 * (only the CLI edge wires it).
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { fixturePathArgs, makeExtractFixture } from "./_extract_fixture.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import type { ExtractConfig } from "../lib/pipeline/config.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import { KILL_AT_ENV, killPointHooks } from "../lib/pipeline/kill_point.ts";
import { readMetadata, type ShardEntry } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";

/** The shard entries metadata.json lists right now (read synchronously, as an observer sees the disk). */
function listedNow(dir: string): ShardEntry[] {
  return JSON.parse(Deno.readTextFileSync(join(dir, "metadata.json"))).shards;
}

Deno.test("runExtract observers: committed shards in order once listed; verified ones once recorded locally", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 3 });
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const out = join(tmp.path, "out");
    const config = parseExtractFlags([
      ...fixturePathArgs(fx, out),
      ...["--layers_to_extract", "0-2", "--predictions_per_task", "2", "--shard_size_gb", "0.0004"],
      ...["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", "obs"],
    ]) as ExtractConfig;
    const committed: { id: number; listed: boolean; onDisk: boolean }[] = [];
    const verified: { id: number; recorded: boolean }[] = [];
    const summary = await runExtract(config, {
      progress: { tty: false, intervalMs: 0, write: () => {} },
      log: () => {},
      gcsEndpoint: emu.url,
      onShardCommitted: (e) => {
        const entry = listedNow(out).find((s) => s.shard_id === e.shard_id);
        let onDisk = false;
        try {
          onDisk = Deno.statSync(join(out, e.filename)).size === e.bytes;
        } catch { /* not there */ }
        committed.push({ id: e.shard_id, listed: entry?.sha256 === e.sha256, onDisk });
      },
      onShardVerified: (e) => {
        const entry = listedNow(out).find((s) => s.shard_id === e.shard_id);
        verified.push({ id: e.shard_id, recorded: entry?.gcs_verified === true && !!entry.gcs_path });
      },
    });
    const meta = await readMetadata(new LocalStore(out));
    assert(meta.total_shards >= 3, `want several shards, got ${meta.total_shards}`);
    assertEquals(summary.shards, meta.total_shards);
    const ids = meta.shards.map((s) => s.shard_id);
    assertEquals(committed.map((c) => c.id), ids, "every shard, once, in commit order");
    assert(committed.every((c) => c.listed && c.onDisk), JSON.stringify(committed));
    assertEquals(verified.map((v) => v.id).sort((a, b) => a - b), ids, "every shard verified once");
    assert(verified.every((v) => v.recorded), JSON.stringify(verified));
  } finally {
    await emu.close();
  }
});

Deno.test("killPointHooks: none without a kill point; a named point's observer ignores other shards and points", () => {
  assertEquals(killPointHooks(undefined), {});
  const hooks = killPointHooks("committed:3");
  assert(hooks.onShardCommitted && hooks.onShardVerified);
  const entry = (id: number) => ({ shard_id: id }) as ShardEntry;
  hooks.onShardCommitted(entry(2)); // not shard 3
  hooks.onShardVerified(entry(3)); // shard 3, but not the committed point
  killPointHooks("verified:1").onShardCommitted!(entry(1));
});

Deno.test("killPointHooks: ACTSHARD_TEST_KILL_AT=committed:2 SIGKILLs at shard 2's commit, not before", async () => {
  const mod = join(REPO_ROOT, "lib/pipeline/kill_point.ts");
  const code = `import { killPointHooks } from ${JSON.stringify(mod)};
const h = killPointHooks();
for (const id of [1, 2, 3]) { h.onShardVerified?.({ shard_id: id }); console.log("verified", id);
  h.onShardCommitted?.({ shard_id: id }); console.log("committed", id); }`;
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", code],
      env: { NO_COLOR: "1", ...env },
      clearEnv: false,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { signal: out.signal, stdout: new TextDecoder().decode(out.stdout).trim().split("\n") };
  };
  const killed = await run({ [KILL_AT_ENV]: "committed:2" });
  assertEquals(killed.signal, "SIGKILL");
  assertEquals(killed.stdout, ["verified 1", "committed 1", "verified 2"]);
  const unset = await run({ [KILL_AT_ENV]: "" });
  assertEquals(unset.signal, null);
  assertEquals(unset.stdout.length, 6);
});

Deno.test("no library module carries the crash-test hook: only kill_point.ts names it, only scripts wire it", async () => {
  const offenders: string[] = [];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts") && p !== join(REPO_ROOT, "lib/pipeline/kill_point.ts")) {
        const text = await Deno.readTextFile(p);
        if (/kill_point\.ts"|killPoint|ACTSHARD_TEST_KILL_AT/.test(text.replace(/^\s*\*.*$/gm, ""))) {
          offenders.push(p);
        }
      }
    }
  };
  await walk(join(REPO_ROOT, "lib"));
  assertEquals(offenders, []);
  const cli = await Deno.readTextFile(join(REPO_ROOT, "scripts/extract.ts"));
  assert(/runExtract\(config, killPointHooks\(\)\)/.test(cli), "scripts/extract.ts wires the kill points");
});
