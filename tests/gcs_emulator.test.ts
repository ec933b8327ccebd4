// The GCS emulator, exercised route by route with the real @google-cloud/storage client (plain fetch only for
// uploadType=media, which the client never sends, and for the admin endpoint).
import { Buffer } from "node:buffer";
import { IdempotencyStrategy, Storage } from "@google-cloud/storage";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
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
