// GCS over bad networks: a stalled chunk PUT retried and resumed, an endpoint that stalls everything failing
// with one line, truncated/reset downloads resumed by Range, DNS failures retried, the retry deadline, and no
// credentials / a refused write reported at start with one line.
import { join } from "node:path";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { GcsRequestError, GcsTransport, networkError } from "../lib/storage/gcs_transport.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { ActshardError } from "../lib/errors.ts";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { startStallProxy } from "./_gcs_proxy.ts";
import { errorLines, makeDataset, runScript } from "./_gcs_fixture.ts";

const NET = { ACTSHARD_GCS_STALL_TIMEOUT_S: "1", ACTSHARD_GCS_RETRY_DEADLINE_S: "20" };
const isChunkPut = (r: Request) => r.method === "PUT" && new URL(r.url).searchParams.has("upload_id");

Deno.test("upload: a proxy stalls one chunk PUT of ~10 → retried and resumed, every object byte-identical", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  const proxy = await startStallProxy(emu.url, isChunkPut, 4);
  try {
    const meta = await makeDataset(tmp.path, { format: "safetensors", records: 40 });
    const r = await runScript("upload.ts", [
      "--output_dir",
      tmp.path,
      "--gcs_bucket",
      "bkt",
      "--gcs_prefix",
      "p",
    ], {
      ...NET,
      STORAGE_EMULATOR_HOST: proxy.url,
      ACTSHARD_GCS_CHUNK_SIZE: String(256 * 1024),
    });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(proxy.stalled, 1);
    assert(proxy.forwarded.PUT >= 10, `want >= 10 chunk PUTs, got ${proxy.forwarded.PUT}`);
    assert(/connection stalled: no byte sent or received for 1\.0 s; retrying/.test(r.stderr), r.stderr);
    const store = await GcsStore.open("bkt", "p", { apiEndpoint: emu.url });
    for (const s of meta.shards) {
      assertEquals(await store.read(s.filename), await Deno.readFile(join(tmp.path, s.filename)), s.filename);
    }
    const remote = await readMetadata(store);
    assertEquals(remote.shards.map((s) => s.filename), meta.shards.map((s) => s.filename));
    assert(remote.shards.every((s) => s.gcs_verified));
    // our own check agrees
    const v = await runScript("verify.ts", ["gs://bkt/p", "--deep"], { STORAGE_EMULATOR_HOST: emu.url });
    assertEquals(v.code, 0, v.stdout + v.stderr);
  } finally {
    await proxy.close();
    await emu.close();
  }
});

Deno.test("upload: an endpoint that stalls everything → one line, non-zero exit, within the deadline", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    await makeDataset(tmp.path);
    emu.faults.add({ op: "any", kind: "stall", times: Infinity });
    const r = await runScript("upload.ts", [
      ...["--output_dir", tmp.path, "--gcs_bucket", "bkt", "--gcs_prefix", "p"],
      ...["--gcs_stall_timeout_s", "0.3", "--gcs_retry_deadline_s", "2"],
    ], { STORAGE_EMULATOR_HOST: emu.url });
    assertEquals(r.code, 1, r.stderr);
    const lines = errorLines(r.stderr);
    assertEquals(lines.length, 1, r.stderr);
    assert(
      /^upload: cannot access bucket: network failure, connection stalled: no byte sent or received for 0\.3 s \(gave up after \d+ attempts over \d+ s, the retry deadline is 2 s\)/
        .test(lines[0]),
      lines[0],
    );
    assert(emu.faults.fired.length >= 2, "retried before giving up");
  } finally {
    await emu.close();
  }
});

Deno.test("verify, read, shard of gs://: an endpoint that stalls everything → one line, non-zero exit, under their --gcs_* flags", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    emu.faults.add({ op: "any", kind: "stall", times: Infinity });
    const net = ["--gcs_stall_timeout_s", "0.3", "--gcs_retry_deadline_s", "2"];
    for (
      const [script, args] of [
        ["verify.ts", ["gs://bkt/p"]],
        ["read.ts", ["gs://bkt/p"]],
        ["shard.ts", ["--input", "gs://bkt/p", "--output", join(tmp.path, "out")]],
      ] as const
    ) {
      const t = performance.now();
      const r = await runScript(script, [...args, ...net], { STORAGE_EMULATOR_HOST: emu.url });
      const lines = errorLines(r.stderr);
      assert(r.code !== 0, `${script}: exit 0\n${r.stderr}`);
      assertEquals(lines.length, 1, `${script}: ${r.stderr}`);
      assert(
        /connection stalled: no byte sent or received for 0\.3 s/.test(lines[0]),
        `${script}: ${lines[0]}`,
      );
      assert(/the retry deadline is 2 s/.test(lines[0]), `${script}: ${lines[0]}`);
      assert(performance.now() - t < 30_000, `${script} took ${performance.now() - t} ms`);
    }
  } finally {
    await emu.close();
  }
});

