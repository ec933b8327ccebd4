/**
 * Uploads in the GCS emulator: single-request media and multipart uploads, and resumable sessions (create,
 * chunks with Content-Range, status queries, re-sent bytes skipped, commit when complete). A `reset` fault on a
 * chunk keeps about half of it and drops the connection, as an interrupted request may on GCS.
 */
import type { FaultRule } from "./faults.ts";
import { type EmulatorStore, GcsHttpError, type ObjectResource } from "./store.ts";
import { json, preconditions } from "./http.ts";

/** `POST /upload/storage/v1/b/BUCKET/o?uploadType=media|multipart|resumable`. */
export async function uploadInsert(
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
      contentEncoding: meta.contentEncoding,
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
      contentEncoding: meta.contentEncoding,
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

/** `PUT` of a resumable session `id`: a chunk, a status query, or the last chunk (commits the object). */
export async function uploadChunk(
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
        contentEncoding: sess.contentEncoding,
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

// ---- request parsing ----

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
