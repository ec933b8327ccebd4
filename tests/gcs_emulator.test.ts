// The GCS emulator, exercised route by route with the real @google-cloud/storage client (plain fetch only for
// uploadType=media, which the client never sends, and for the admin endpoint).
import { Buffer } from "node:buffer";
import { IdempotencyStrategy, Storage } from "@google-cloud/storage";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { crc32c, crc32cBase64 } from "../lib/util/crc32c.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";

function client(url: string): Storage {
  return new Storage({
    apiEndpoint: url,
    projectId: "test",
    retryOptions: { maxRetryDelay: 1, idempotencyStrategy: IdempotencyStrategy.RetryAlways },
  });
}

function bytes(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const code = (e: unknown) => (e as { code?: number }).code;

Deno.test("gcs emulator: buckets create/get, 409 on duplicate, unknown buckets 404 (the default)", async () => {
  const emu = await startGcsEmulator({ port: 0 });
  try {
    const s = client(emu.url);
    await assertRejects(() => s.bucket("nope").getMetadata().then(() => {}));
    const [b] = await s.createBucket("made-here");
    const [m] = await b.getMetadata();
    assertEquals(m.name, "made-here");
    let err: unknown;
    await s.createBucket("made-here").catch((e) => err = e);
    assertEquals(code(err), 409);
    const [exists] = await s.bucket("nope").exists();
    assertEquals(exists, false);
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: multipart and media uploads, metadata with crc32c/md5, generations", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt1"] });
  try {
    const s = client(emu.url);
    const f = s.bucket("bkt1").file("dir/hello.txt");
    await f.save("hello", { resumable: false, contentType: "text/plain" });
    const [m] = await f.getMetadata();
    assertEquals(Number(m.size), 5);
    assertEquals(m.crc32c, crc32cBase64(crc32c(new TextEncoder().encode("hello"))));
    assertEquals(m.md5Hash, "XUFAKrxLKna5cZ2REBfFkg==");
    assertEquals(m.metageneration, "1");
    const g1 = Number(m.generation);
    await f.save("hello again", { resumable: false });
    const [m2] = await f.getMetadata();
    assert(Number(m2.generation) > g1, "new generation");
    // metageneration bumps on metadata update
    await f.setMetadata({ metadata: { k: "v" } });
    const [m3] = await f.getMetadata();
    assertEquals(m3.metageneration, "2");
    assertEquals((m3.metadata as Record<string, string>).k, "v");
    // uploadType=media (plain fetch: the client does not use it)
    const r = await fetch(`${emu.url}/upload/storage/v1/b/bkt1/o?uploadType=media&name=raw.bin`, {
      method: "POST",
      body: bytes(1000),
    });
    assertEquals(r.status, 200);
    const res = await r.json();
    assertEquals(res.size, "1000");
    const [raw] = await s.bucket("bkt1").file("raw.bin").download();
    assertEquals(Buffer.compare(raw, Buffer.from(bytes(1000))), 0);
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: resumable multi-chunk upload, preconditions 412, persisted across restart", async () => {
  await using dir = await tempDir();
  const data = bytes(3 * 256 * 1024 + 123);
  const src = `${dir.path}/src.bin`;
  await Deno.writeFile(src, data);
  let emu = await startGcsEmulator({ port: 0, dir: `${dir.path}/state`, buckets: ["bkt2"] });
  try {
    const b = client(emu.url).bucket("bkt2");
    await b.upload(src, {
      destination: "a/big.bin",
      resumable: true,
      chunkSize: 256 * 1024,
      validation: "crc32c",
      preconditionOpts: { ifGenerationMatch: 0 },
    });
    const [m] = await b.file("a/big.bin").getMetadata();
    assertEquals(Number(m.size), data.length);
    assertEquals(m.crc32c, crc32cBase64(crc32c(data)));
    let err: unknown;
    await b.upload(src, {
      destination: "a/big.bin",
      resumable: true,
      preconditionOpts: { ifGenerationMatch: 0 },
    })
      .catch((e) => err = e);
    assertEquals(code(err), 412);
    err = undefined;
    await b.file("a/big.bin").save("x", {
      resumable: false,
      preconditionOpts: { ifGenerationNotMatch: m.generation },
    })
      .catch((e) => err = e);
    assertEquals(code(err), 412);
    await b.file("a/big.bin").save("x", {
      resumable: false,
      preconditionOpts: { ifGenerationMatch: m.generation },
    })
      .catch((e) => err = e);
    const [m2] = await b.file("a/big.bin").getMetadata();
    assertEquals(Number(m2.size), 1);
  } finally {
    await emu.close();
  }
  emu = await startGcsEmulator({ port: 0, dir: `${dir.path}/state`, buckets: ["bkt2"] });
  try {
    const [m] = await client(emu.url).bucket("bkt2").file("a/big.bin").getMetadata();
    assertEquals(Number(m.size), 1, "state survives a restart on the same --dir");
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: resumable session status query answers 308 with Range", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt3"] });
  try {
    const start = await fetch(`${emu.url}/upload/storage/v1/b/bkt3/o?uploadType=resumable&name=s.bin`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    const loc = start.headers.get("location")!;
    await start.body?.cancel();
    const part = bytes(1000);
    const r1 = await fetch(loc, {
      method: "PUT",
      headers: { "content-range": "bytes 0-499/*" },
      body: part.slice(0, 500),
    });
    assertEquals(r1.status, 308);
    assertEquals(r1.headers.get("range"), "bytes=0-499");
    const q = await fetch(loc, { method: "PUT", headers: { "content-range": "bytes */*" } });
    assertEquals(q.status, 308);
    assertEquals(q.headers.get("range"), "bytes=0-499");
    // overlapping resend is accepted; final chunk completes with the object resource
    const r2 = await fetch(loc, {
      method: "PUT",
      headers: { "content-range": "bytes 400-999/1000" },
      body: part.slice(400),
    });
    assertEquals(r2.status, 200);
    const o = await r2.json();
    assertEquals(o.crc32c, crc32cBase64(crc32c(part)));
    // a bad X-Goog-Hash is refused
    const s2 = await fetch(`${emu.url}/upload/storage/v1/b/bkt3/o?uploadType=resumable&name=t.bin`, {
      method: "POST",
      body: "{}",
    });
    const loc2 = s2.headers.get("location")!;
    await s2.body?.cancel();
    const bad = await fetch(loc2, {
      method: "PUT",
      headers: { "content-range": "bytes 0-9/10", "x-goog-hash": `crc32c=${crc32cBase64(1)}` },
      body: part.slice(0, 10),
    });
    assertEquals(bad.status, 400);
    await bad.body?.cancel();
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: alt=media with Range, list with prefix/delimiter/pageToken, delete", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt4"] });
  try {
    const b = client(emu.url).bucket("bkt4");
    const data = bytes(5000);
    await b.file("p/x.bin").save(Buffer.from(data), { resumable: false });
    for (const n of ["p/a/1", "p/a/2", "p/b/1", "p/c", "q/d"]) await b.file(n).save(n, { resumable: false });
    const [r] = await b.file("p/x.bin").download({ start: 100, end: 199 });
    assertEquals(Buffer.compare(r, Buffer.from(data.subarray(100, 200))), 0);
    const [all] = await b.getFiles({ prefix: "p/" });
    assertEquals(all.map((f) => f.name), ["p/a/1", "p/a/2", "p/b/1", "p/c", "p/x.bin"]);
    const [, , resp] = await b.getFiles({ prefix: "p/", delimiter: "/", autoPaginate: false });
    const body = resp as { items?: { name: string }[]; prefixes?: string[] };
    assertEquals(body.prefixes, ["p/a/", "p/b/"]);
    assertEquals(body.items!.map((i) => i.name), ["p/c", "p/x.bin"]);
    const [page1, next] = await b.getFiles({ prefix: "p/", maxResults: 2, autoPaginate: false });
    assertEquals(page1.map((f) => f.name), ["p/a/1", "p/a/2"]);
    const [page2] = await b.getFiles({ ...(next as object), autoPaginate: false });
    assertEquals(page2.map((f) => f.name), ["p/b/1", "p/c"]);
    await b.file("p/c").delete();
    assertEquals((await b.file("p/c").exists())[0], false);
    let err: unknown;
    await b.file("p/c").delete().catch((e) => err = e);
    assertEquals(code(err), 404);
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: scripted faults (429, 503, reset mid-upload, truncated body) are survived by retries", async () => {
  await using dir = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt5"] });
  try {
    const b = client(emu.url).bucket("bkt5");
    const data = bytes(4 * 256 * 1024 + 7);
    await Deno.writeFile(`${dir.path}/d.bin`, data);
    emu.faults.add({ op: "upload-start", kind: "status", status: 429 });
    emu.faults.add({ op: "upload-chunk", kind: "status", status: 503 });
    emu.faults.add({ op: "upload-chunk", kind: "reset", skip: 2 }); // third chunk PUT: half kept, then reset
    await b.upload(`${dir.path}/d.bin`, {
      destination: "f.bin",
      resumable: true,
      chunkSize: 256 * 1024,
      validation: "crc32c",
      preconditionOpts: { ifGenerationMatch: 0 },
    });
    assertEquals(emu.faults.fired.map((f) => `${f.op}:${f.kind}`), [
      "upload-start:status",
      "upload-chunk:status",
      "upload-chunk:reset",
    ]);
    const [m] = await b.file("f.bin").getMetadata();
    assertEquals(m.crc32c, crc32cBase64(crc32c(data)));
    // truncated body: the client notices (length/checksum) and the read fails or is retried, never silently short
    emu.faults.add({ op: "download", kind: "truncate" });
    const got = await b.file("f.bin").download().then(([d]) => d).catch(() => null);
    if (got) assertEquals(Buffer.compare(got, Buffer.from(data)), 0);
    // admin endpoint
    const r = await fetch(`${emu.url}/_emulator/faults`, {
      method: "POST",
      body: JSON.stringify({ op: "metadata", kind: "status", status: 500, times: null }),
    });
    await r.body?.cancel();
    let err: unknown;
    await client(emu.url).bucket("bkt5").file("f.bin").getMetadata().catch((e) => err = e);
    assertEquals(code(err), 500);
    await (await fetch(`${emu.url}/_emulator/faults`, { method: "DELETE" })).body?.cancel();
    await b.file("f.bin").getMetadata();
  } finally {
    await emu.close();
  }
});

