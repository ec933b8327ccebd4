/**
 * Object reads in the GCS emulator: media downloads (whole or ranged, with `truncate`/`reset` faults cutting the
 * body halfway, `stall-body` sending half and then nothing) and listing (prefix, delimiter, start/end offsets, pages).
 */
import type { FaultRule } from "./faults.ts";
import { type EmulatorStore, GcsHttpError, type ObjectResource } from "./store.ts";

/** The media of object `o`, honouring a `Range` header; a `truncate` or `reset` fault cuts the body halfway. */
export function download(
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
    "x-goog-stored-content-encoding": o.contentEncoding ?? "identity",
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
  const stallBody = fault?.kind === "stall-body";
  const limit = truncate || stallBody ? Math.floor((end - start) / 2) : end - start;
  const body = fileRange(
    store.dataPath(o.bucket, o.generation),
    start,
    limit,
    truncate ? "fail" : stallBody ? req.signal : "close",
  );
  return new Response(body, { status, headers });
}

/**
 * `length` bytes of a file from `start`, then: "close" (the end), "fail" (the stream errors: a cut connection),
 * or, given the request's signal, nothing more until the client gives up (a body that stalls halfway).
 */
function fileRange(
  path: string,
  start: number,
  length: number,
  then: "close" | "fail" | AbortSignal,
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
        if (then === "fail") c.error(new Error("emulator: injected truncated body"));
        else if (then === "close") c.close();
        else {
          await new Promise<void>((r) => then.addEventListener("abort", () => r(), { once: true }));
          c.error(new Error("emulator: stalled body abandoned by the client"));
        }
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

/** One page of `objects.list` for `bucket` with the query's prefix, delimiter, offsets and page token. */
export async function listPage(
  store: EmulatorStore,
  bucket: string,
  q: URLSearchParams,
  pageSize?: number,
): Promise<unknown> {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const asked = Math.max(1, Math.min(1000, Number(q.get("maxResults") ?? 1000) || 1000));
  const max = pageSize ? Math.min(asked, Math.max(1, pageSize)) : asked;
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