Deno.test("reads: a truncated metadata.json GET and a reset shard download are resumed by Range", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    const meta = await makeDataset(tmp.path);
    const store = await GcsStore.open("bkt", "p", { apiEndpoint: emu.url, retry: { initialDelayMs: 10 } });
    const name = meta.shards[0].filename;
    await store.uploadFile(join(tmp.path, name), name);
    await store.writeSmall("metadata.json", await Deno.readFile(join(tmp.path, "metadata.json")));
    emu.faults.add({ op: "download", kind: "truncate", objectPrefix: "p/metadata.json" });
    const m = await readMetadata(store);
    assertEquals(m.shards.length, meta.shards.length);
    emu.faults.add({ op: "download", kind: "reset", objectPrefix: `p/${name}`, times: 2 });
    const chunks: Uint8Array[] = [];
    for await (const c of await store.openRead(name)) chunks.push(c);
    const got = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
    let o = 0;
    for (const c of chunks) (got.set(c, o), o += c.byteLength);
    assertEquals(got, await Deno.readFile(join(tmp.path, name)));
    assertEquals(emu.faults.fired.map((f) => f.kind), ["truncate", "reset", "reset"]);
  } finally {
    await emu.close();
  }
});

Deno.test("reads: a download that never completes is a network failure, not a corrupt file", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    const meta = await makeDataset(tmp.path);
    const store = await GcsStore.open("bkt", "p", {
      apiEndpoint: emu.url,
      retry: { initialDelayMs: 100, maxDelayMs: 200, deadlineMs: 600 },
      onRetry: () => {},
    });
    const name = meta.shards[0].filename;
    await store.uploadFile(join(tmp.path, name), name);
    emu.faults.add({ op: "download", kind: "truncate", times: Infinity });
    let err: unknown;
    try {
      for await (const _ of await store.openRead(name)) { /* drain */ }
    } catch (e) {
      err = e;
    }
    assert(err instanceof ActshardError, String(err));
    assert(
      /^cannot read object: network failure, connection dropped mid-body/.test(err.message),
      err.message,
    );
    assert(!/corrupt/.test(err.line()), err.line());
  } finally {
    await emu.close();
  }
});

Deno.test("transport: DNS failures, resets and stalls are transient; 4xx are not; the deadline ends retries", async () => {
  const dns = networkError(
    new TypeError("error sending request: dns error: failed to lookup address information"),
  );
  assertEquals([dns.transient, dns.cause_kind], [true, "dns"]);
  assertEquals(networkError(new TypeError("connection reset by peer")).transient, true);
  const t = new GcsTransport({
    endpoint: "http://127.0.0.1:9",
    token: null,
    retry: { initialDelayMs: 5, maxDelayMs: 40, deadlineMs: 300 },
    onRetry: () => {},
  });
  let n = 0;
  const e = await t.retrying("op", "here", () => {
    n++;
    throw new GcsRequestError("HTTP 503", 503, true);
  }).catch((x) => x);
  assert(e instanceof GcsRequestError && !e.transient, String(e));
  assert(/gave up after \d+ attempts .*the retry deadline is 0 s/.test(e.message), e.message);
  assert(n > 2, `retried ${n} times`);
  let m = 0;
  const p = await t.retrying("op", "here", () => {
    m++;
    throw new GcsRequestError("HTTP 403", 403, false);
  }).catch((x) => x);
  assertEquals([m, (p as GcsRequestError).status], [1, 403]);
  // a refused connection (nothing listens on port 9) is retried too, then reported as a network failure
  const r = await t.retrying("op", "here", () => t.request("GET", t.jsonUrl("/b/x"))).catch((x) => x);
  assert(
    r instanceof GcsRequestError && r.cause_kind === "network" && /gave up after/.test(r.message),
    String(r),
  );
});

Deno.test("no credentials and no emulator: one line naming both ways out, no library warning", async () => {
  await using tmp = await tempDir();
  await makeDataset(tmp.path);
  const r = await runScript("upload.ts", ["--output_dir", tmp.path, "--gcs_bucket", "bkt"], {
    HOME: tmp.path,
    CLOUDSDK_CONFIG: join(tmp.path, "gcloud"),
    GCE_METADATA_HOST: "127.0.0.1:9", // no metadata server: refused at once
    STORAGE_EMULATOR_HOST: "",
    GOOGLE_APPLICATION_CREDENTIALS: "",
  });
  assertEquals(r.code, 1);
  const lines = r.stderr.split("\n").filter((l) => l.trim());
  assertEquals(lines.length, 1, r.stderr);
  assert(/^upload: no Google credentials found/.test(lines[0]), lines[0]);
  assert(lines[0].includes("gcloud auth application-default login"), lines[0]);
  assert(lines[0].includes("STORAGE_EMULATOR_HOST"), lines[0]);
});