// ---- fidelity: what real GCS does that the client must cope with ----

Deno.test("gcs emulator: an unknown bucket is 404 until created through the JSON API (POST /storage/v1/b?project=)", async () => {
  const emu = await startGcsEmulator({ port: 0 });
  try {
    const list = await fetch(`${emu.url}/storage/v1/b/fresh/o`);
    assertEquals(list.status, 404);
    await list.body?.cancel();
    const made = await fetch(`${emu.url}/storage/v1/b?project=my-project`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "fresh" }),
    });
    assertEquals(made.status, 200);
    assertEquals((await made.json()).name, "fresh");
    const again = await fetch(`${emu.url}/storage/v1/b/fresh/o`);
    assertEquals(again.status, 200);
    await again.body?.cancel();
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: ifGenerationMatch=0 of a resumable session is checked again at finalize (412)", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const start = await fetch(
      `${emu.url}/upload/storage/v1/b/bkt/o?uploadType=resumable&name=x.bin&ifGenerationMatch=0`,
      { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
    );
    assertEquals(start.status, 200);
    const session = start.headers.get("location")!;
    // another writer creates the object while the session is open
    const other = await fetch(`${emu.url}/upload/storage/v1/b/bkt/o?uploadType=media&name=x.bin`, {
      method: "POST",
      body: "theirs",
    });
    assertEquals(other.status, 200);
    await other.body?.cancel();
    const fin = await fetch(session, {
      method: "PUT",
      headers: { "content-range": "bytes 0-3/4" },
      body: "mine",
    });
    assertEquals(fin.status, 412);
    await fin.body?.cancel();
    const got = await fetch(`${emu.url}/storage/v1/b/bkt/o/x.bin?alt=media`);
    assertEquals(await got.text(), "theirs");
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: short list pages with nextPageToken; the client reads every page", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"], listPageSize: 2 });
  try {
    const store = await GcsStore.open("bkt", "p", { apiEndpoint: emu.url });
    for (let i = 0; i < 5; i++) {
      await store.writeSmall(`o${i}`, new TextEncoder().encode(`${i}`), "text/plain");
    }
    const page = await (await fetch(`${emu.url}/storage/v1/b/bkt/o?prefix=p/&maxResults=1000`)).json();
    assertEquals(page.items.length, 2);
    assert(typeof page.nextPageToken === "string");
    assertEquals((await store.list()).map((o) => o.name), ["o0", "o1", "o2", "o3", "o4"]);
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: a stall fault holds the request unanswered until the client gives up", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    emu.faults.add({ op: "list", kind: "stall" });
    const r = await fetch(`${emu.url}/storage/v1/b/bkt/o`, { signal: AbortSignal.timeout(200) }).then(
      () => "answered",
      (e) => (e as Error).name,
    );
    assertEquals(r, "TimeoutError");
    const next = await fetch(`${emu.url}/storage/v1/b/bkt/o`);
    assertEquals(next.status, 200);
    await next.body?.cancel();
    assertEquals(emu.faults.fired.map((f) => f.kind), ["stall"]);
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: 429 for a second write of one object within a second; the client's retry gets through", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"], objectWriteRateLimit: true });
  try {
    const put = (body: string) =>
      fetch(`${emu.url}/upload/storage/v1/b/bkt/o?uploadType=media&name=m.json`, { method: "POST", body });
    const a = await put("1");
    const b = await put("2");
    assertEquals([a.status, b.status], [200, 429]);
    await a.body?.cancel();
    await b.body?.cancel();
    const notes: string[] = [];
    const store = await GcsStore.open("bkt", "", {
      apiEndpoint: emu.url,
      retry: { initialDelayMs: 600 },
      onRetry: (n) => notes.push(n.reason),
    });
    await store.writeSmall("m.json", new TextEncoder().encode("3"));
    assertEquals(new TextDecoder().decode(await store.read("m.json")), "3");
    assert(notes.some((r) => r.startsWith("HTTP 429")), JSON.stringify(notes));
  } finally {
    await emu.close();
  }
});

Deno.test("gcs emulator: contentEncoding is kept as given (no transcoding)", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const s = client(emu.url);
    const f = s.bucket("bkt").file("z.gz");
    await f.save(Buffer.from([1, 2, 3]), { resumable: false, metadata: { contentEncoding: "gzip" } });
    const [m] = await f.getMetadata();
    assertEquals(m.contentEncoding, "gzip");
    const r = await fetch(`${emu.url}/storage/v1/b/bkt/o/z.gz?alt=media`);
    assertEquals(r.headers.get("x-goog-stored-content-encoding"), "gzip");
    assertEquals(new Uint8Array(await r.arrayBuffer()), new Uint8Array([1, 2, 3]));
  } finally {
    await emu.close();
  }
});
