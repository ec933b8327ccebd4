/**
 * A GCS JSON-API emulator: a Deno HTTP server speaking the subset of the API that `@google-cloud/storage` uses
 * (buckets, media/multipart/resumable uploads, preconditions, generations, crc32c/md5, ranged downloads, list,
 * delete), with state persisted under a directory and scripted faults for tests. See docs/gcs.md for what it
 * covers and what it does not. Point a client at it with `apiEndpoint: emu.url` or
 * `STORAGE_EMULATOR_HOST=emu.url`.
 *
 * @example
 * ```ts
 * import { Storage } from "@google-cloud/storage";
 * import { startGcsEmulator } from "./server.ts";
 * const emu = await startGcsEmulator({ port: 0 });
 * const storage = new Storage({ apiEndpoint: emu.url, projectId: "test" });
 * await storage.bucket("b").file("x.txt").save("hello");
 * emu.faults.add({ op: "download", kind: "status", status: 503 }); // next download answers 503 once
 * await emu.close();
 * ```
 */
import { FaultRule, FaultScript, FaultTarget } from "./faults.ts";
import { EmulatorStore, GcsHttpError, hashFile, ObjectResource, Preconditions } from "./store.ts";
import { Route, route } from "./routes.ts";

export type { FaultRule } from "./faults.ts";

const LOG = (() => {
  try {
    return !!Deno.env.get("ACTSHARD_GCS_EMULATOR_LOG");
  } catch {
    return false;
  }
})();

/** A running emulator. */
export interface GcsEmulator {
  /** Base URL, e.g. http://127.0.0.1:PORT (use as `apiEndpoint` or `STORAGE_EMULATOR_HOST`). */
  url: string;
  port: number;
  /** State directory. */
  dir: string;
  /** Scripted faults (also reachable over HTTP: POST/DELETE /_emulator/faults). */
  faults: { add(rule: FaultRule): void; clear(): void; fired: FaultScript["fired"] };
  close(): Promise<void>;
}

/** Options for {@link startGcsEmulator}. */
export interface GcsEmulatorOptions {
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** State directory; a fresh temp dir (removed on close) when omitted. */
  dir?: string;
  /** Hostname to bind (default 127.0.0.1). */
  hostname?: string;
  /** Create buckets on first reference (default true); false makes unknown buckets 404 as on GCS. */
  autoCreateBuckets?: boolean;
  /** Buckets to create at start. */
  buckets?: string[];
}