Deno.test("permissions at start: a refused write fails before any upload, with an IAM hint", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    await makeDataset(tmp.path);
    // lists work (a reader's account), writes answer 403
    emu.faults.add({ op: "upload-simple", kind: "status", status: 403, times: Infinity });
    emu.faults.add({ op: "upload-start", kind: "status", status: 403, times: Infinity });
    const r = await runScript("upload.ts", [
      "--output_dir",
      tmp.path,
      "--gcs_bucket",
      "bkt",
      "--gcs_prefix",
      "p",
    ], {
      STORAGE_EMULATOR_HOST: emu.url,
    });
    assertEquals(r.code, 1);
    const lines = errorLines(r.stderr);
    assertEquals(lines.length, 1, r.stderr);
    assert(/^upload: cannot write under this prefix: permission denied \(403\)/.test(lines[0]), lines[0]);
    assertEquals(
      emu.faults.fired.filter((f) => f.op === "upload-start").length,
      0,
      "no shard upload started",
    );
  } finally {
    await emu.close();
  }
});

Deno.test("transport: a server that answers 411 to a streamed body gets whole buffers (Content-Length) instead", async () => {
  const seen: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const n = (await req.arrayBuffer()).byteLength;
    const cl = req.headers.get("content-length");
    seen.push(cl ? `length ${cl}` : "chunked");
    return cl ? Response.json({ n }) : new Response("Length Required", { status: 411 });
  });
  try {
    const t = new GcsTransport({
      endpoint: `http://127.0.0.1:${server.addr.port}`,
      token: null,
      onRetry: () => {},
    });
    const body = new Uint8Array(300_000);
    const r = await t.request("PUT", t.uploadUrl("/x"), { body });
    assertEquals((await r.json()).n, 300_000);
    const r2 = await t.request("PUT", t.uploadUrl("/x"), { body });
    assertEquals((await r2.json()).n, 300_000);
    assertEquals(seen, ["chunked", "length 300000", "length 300000"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("credentials that give no token: one line naming the key file problem; a missing key file named", async () => {
  await using tmp = await tempDir();
  await makeDataset(tmp.path);
  const bad = join(tmp.path, "key.json");
  await Deno.writeTextFile(
    bad,
    JSON.stringify({
      type: "service_account",
      client_email: "x@p.iam.gserviceaccount.com",
      private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }),
  );
  const env = { HOME: tmp.path, GCE_METADATA_HOST: "127.0.0.1:9", STORAGE_EMULATOR_HOST: "" };
  const r = await runScript("upload.ts", ["--output_dir", tmp.path, "--gcs_bucket", "bkt"], {
    ...env,
    GOOGLE_APPLICATION_CREDENTIALS: bad,
  });
  assertEquals(r.code, 1);
  const lines = r.stderr.split("\n").filter((l) => l.trim());
  assertEquals(lines.length, 1, r.stderr);
  assert(
    /^upload: cannot access bucket: permission denied \(401\): the credentials gave no access token/.test(
      lines[0],
    ),
    lines[0],
  );
  const m = await runScript("upload.ts", ["--output_dir", tmp.path, "--gcs_bucket", "bkt"], {
    ...env,
    GOOGLE_APPLICATION_CREDENTIALS: join(tmp.path, "nope.json"),
  });
  assertEquals(m.code, 1);
  assert(/^upload: GOOGLE_APPLICATION_CREDENTIALS names a file that does not exist/.test(m.stderr), m.stderr);
  await Deno.writeTextFile(bad, "{}");
  const n = await runScript("upload.ts", ["--output_dir", tmp.path, "--gcs_bucket", "bkt"], {
    ...env,
    GOOGLE_APPLICATION_CREDENTIALS: bad,
  });
  assertEquals(n.stderr.split("\n").filter((l) => l.trim()).length, 1, n.stderr);
  assert(/^upload: not a Google credentials file \(no "type"\)/.test(n.stderr), n.stderr);
});

Deno.test("reads: a body that stalls halfway is aborted by the watchdog and resumed by Range", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    const meta = await makeDataset(tmp.path);
    const notes: string[] = [];
    const store = await GcsStore.open("bkt", "p", {
      apiEndpoint: emu.url,
      stallTimeoutMs: 300,
      retry: { initialDelayMs: 10 },
      onRetry: (n) => notes.push(n.reason),
    });
    const name = meta.shards[0].filename;
    await store.uploadFile(join(tmp.path, name), name);
    emu.faults.add({ op: "download", kind: "stall-body" });
    assertEquals(await store.read(name), await Deno.readFile(join(tmp.path, name)));
    assertEquals(emu.faults.fired.map((f) => f.kind), ["stall-body"]);
    assert(
      notes.some((n) => /connection stalled: no byte sent or received for 0\.3 s at byte \d+/.test(n)),
      notes[0],
    );
  } finally {
    await emu.close();
  }
});
