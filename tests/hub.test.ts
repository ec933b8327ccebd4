/**
 * lib/model/hub.ts against a local HTTP server that serves the Hub's `ORG/NAME/resolve/main/FILE` URLs from a
 * generated tiny checkpoint: download into an HF-layout cache, cache hits without network, clear errors.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ActshardError } from "../lib/errors.ts";
import { type DownloadProgress, resolveModelDir, resolveTokenizerDir } from "../lib/model/hub.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { CheckpointWeights, encodeSafetensors, readSafetensorsHeader } from "../lib/model/safetensors.ts";

/** Serve `dir` as repo `repo` at /REPO/resolve/main/FILE; records requested paths. */
function serveHub(dir: string, repo: string) {
  const requested: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    requested.push(path);
    const prefix = `/${repo}/resolve/main/`;
    if (!path.startsWith(prefix)) return new Response("not found", { status: 404 });
    try {
      const data = await Deno.readFile(join(dir, path.slice(prefix.length)));
      return new Response(data, {
        headers: { "x-repo-commit": "abc123", "content-length": String(data.length) },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { endpoint: `http://127.0.0.1:${server.addr.port}`, requested, server };
}

Deno.test("hub: download into the HF cache layout with progress, then a cache hit without network", async () => {
  await using src = await tempDir();
  await using cache = await tempDir();
  await writeTinyModel(src.path, { hidden: 32, layers: 1, heads: 2, kvHeads: 1, vocab: 50 });
  const hub = serveHub(src.path, "org/tiny");
  const progress: DownloadProgress[] = [];
  let dir: string;
  try {
    dir = await resolveModelDir("org/tiny", {
      endpoint: hub.endpoint,
      cacheDir: cache.path,
      onProgress: (p) => progress.push(p),
    });
  } finally {
    await hub.server.shutdown();
  }
  assertEquals(dir, join(cache.path, "models--org--tiny", "snapshots", "abc123"));
  assertEquals(
    await Deno.readFile(join(dir, "model.safetensors")),
    await Deno.readFile(join(src.path, "model.safetensors")),
  );
  assertEquals(
    (await Deno.readTextFile(join(cache.path, "models--org--tiny", "refs", "main"))).trim(),
    "abc123",
  );
  const last = progress.filter((p) => p.file === "model.safetensors").at(-1)!;
  assertEquals(last.received, last.total);
  assert(hub.requested.includes("/org/tiny/resolve/main/model.safetensors.index.json"), "index tried first");
  // Server is down now: the cache answers.
  assertEquals(await resolveModelDir("org/tiny", { endpoint: hub.endpoint, cacheDir: cache.path }), dir);
  assertEquals(await resolveTokenizerDir("org/tiny", { endpoint: hub.endpoint, cacheDir: cache.path }), dir);
});

Deno.test("hub: tokenizer-only resolution downloads no weights", async () => {
  await using src = await tempDir();
  await using cache = await tempDir();
  await writeTinyModel(src.path, { hidden: 32, layers: 1, heads: 2, kvHeads: 1, vocab: 50 });
  const hub = serveHub(src.path, "org/tok");
  try {
    const dir = await resolveTokenizerDir("org/tok", { endpoint: hub.endpoint, cacheDir: cache.path });
    assert(await Deno.stat(join(dir, "tokenizer.json")).then(() => true), "tokenizer.json present");
    assert(!hub.requested.some((p) => p.endsWith(".safetensors")), "no weights requested");
  } finally {
    await hub.server.shutdown();
  }
});

Deno.test("hub: no network and not cached → one clear error saying how to fetch; bad paths", async () => {
  await using cache = await tempDir();
  await assertRejects(
    () => resolveModelDir("org/absent", { endpoint: "http://127.0.0.1:9", cacheDir: cache.path }),
    (e: unknown) => {
      assert(e instanceof ActshardError);
      const line = e.line();
      assert(
        /cannot download org\/absent/.test(line) && /huggingface-cli download org\/absent/.test(line),
        line,
      );
      return true;
    },
  );
  await assertRejects(
    () => resolveModelDir("org/absent", { download: false, cacheDir: cache.path }),
    /not in the local Hugging Face cache/,
  );
  await assertRejects(
    () => resolveModelDir("./no/such/dir", { cacheDir: cache.path }),
    /model directory not found/,
  );
  await using src = await tempDir();
  const hub = serveHub(src.path, "org/empty");
  try {
    await assertRejects(
      () => resolveModelDir("org/empty", { endpoint: hub.endpoint, cacheDir: cache.path }),
      /was not found on the Hub/,
    );
  } finally {
    await hub.server.shutdown();
  }
});

Deno.test("hub: a sharded download cut off mid-shard is not taken for a cached model; the rerun completes it", async () => {
  await using src = await tempDir();
  await using cache = await tempDir();
  await writeTinyModel(src.path, { hidden: 32, layers: 1, heads: 2, kvHeads: 1, vocab: 50 });
  // Re-shard the checkpoint into two files plus an index, as larger Hub models are stored.
  const single = join(src.path, "model.safetensors");
  const header = await readSafetensorsHeader(single);
  const bytes = await Deno.readFile(single);
  const names = [...header.tensors.keys()];
  const shardNames = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  const weightMap: Record<string, string> = {};
  for (const [s, part] of [names.slice(0, 3), names.slice(3)].entries()) {
    const tensors = part.map((n) => {
      const t = header.tensors.get(n)!;
      weightMap[n] = shardNames[s];
      return {
        name: n,
        dtype: t.dtype,
        shape: t.shape,
        data: bytes.slice(t.offset, t.offset + t.byteLength),
      };
    });
    await Deno.writeFile(join(src.path, shardNames[s]), encodeSafetensors(tensors));
  }
  await Deno.remove(single);
  await Deno.writeTextFile(
    join(src.path, "model.safetensors.index.json"),
    JSON.stringify({ metadata: {}, weight_map: weightMap }),
  );

  // First attempt: the second shard fails (a preempted VM looks the same: the shard never completes).
  let failShard = true;
  const inner = serveHub(src.path, "org/sharded");
  const relay = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    if (failShard && req.url.endsWith(shardNames[1])) return new Response("boom", { status: 503 });
    return fetch(new URL(new URL(req.url).pathname, inner.endpoint));
  });
  const endpoint = `http://127.0.0.1:${relay.addr.port}`;
  try {
    await assertRejects(
      () => resolveModelDir("org/sharded", { endpoint, cacheDir: cache.path }),
      /HTTP 503/,
    );
    // Offline now: the partial snapshot must not pass for the model.
    await assertRejects(
      () => resolveModelDir("org/sharded", { download: false, cacheDir: cache.path }),
      /not in the local Hugging Face cache/,
    );
    failShard = false;
    const dir = await resolveModelDir("org/sharded", { endpoint, cacheDir: cache.path });
    const w = await CheckpointWeights.open(dir);
    try {
      assertEquals(w.tensors.size, names.length);
    } finally {
      w.close();
    }
  } finally {
    await relay.shutdown();
    await inner.server.shutdown();
  }
});