/** Start the emulator. */
export async function startGcsEmulator(opts: GcsEmulatorOptions = {}): Promise<GcsEmulator> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "actshard-gcs-emu-" });
  let url = "";
  const store = await EmulatorStore.open(dir, () => url, opts.autoCreateBuckets ?? true);
  for (const b of opts.buckets ?? []) await store.bucket(b).catch(() => store.createBucket(b));
  const faults = new FaultScript();
  const ac = new AbortController();
  const hostname = opts.hostname ?? "127.0.0.1";
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { port: opts.port ?? 0, hostname, signal: ac.signal, onListen: (a) => resolve(a as Deno.NetAddr) },
    async (req) => {
      const res = await handle(req, store, faults, url);
      if (LOG) {
        const cr = req.headers.get("content-range") ?? "";
        console.error(
          `gcs-emulator: ${req.method} ${req.url} ${cr} -> ${res.status} ${res.headers.get("range") ?? ""}`,
        );
      }
      return res;
    },
  );
  const addr = await listening;
  url = `http://${hostname === "0.0.0.0" ? "127.0.0.1" : hostname}:${addr.port}`;
  return {
    url,
    port: addr.port,
    dir,
    faults,
    async close() {
      ac.abort();
      await server.finished;
      if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function handle(
  req: Request,
  store: EmulatorStore,
  faults: FaultScript,
  base: string,
): Promise<Response> {
  try {
    const u = new URL(req.url);
    const r = route(req.method, u);
    if (r.op === "admin") return await admin(req, u, faults);
    const fault = r.op === "unknown" ? null : faults.take({ op: r.op, object: r.object } as FaultTarget);
    if (fault?.kind === "status") {
      await req.body?.cancel();
      const status = fault.status ?? 503;
      return errorResponse(new GcsHttpError(status, `Injected fault: HTTP ${status}`, "backendError"));
    }
    return await dispatch(req, u, r, store, base, fault);
  } catch (e) {
    if (e instanceof GcsHttpError) return errorResponse(e);
    return errorResponse(
      new GcsHttpError(500, `emulator error: ${(e as Error)?.message ?? e}`, "backendError"),
    );
  }
}

async function dispatch(
  req: Request,
  u: URL,
  r: Route,
  store: EmulatorStore,
  base: string,
  fault: FaultRule | null,
): Promise<Response> {
  const q = u.searchParams;
  const pre = preconditions(q);
  switch (r.kind) {
    case "bucket-insert": {
      const body = await req.json().catch(() => ({}));
      if (!body?.name) throw new GcsHttpError(400, "Missing bucket name");
      return json(await store.createBucket(String(body.name)));
    }
    case "bucket-list": {
      await req.body?.cancel();
      return json({ kind: "storage#buckets", items: [] });
    }
    case "bucket-get":
      return json((await store.bucket(r.bucket!)).res);
    case "object-list":
      return json(await listPage(store, r.bucket!, q));
    case "object-get": {
      const o = await store.object(r.bucket!, r.object!, q.get("generation"));
      store.checkPreconditions(o, pre);
      if (q.get("alt") === "media" || r.download) return download(req, store, o, fault);
      return json(o);
    }
    case "object-patch": {
      const body = await req.json().catch(() => ({}));
      return json(await store.patchObject(r.bucket!, r.object!, body, pre));
    }
    case "object-delete":
      await store.deleteObject(r.bucket!, r.object!, pre);
      return new Response(null, { status: 204 });
    case "upload-insert":
      return await uploadInsert(req, q, r.bucket!, store, base);
    case "upload-chunk":
      return await uploadChunk(req, q.get("upload_id")!, store, fault);
    default:
      await req.body?.cancel();
      throw new GcsHttpError(
        501,
        `the emulator does not implement ${req.method} ${u.pathname}`,
        "notImplemented",
      );
  }
}

// ---- uploads ----

async function uploadInsert(
  req: Request,
  q: URLSearchParams,
  bucket: string,
  store: EmulatorStore,
  base: string,
): Promise<Response> {
  await store.bucket(bucket);
  const type = q.get("uploadType");
  const pre = preconditions(q);
  if (type === "resumable") {
    const meta = await req.json().catch(() => ({})) as Partial<ObjectResource>;
    const name = q.get("name") ?? meta.name;
    if (!name) throw new GcsHttpError(400, "Required parameter: name");
    const existing = (await store.bucket(bucket)).objects.get(name);
    store.checkPreconditions(existing, pre);
    const len = req.headers.get("x-upload-content-length");
    const sess = await store.createSession({
      bucket,
      name,
      total: len ? Number(len) : undefined,
      contentType: req.headers.get("x-upload-content-type") ?? meta.contentType ?? "application/octet-stream",
      metadata: meta.metadata,
      ifGenerationMatch: pre.ifGenerationMatch ?? undefined,
      ifGenerationNotMatch: pre.ifGenerationNotMatch ?? undefined,
      crc32c: meta.crc32c,
      md5Hash: meta.md5Hash,
    });
    const loc = `${base}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${
      encodeURIComponent(name)
    }&upload_id=${sess.id}`;
    return new Response(null, { status: 200, headers: { location: loc, "x-guploader-uploadid": sess.id } });
  }
  if (type === "media" || type === "multipart") {
    let name = q.get("name");
    let contentType = req.headers.get("content-type") ?? "application/octet-stream";
    let data: Uint8Array;
    let meta: Partial<ObjectResource> = {};
    if (type === "multipart") {
      const parts = parseMultipart(new Uint8Array(await req.arrayBuffer()), contentType);
      meta = JSON.parse(new TextDecoder().decode(parts[0].body));
      name = name ?? meta.name ?? null;
      contentType = meta.contentType ?? parts[1].contentType ?? "application/octet-stream";
      data = parts[1].body;
    } else {
      data = new Uint8Array(await req.arrayBuffer());
    }
    if (!name) throw new GcsHttpError(400, "Required parameter: name");
    const tmp = store.tmpPath();
    await Deno.writeFile(tmp, data);
    const hash = googHash(req.headers);
    const res = await store.commitObject(bucket, name, tmp, {
      contentType,
      metadata: meta.metadata,
      pre,
      expectCrc32c: hash.crc32c ?? meta.crc32c,
      expectMd5: hash.md5 ?? meta.md5Hash,
    });
    return json(res);
  }
  await req.body?.cancel();
  throw new GcsHttpError(400, `unsupported uploadType: ${type}`);
}

async function uploadChunk(
  req: Request,
  id: string,
  store: EmulatorStore,
  fault: FaultRule | null,
): Promise<Response> {
  const sess = store.session(id);
  if (sess.done) {
    await req.body?.cancel();
    return json(sess.done);
  }
  const cr = parseContentRange(req.headers.get("content-range"));
  if (cr.total !== undefined) sess.total = cr.total;
  if (cr.start !== undefined) {
    if (cr.start > sess.received) {
      await req.body?.cancel();
      throw new GcsHttpError(
        400,
        `Invalid request. According to the Content-Range header, the upload offset is ${cr.start} byte(s), ` +
          `which exceeds already uploaded size of ${sess.received} byte(s).`,
      );
    }
    const declared = cr.end! - cr.start + 1;
    // A reset fault keeps about half of the chunk (GCS may persist a prefix of an interrupted request).
    const keepUpTo = fault?.kind === "reset" ? Math.floor(declared / 2) : declared;
    const skip = sess.received - cr.start; // bytes the client re-sent that we already have
    const f = await Deno.open(store.sessionPart(id), { append: true });
    let pos = 0;
    try {
      if (req.body) {
        const reader = req.body.getReader();
        while (pos < keepUpTo) {
          const { value, done } = await reader.read();
          if (done) break;
          let chunk = value.subarray(0, Math.max(0, keepUpTo - pos));
          const from = Math.max(0, skip - pos);
          pos += value.length;
          if (from < chunk.length) {
            chunk = chunk.subarray(from);
            for (let off = 0; off < chunk.length;) off += await f.write(chunk.subarray(off));
          }
        }
        await reader.cancel().catch(() => {});
      }
    } finally {
      f.close();
    }
    sess.received = Math.max(sess.received, cr.start + Math.min(pos, keepUpTo));
    await store.saveSession(sess);
    if (fault?.kind === "reset") return abortedResponse();
  } else {
    await req.body?.cancel();
  }
  if (sess.total !== undefined && sess.received >= sess.total) {
    const tmp = store.tmpPath();
    await Deno.copyFile(store.sessionPart(id), tmp);
    const hash = googHash(req.headers);
    try {
      const res = await store.commitObject(sess.bucket, sess.name, tmp, {
        contentType: sess.contentType,
        metadata: sess.metadata,
        pre: { ifGenerationMatch: sess.ifGenerationMatch, ifGenerationNotMatch: sess.ifGenerationNotMatch },
        expectCrc32c: hash.crc32c ?? sess.crc32c,
        expectMd5: hash.md5 ?? sess.md5Hash,
      });
      sess.done = res;
      await store.saveSession(sess);
      await Deno.remove(store.sessionPart(id)).catch(() => {});
      return json(res);
    } catch (e) {
      await store.dropSession(id);
      throw e;
    }
  }
  const headers: Record<string, string> = { "x-guploader-uploadid": id };
  if (sess.received > 0) headers.range = `bytes=0-${sess.received - 1}`;
  return new Response(null, { status: 308, headers });
}

// ---- downloads ----

function download(
  req: Request,
  store: EmulatorStore,
  o: ObjectResource,
  fault: FaultRule | null,
): Response {
  const size = Number(o.size);
  let start = 0;
  let end = size; // exclusive
  let status = 200;
  const range = req.headers.get("range");
  const headers: Record<string, string> = {
    "content-type": o.contentType,
    "x-goog-generation": o.generation,
    "x-goog-metageneration": o.metageneration,
    "x-goog-stored-content-length": o.size,
    "x-goog-stored-content-encoding": "identity",
    "x-goog-hash": `crc32c=${o.crc32c},md5=${o.md5Hash}`,
    etag: o.etag,
    "accept-ranges": "bytes",
  };
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (!m || (m[1] === "" && m[2] === "")) {
      throw new GcsHttpError(416, `bad Range: ${range}`, "requestedRangeNotSatisfiable");
    }
    if (m[1] === "") {
      start = Math.max(0, size - Number(m[2]));
    } else {
      start = Number(m[1]);
      end = m[2] === "" ? size : Math.min(size, Number(m[2]) + 1);
    }
    if (start >= size && size > 0) {
      throw new GcsHttpError(416, "The requested range cannot be satisfied.", "requestedRangeNotSatisfiable");
    }
    status = 206;
    headers["content-range"] = `bytes ${start}-${Math.max(start, end - 1)}/${size}`;
  }
  headers["content-length"] = String(end - start);
  const truncate = fault?.kind === "truncate" || fault?.kind === "reset";
  const limit = truncate ? Math.floor((end - start) / 2) : end - start;
  const body = fileRange(store.dataPath(o.bucket, o.generation), start, limit, truncate);
  return new Response(body, { status, headers });
}

/** `length` bytes of a file from `start`; when `thenFail`, the stream errors after them (a cut connection). */
function fileRange(
  path: string,
  start: number,
  length: number,
  thenFail: boolean,
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | null = null;
  let left = length;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (!file) {
        file = await Deno.open(path);
        await file.seek(start, Deno.SeekMode.Start);
      }
      if (left <= 0) {
        file.close();
        if (thenFail) c.error(new Error("emulator: injected truncated body"));
        else c.close();
        return;
      }
      const buf = new Uint8Array(Math.min(left, 256 * 1024));
      const n = await file.read(buf);
      if (n === null) {
        file.close();
        c.error(new Error("emulator: object data shorter than its size"));
        return;
      }
      left -= n;
      c.enqueue(buf.subarray(0, n));
    },
    cancel() {
      file?.close();
    },
  });
}

