/**
 * URL → operation for the GCS emulator. Accepts the JSON API under `/storage/v1/…` (what `apiEndpoint` gives)
 * and directly under `/…` (what `STORAGE_EMULATOR_HOST` gives the client: it uses the host as the base URL),
 * uploads under `/upload/storage/v1/…`, downloads under `/download/storage/v1/…`, and `/_emulator/…` for admin.
 * Object names arrive percent-encoded in one path segment ("a%2Fb").
 */
import type { FaultOp } from "./faults.ts";

/** A recognised request. */
export interface Route {
  kind:
    | "bucket-insert"
    | "bucket-list"
    | "bucket-get"
    | "object-list"
    | "object-get"
    | "object-patch"
    | "object-delete"
    | "upload-insert"
    | "upload-chunk"
    | "admin"
    | "unknown";
  /** Fault-matching class of the request. */
  op: Exclude<FaultOp, "any"> | "admin" | "unknown";
  bucket?: string;
  object?: string;
  /** Came in under /download/ (media regardless of alt). */
  download?: boolean;
}

/** Classify a request. */
export function route(method: string, u: URL): Route {
  let p = u.pathname;
  if (p.startsWith("/_emulator")) return { kind: "admin", op: "admin" };
  if (p.startsWith("/upload/storage/v1/b/")) {
    const seg = p.slice("/upload/storage/v1/b/".length).split("/");
    const bucket = decodeURIComponent(seg[0]);
    const object = u.searchParams.get("name") ?? undefined;
    if (method === "POST" && seg[1] === "o") {
      const t = u.searchParams.get("uploadType");
      return {
        kind: "upload-insert",
        op: t === "resumable" ? "upload-start" : "upload-simple",
        bucket,
        object,
      };
    }
    if (method === "PUT" && u.searchParams.get("upload_id")) {
      return { kind: "upload-chunk", op: "upload-chunk", bucket, object };
    }
    return { kind: "unknown", op: "unknown" };
  }
  let download = false;
  if (p.startsWith("/download/storage/v1/")) {
    p = p.slice("/download/storage/v1".length);
    download = true;
  } else if (p.startsWith("/storage/v1/")) p = p.slice("/storage/v1".length);
  const seg = p.split("/").slice(1); // ["b", bucket, "o", object]
  if (seg[0] !== "b") return { kind: "unknown", op: "unknown" };
  if (seg.length === 1 || (seg.length === 2 && seg[1] === "")) {
    return method === "POST"
      ? { kind: "bucket-insert", op: "bucket" }
      : { kind: "bucket-list", op: "bucket" };
  }
  const bucket = decodeURIComponent(seg[1]);
  if (seg.length === 2) return method === "GET" ? { kind: "bucket-get", op: "bucket", bucket } : unknown();
  if (seg[2] !== "o") return unknown();
  if (seg.length === 3 || (seg.length === 4 && seg[3] === "")) {
    return method === "GET" ? { kind: "object-list", op: "list", bucket } : unknown();
  }
  const object = decodeURIComponent(seg.slice(3).join("/"));
  if (method === "GET") {
    const media = download || u.searchParams.get("alt") === "media";
    return { kind: "object-get", op: media ? "download" : "metadata", bucket, object, download };
  }
  if (method === "PATCH" || method === "PUT") return { kind: "object-patch", op: "metadata", bucket, object };
  if (method === "DELETE") return { kind: "object-delete", op: "delete", bucket, object };
  return unknown();
}

function unknown(): Route {
  return { kind: "unknown", op: "unknown" };
}
