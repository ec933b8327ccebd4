/**
 * One resumable upload (JSON API `uploadType=resumable`): a session created with `ifGenerationMatch=0`, the file
 * sent in chunks (`Content-Range: bytes a-b/total`, the last one with `X-Goog-Hash: crc32c=…`), and after any
 * transient failure a status query (`bytes *\/total`) that says where to continue — so a stalled or reset chunk
 * costs that chunk, not the file. A session the server forgot (404/410) starts over. The retry deadline restarts
 * after every chunk the server confirms. Used by {@link GcsStore.uploadFile}.
 */
import { crc32cBase64 } from "../util/crc32c.ts";
import type { GcsStore, LocalFileFacts } from "./gcs.ts";
import { GcsRequestError, type WatchedResponse } from "./gcs_transport.ts";

/**
 * Upload `localPath` as `name` under the store's prefix; returns the object resource GCS answered with, or null
 * when the object already existed (412: the caller compares it with the local file).
 */
export async function uploadResumable(
  store: GcsStore,
  localPath: string,
  name: string,
  local: LocalFileFacts,
  contentType = "application/octet-stream",
): Promise<Record<string, unknown> | null> {
  const t = store.transport;
  const where = store.objectUrl(name);
  const total = local.size;
  const chunk = Math.max(256 * 1024, Math.floor(store.chunkSize / (256 * 1024)) * 256 * 1024);
  let session: string | null = null;
  let offset = 0;
  let needStatus = false;
  const f = await Deno.open(localPath);
  try {
    return await t.retrying("upload", where, async (ctx) => {
      try {
        if (session === null) {
          session = await startSession(store, name, local, contentType);
          offset = 0;
          needStatus = false;
        } else if (needStatus) {
          const r = await t.request("PUT", session, {
            headers: { "content-range": `bytes */${total}` },
            body: new Uint8Array(),
            okStatus: [308],
          });
          const a = await answer(r);
          if (a.resource) return a.resource;
          offset = a.next;
          needStatus = false;
        }
        for (;;) {
          const end = Math.min(total, offset + chunk);
          const data = await readAt(f, offset, end - offset);
          const last = end === total;
          const headers: Record<string, string> = {
            "content-range": total === 0 ? "bytes */0" : `bytes ${offset}-${end - 1}/${total}`,
          };
          if (last) headers["x-goog-hash"] = `crc32c=${crc32cBase64(local.crc32c)}`;
          const r = await t.request("PUT", session, { headers, body: data, okStatus: [308] });
          const a = await answer(r);
          if (a.resource) return a.resource;
          if (a.next <= offset && !last) {
            throw new GcsRequestError(`the server kept no bytes of the chunk at ${offset}`, 503, true);
          }
          offset = a.next;
          ctx.progressed();
          if (last && offset >= total) {
            throw new GcsRequestError(
              "the server did not finalize the upload after the last chunk",
              503,
              true,
            );
          }
        }
      } catch (e) {
        if (e instanceof GcsRequestError) {
          if (e.status === 412) return null; // exists: the caller compares
          if (session !== null && (e.status === 404 || e.status === 410)) {
            session = null; // the session expired or was forgotten: start over
            throw new GcsRequestError(`upload session lost (${e.status}); starting over`, 503, true);
          }
          if (e.transient) needStatus = session !== null;
        }
        throw e;
      }
    });
  } finally {
    f.close();
  }
}

/** A finished upload's resource (200/201), or, for a 308, the offset to continue at (bytes the server has). */
async function answer(r: WatchedResponse): Promise<{ resource?: Record<string, unknown>; next: number }> {
  if (r.res.status === 308) {
    const m = /bytes=0-(\d+)/.exec(r.res.headers.get("range") ?? "");
    r.release();
    return { next: m ? Number(m[1]) + 1 : 0 };
  }
  return { resource: await r.json(), next: -1 };
}

async function startSession(
  store: GcsStore,
  name: string,
  local: LocalFileFacts,
  contentType: string,
): Promise<string> {
  const t = store.transport;
  const url = t.uploadUrl(`/b/${encodeURIComponent(store.bucket)}/o`, {
    uploadType: "resumable",
    name: store.key(name),
    ifGenerationMatch: 0,
  });
  const r = await t.request("POST", url, {
    headers: {
      "content-type": "application/json; charset=UTF-8",
      "x-upload-content-type": contentType,
      "x-upload-content-length": String(local.size),
    },
    body: new TextEncoder().encode(JSON.stringify({ name: store.key(name), contentType })),
  });
  const loc = r.res.headers.get("location");
  r.release();
  if (!loc) throw new GcsRequestError("the server opened no upload session (no Location)", 503, true);
  return loc;
}

async function readAt(f: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await f.seek(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < length) {
    const k = await f.read(buf.subarray(n));
    if (k === null) {
      throw new Error(`file shorter than its recorded size (${offset + n} < ${offset + length})`);
    }
    n += k;
  }
  return buf;
}