/** A response whose body fails at once: the connection is dropped without a complete HTTP answer. */
function abortedResponse(): Response {
  return new Response(
    new ReadableStream({
      start(c) {
        c.error(new Error("emulator: injected connection reset"));
      },
    }),
    { status: 200, headers: { "content-length": "64" } },
  );
}

// ---- list ----

async function listPage(store: EmulatorStore, bucket: string, q: URLSearchParams): Promise<unknown> {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const max = Math.max(1, Math.min(1000, Number(q.get("maxResults") ?? 1000) || 1000));
  const after = q.get("pageToken") ? atob(q.get("pageToken")!) : null;
  const startOffset = q.get("startOffset");
  const endOffset = q.get("endOffset");
  const entries: { key: string; item?: ObjectResource; prefix?: string }[] = [];
  const seen = new Set<string>();
  for (const o of await store.listObjects(bucket)) {
    if (!o.name.startsWith(prefix)) continue;
    if (startOffset && o.name < startOffset) continue;
    if (endOffset && o.name >= endOffset) continue;
    const rest = o.name.slice(prefix.length);
    const d = delimiter ? rest.indexOf(delimiter) : -1;
    if (d >= 0) {
      const p = prefix + rest.slice(0, d + delimiter.length);
      if (!seen.has(p)) {
        seen.add(p);
        entries.push({ key: p, prefix: p });
      }
    } else {
      entries.push({ key: o.name, item: o });
    }
  }
  entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const rest = after === null ? entries : entries.filter((e) => e.key > after);
  const page = rest.slice(0, max);
  const out: Record<string, unknown> = { kind: "storage#objects" };
  const items = page.filter((e) => e.item).map((e) => e.item);
  const prefixes = page.filter((e) => e.prefix).map((e) => e.prefix);
  if (items.length) out.items = items;
  if (prefixes.length) out.prefixes = prefixes;
  if (rest.length > max) out.nextPageToken = btoa(page[page.length - 1].key);
  return out;
}

