/**
 * Crash-safe resume: extract is killed with SIGKILL at five random moments and rerun after each; the final
 * dataset must equal an uninterrupted run's (same records — task_id, sample_idx, layer, activation bytes — no
 * duplicates, byte-identical shard files) and read back clean. The same at named kill points (ACTSHARD_TEST_KILL_AT:
 * right after a shard that ends inside a prompt, and after the last shard before completion), where a random kill
 * rarely lands. Also: a different config against an existing
 * output dir is refused and nothing is touched; --overwrite replaces it.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import {
  type ExtractFixture,
  makeExtractFixture,
  recordKeys,
  runExtractCli,
  shardFiles,
  smallShardArgs,
  spawnExtract,
} from "./_extract_fixture.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { KILL_AT_ENV } from "../lib/pipeline/kill_point.ts";
import { describeDiffs, diffFingerprints, promptsSha256 } from "../lib/pipeline/fingerprint.ts";

/** Batches of 3 prompts, ~430 KB shards (see smallShardArgs). */
function baseArgs(fx: ExtractFixture, out: string): string[] {
  return smallShardArgs(fx, out, 3);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function durableRecords(dir: string): Promise<number> {
  try {
    return (await readMetadata(new LocalStore(dir))).total_samples;
  } catch {
    return 0;
  }
}

/** Drain a child's stderr in the background; wait for a line; get all text. */
function collect(stream: ReadableStream<Uint8Array>) {
  let text = "";
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  const done = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      text += dec.decode(chunk, { stream: true });
      for (const w of waiters.splice(0)) {
        if (text.split("\n").some((l) => w.re.test(l))) w.resolve();
        else waiters.push(w);
      }
    }
    for (const w of waiters.splice(0)) w.resolve();
  })();
  return {
    sawLine: (re: RegExp) =>
      text.split("\n").some((l) => re.test(l))
        ? Promise.resolve()
        : new Promise<void>((resolve) => waiters.push({ re, resolve })),
    text: async () => (await done, text),
  };
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    out[e.name] = e.isFile ? String((await Deno.stat(join(dir, e.name))).mtime?.getTime()) : "dir";
  }
  return out;
}

Deno.test("extract: SIGKILL at 5 random moments + reruns = the uninterrupted run", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 10 });
  const ref = join(tmp.path, "ref");
  const first = await runExtractCli(baseArgs(fx, ref));
  assertEquals(first.code, 0, first.stderr);
  const refKeys = await recordKeys(ref);
  const refFiles = await shardFiles(ref);
  assert(Object.keys(refFiles).length >= 5, `want several shards, got ${Object.keys(refFiles).length}`);
  assertEquals(new Set(refKeys).size, refKeys.length, "no duplicate records");
  assertEquals(refKeys.length, 10 * 2 * 3, "one record per (prompt, layer)");

  const out = join(tmp.path, "killed");
  const moments: string[] = [];
  let landed = 0;
  for (let k = 0; k < 5; k++) {
    // A random moment during the work: once a random share (≤ 1/(5-k)) of the remaining records is durable, plus a
    // random 0-200 ms so the kill falls anywhere (mid-forward, mid-shard, mid-rename), not just at a commit.
    const durable = await durableRecords(out);
    const target = durable + Math.floor((Math.random() * (refKeys.length - durable - 1)) / (5 - k));
    const extraMs = Math.round(200 * Math.random());
    moments.push(`${target} records + ${extraMs} ms`);
    const child = spawnExtract(baseArgs(fx, out));
    const stderr = collect(child.stderr);
    let exited = false;
    const status = child.status.finally(() => (exited = true));
    while (!exited && (await durableRecords(out)) < target) await sleep(10);
    await sleep(extraMs);
    if (!exited) {
      try {
        child.kill("SIGKILL");
        landed++;
      } catch { /* exited meanwhile */ }
    }
    const st = await status;
    await child.stdout.cancel();
    // Killed, or finished normally; never a failure exit.
    assert(st.signal === "SIGKILL" || st.code === 0, await stderr.text());
  }
  const last = await runExtractCli(baseArgs(fx, out));
  assertEquals(last.code, 0, `kills at ${moments} ms: ${last.stderr}`);
  console.log(
    `  kills at: ${moments.join("; ")}; ${landed} of 5 landed before the run ended`,
  );

  const keys = await recordKeys(out);
  assertEquals(new Set(keys).size, keys.length, "no duplicate records after resume");
  const missing = refKeys.filter((k) => !keys.includes(k));
  const extra = keys.filter((k) => !refKeys.includes(k));
  assertEquals({ missing, extra }, { missing: [], extra: [] }, `records differ (kills at ${moments})`);
  assertEquals(await shardFiles(out), refFiles, "shard files byte-identical to the uninterrupted run");
  const meta = await readMetadata(new LocalStore(out));
  assertEquals(meta.status, "complete");
  for (const e of Deno.readDirSync(out)) assert(!e.name.endsWith(".tmp"), `leftover temp file ${e.name}`);
});

