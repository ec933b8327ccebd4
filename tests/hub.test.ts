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
      () => resolveModelDir("org/sharded", { endpoint, cacheDir: cache.path, retries: 2, retryBaseMs: 1 }),
      /download of model-00002-of-00002\.safetensors failed after 3 attempt\(s\): HTTP 503/,
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

/** One file served from bytes, with a per-request behaviour; records each request's Range header. */
function serveFile(
  repo: string,
  files: Record<string, Uint8Array>,
  behave: (file: string, n: number, range: string | null) => "stall" | "full" | "range",
) {
  const requests: { file: string; range: string | null }[] = [];
  const stalled: ReadableStreamDefaultController<Uint8Array>[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    const file = path.slice(`/${repo}/resolve/main/`.length);
    const data = files[file];
    if (!data) return new Response("not found", { status: 404 });
    const range = req.headers.get("range");
    requests.push({ file, range });
    const n = requests.filter((r) => r.file === file).length;
    const headers = { "x-repo-commit": "abc123", "content-length": String(data.length) };
    switch (behave(file, n, range)) {
      case "stall": // half the body, then nothing: the connection stays open
        return new Response(
          new ReadableStream<Uint8Array>({
            start(c) {
              c.enqueue(data.slice(0, data.length >> 1));
              stalled.push(c);
            },
          }),
          { headers },
        );
      case "range": {
        const from = Number(/^bytes=(\d+)-$/.exec(range ?? "")![1]);
        return new Response(data.slice(from), {
          status: 206,
          headers: {
            ...headers,
            "content-length": String(data.length - from),
            "content-range": `bytes ${from}-${data.length - 1}/${data.length}`,
          },
        });
      }
      default:
        return new Response(data.slice(), { headers });
    }
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async close() {
      for (const c of stalled) {
        try {
          c.close();
        } catch { /* already cancelled by the client's abort */ }
      }
      await server.shutdown();
    },
  };
}

async function tinyFiles(): Promise<Record<string, Uint8Array>> {
  await using src = await tempDir();
  await writeTinyModel(src.path, {
    hidden: 32,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    vocab: 50,
    tokenizer: false,
  });
  const files: Record<string, Uint8Array> = {};
  for await (const e of Deno.readDir(src.path)) files[e.name] = await Deno.readFile(join(src.path, e.name));
  return files;
}

Deno.test("hub: a body that stalls mid-file is aborted after the inactivity timeout and resumed with a Range request", async () => {
  await using cache = await tempDir();
  const files = await tinyFiles();
  const weights = files["model.safetensors"];
  const hub = serveFile(
    "org/stall",
    files,
    (file, n, range) => file !== "model.safetensors" ? "full" : n === 1 ? "stall" : range ? "range" : "full",
  );
  const progress: DownloadProgress[] = [];
  try {
    const dir = await resolveModelDir("org/stall", {
      endpoint: hub.endpoint,
      cacheDir: cache.path,
      stallTimeoutMs: 300,
      retryBaseMs: 1,
      onProgress: (p) => progress.push(p),
    });
    assertEquals(await Deno.readFile(join(dir, "model.safetensors")), weights);
    const tries = hub.requests.filter((r) => r.file === "model.safetensors");
    assertEquals(tries.map((r) => r.range), [null, `bytes=${weights.length >> 1}-`]);
    const last = progress.filter((p) => p.file === "model.safetensors").at(-1)!;
    assertEquals([last.received, last.total], [weights.length, weights.length]);
  } finally {
    await hub.close();
  }
});

Deno.test("hub: a server that ignores Range gets the file restarted; one that always stalls gives one clear error", async () => {
  await using cache = await tempDir();
  const files = await tinyFiles();
  const weights = files["model.safetensors"];
  const restart = serveFile(
    "org/norange",
    files,
    (file, n) => file === "model.safetensors" && n === 1 ? "stall" : "full",
  );
  try {
    const dir = await resolveModelDir("org/norange", {
      endpoint: restart.endpoint,
      cacheDir: cache.path,
      stallTimeoutMs: 300,
      retryBaseMs: 1,
    });
    assertEquals(await Deno.readFile(join(dir, "model.safetensors")), weights);
    assertEquals(restart.requests.filter((r) => r.file === "model.safetensors").length, 2);
  } finally {
    await restart.close();
  }
  const stuck = serveFile("org/stuck", files, (file) => file === "model.safetensors" ? "stall" : "full");
  try {
    await assertRejects(
      () =>
        resolveModelDir("org/stuck", {
          endpoint: stuck.endpoint,
          cacheDir: cache.path,
          stallTimeoutMs: 200,
          retries: 2,
          retryBaseMs: 1,
        }),
      (e: unknown) => {
        assert(e instanceof ActshardError, String(e));
        const line = e.line();
        assert(!line.includes("\n"), line);
        assert(
          /^download of model\.safetensors failed after 3 attempt\(s\): stalled: no data for 200 ms after \d+ bytes/
            .test(line),
          line,
        );
        return true;
      },
    );
    assertEquals(stuck.requests.filter((r) => r.file === "model.safetensors").length, 3);
    // The partial file is never taken for the model.
    await assertRejects(
      () => resolveModelDir("org/stuck", { download: false, cacheDir: cache.path }),
      /not in the local Hugging Face cache/,
    );
  } finally {
    await stuck.close();
  }
});