// ---- admin ----

async function admin(req: Request, u: URL, faults: FaultScript): Promise<Response> {
  if (u.pathname === "/_emulator/faults") {
    if (req.method === "POST") {
      const rule = await req.json() as Omit<FaultRule, "times"> & { times?: number | string | null };
      const times = rule.times === null || rule.times === "Infinity"
        ? Infinity
        : rule.times as number | undefined;
      faults.add({ ...rule, times });
      return json({ ok: true });
    }
    if (req.method === "DELETE") {
      faults.clear();
      return json({ ok: true });
    }
    return json({ fired: faults.fired });
  }
  await req.body?.cancel();
  return json({ ok: true, emulator: "actshard-gcs" });
}

// ---- helpers ----

function preconditions(q: URLSearchParams): Preconditions {
  return {
    ifGenerationMatch: q.get("ifGenerationMatch"),
    ifGenerationNotMatch: q.get("ifGenerationNotMatch"),
    ifMetagenerationMatch: q.get("ifMetagenerationMatch"),
    ifMetagenerationNotMatch: q.get("ifMetagenerationNotMatch"),
  };
}

function googHash(h: Headers): { crc32c?: string; md5?: string } {
  const out: { crc32c?: string; md5?: string } = {};
  for (const part of (h.get("x-goog-hash") ?? "").split(",")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (k === "crc32c") out.crc32c = v;
    if (k === "md5") out.md5 = v;
  }
  return out;
}