Deno.test("extract: a different config against an existing output is refused and touches nothing", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 2 });
  const out = join(tmp.path, "out");
  const ok = await runExtractCli(baseArgs(fx, out));
  assertEquals(ok.code, 0, ok.stderr);
  const before = await snapshot(out);

  const args = baseArgs(fx, out);
  const i = args.indexOf("--layers_to_extract");
  args.splice(i, 4, "--layers_to_extract", "1", "2");
  const refused = await runExtractCli(args);
  assertEquals(refused.code, 1);
  const lines = refused.stderr.trim().split("\n");
  assertEquals(lines.length, 1, refused.stderr);
  assert(/different settings: layers_to_extract \(stored 0-2, now \[1,2\]\)/.test(lines[0]), lines[0]);
  assertEquals(await snapshot(out), before, "nothing touched");

  // The same command again: already complete, nothing rewritten.
  const again = await runExtractCli(baseArgs(fx, out));
  assertEquals(again.code, 0, again.stderr);
  assert(/already complete/.test(again.stderr), again.stderr);
  assertEquals(await snapshot(out), before);

  const over = await runExtractCli([...args, "--overwrite"]);
  assertEquals(over.code, 0, over.stderr);
  const meta = await readMetadata(new LocalStore(out));
  assertEquals(meta.config.layers_to_extract, [1, 2]);
  const keys = await recordKeys(out);
  assertEquals(new Set(keys.map((k) => k.split(" ")[2])), new Set(["1", "2"]));
});

Deno.test("extract: SIGKILL at named points (between a split prompt's shards, before uploads) + reruns = uninterrupted", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 4 });
  const ref = join(tmp.path, "ref");
  const first = await runExtractCli(baseArgs(fx, ref));
  assertEquals(first.code, 0, first.stderr);
  const refMeta = await readMetadata(new LocalStore(ref));
  // Shards whose last record is not a prompt's last layer: the prompt continues in the next shard.
  let cum = 0;
  const splitAfter: number[] = [];
  for (const s of refMeta.shards) {
    cum += s.n_records;
    if (cum % 3 !== 0) splitAfter.push(s.shard_id);
  }
  assert(splitAfter.length >= 2, `want prompts split across shards, got ${splitAfter}`);
  const points = [
    `committed:${splitAfter[0]}`,
    `committed:${splitAfter[1]}`,
    `committed:${refMeta.shards.length}`,
  ];

  const out = join(tmp.path, "killed");
  for (const point of points) {
    const child = spawnExtract(baseArgs(fx, out), { [KILL_AT_ENV]: point });
    const st = await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
    assertEquals(st.signal, "SIGKILL", point);
    const m = await readMetadata(new LocalStore(out));
    assertEquals(m.shards.length, Number(point.split(":")[1]), `${point}: shards listed when killed`);
    assertEquals(m.status, "in_progress");
  }
  const last = await runExtractCli(baseArgs(fx, out));
  assertEquals(last.code, 0, last.stderr);
  assertEquals(await recordKeys(out), await recordKeys(ref), "same records, same order");
  assertEquals(await shardFiles(out), await shardFiles(ref), "shard files byte-identical");
  assertEquals((await readMetadata(new LocalStore(out))).status, "complete");
});

Deno.test("fingerprint: the prompt list's tokens are part of it (a changed tokenization is refused on resume)", () => {
  const a = [{ sample_idx: 0, input_ids: Int32Array.of(1, 2, 3) }, {
    sample_idx: 1,
    input_ids: Int32Array.of(4),
  }];
  const same = [{ sample_idx: 0, input_ids: Int32Array.of(1, 2, 3) }, {
    sample_idx: 1,
    input_ids: Int32Array.of(4),
  }];
  const token = [{ sample_idx: 0, input_ids: Int32Array.of(1, 2, 3) }, {
    sample_idx: 1,
    input_ids: Int32Array.of(5),
  }];
  const moved = [{ sample_idx: 0, input_ids: Int32Array.of(1, 2) }, {
    sample_idx: 1,
    input_ids: Int32Array.of(3, 4),
  }];
  assertEquals(promptsSha256(a), promptsSha256(same));
  assert(promptsSha256(a) !== promptsSha256(token), "a changed token id changes it");
  assert(promptsSha256(a) !== promptsSha256(moved), "a moved prompt boundary changes it");
  const diffs = diffFingerprints({ prompts_sha256: promptsSha256(a) }, {
    prompts_sha256: promptsSha256(token),
  });
  assertEquals(diffs.map((d) => d.key), ["prompts_sha256"]);
  assert(
    /^prompts_sha256 \(stored sha256 [0-9a-f]{12}…, now sha256 [0-9a-f]{12}…\)$/.test(describeDiffs(diffs)),
  );
});