function parseContentRange(h: string | null): { start?: number; end?: number; total?: number } {
  if (!h) return {};
  const m = /^bytes (\*|(\d+)-(\d+))\/(\*|\d+)$/.exec(h.trim());
  if (!m) throw new GcsHttpError(400, `bad Content-Range: ${h}`);
  return {
    start: m[2] === undefined ? undefined : Number(m[2]),
    end: m[3] === undefined ? undefined : Number(m[3]),
    total: m[4] === "*" ? undefined : Number(m[4]),
  };
}

function parseMultipart(body: Uint8Array, contentType: string): { contentType?: string; body: Uint8Array }[] {
  const m = /boundary="?([^";]+)"?/.exec(contentType);
  if (!m) throw new GcsHttpError(400, "multipart upload without a boundary");
  const te = new TextEncoder();
  const delim = te.encode(`--${m[1]}`);
  const parts: { contentType?: string; body: Uint8Array }[] = [];
  let pos = indexOf(body, delim, 0);
  while (pos >= 0) {
    const startHeaders = pos + delim.length;
    if (body[startHeaders] === 0x2d && body[startHeaders + 1] === 0x2d) break; // closing "--"
    const headEnd = indexOf(body, te.encode("\r\n\r\n"), startHeaders);
    if (headEnd < 0) break;
    const head = new TextDecoder().decode(body.subarray(startHeaders, headEnd));
    const next = indexOf(body, delim, headEnd + 4);
    if (next < 0) break;
    const ct = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1];
    parts.push({ contentType: ct, body: body.subarray(headEnd + 4, next - 2) }); // minus the CRLF before --
    pos = next;
  }
  if (parts.length < 2) {
    throw new GcsHttpError(400, "multipart upload needs a metadata part and a media part");
  }
  return parts;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function json(v: unknown, status = 200): Response {
  return new Response(JSON.stringify(v), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8" },
  });
}

function errorResponse(e: GcsHttpError): Response {
  return json(
    {
      error: {
        code: e.status,
        message: e.message,
        errors: [{ message: e.message, domain: "global", reason: e.reason }],
      },
    },
    e.status,
  );
}

// Re-exported for tests that want to check object bytes without the client.
export { hashFile };
