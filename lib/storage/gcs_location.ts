/**
 * Where a dataset lives on GCS: `gs://bucket/prefix` locations, bucket names, and the API endpoint to talk to
 * (an emulator's, or Google's).
 *
 * @example
 * ```ts
 * import { gcsEndpoint, parseGsUrl } from "./gcs_location.ts";
 * console.log(parseGsUrl("gs://my-bucket/runs/a/")); // { bucket: "my-bucket", prefix: "runs/a" }
 * console.log(gcsEndpoint("localhost:4443")); // { url: "http://localhost:4443", emulator: true }
 * ```
 *
 * @module
 */
import { ActshardError } from "../errors.ts";

/** GCS bucket names: lowercase letters, digits, `-`, `_`, `.`; starting and ending with a letter or digit. */
const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

/**
 * Parse `gs://bucket[/prefix]`; the prefix has no leading/trailing "/". Throws a usage error otherwise.
 *
 * @example
 * ```ts
 * import { parseGsUrl } from "./gcs_location.ts";
 * console.log(parseGsUrl("gs://b-1")); // { bucket: "b-1", prefix: "" }
 * ```
 */
export function parseGsUrl(url: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(url.trim());
  if (!m || !BUCKET_RE.test(m[1])) {
    throw new ActshardError(`not a valid gs:// location: "${url}"`, {
      kind: "usage",
      hint: "write it as gs://BUCKET/PREFIX (bucket: lowercase letters, digits, - _ .)",
    });
  }
  return { bucket: m[1], prefix: (m[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

/**
 * True for a valid GCS bucket name.
 *
 * @example
 * ```ts
 * import { isBucketName } from "./gcs_location.ts";
 * console.log(isBucketName("my-bucket"), isBucketName("My_Bucket")); // true false
 * ```
 */
export function isBucketName(name: string): boolean {
  return BUCKET_RE.test(name);
}

/**
 * The endpoint to use: explicit, else STORAGE_EMULATOR_HOST, else Google's; and whether it is an emulator.
 *
 * @example
 * ```ts
 * import { gcsEndpoint } from "./gcs_location.ts";
 * console.log(gcsEndpoint("http://127.0.0.1:9000/storage/v1/").url); // "http://127.0.0.1:9000"
 * ```
 */
export function gcsEndpoint(apiEndpoint?: string): { url: string; emulator: boolean } {
  let emu = apiEndpoint;
  if (!emu) {
    try {
      emu = Deno.env.get("STORAGE_EMULATOR_HOST") || undefined;
    } catch { /* no env access */ }
  }
  if (!emu) return { url: "https://storage.googleapis.com", emulator: false };
  if (!/^https?:\/\//.test(emu)) emu = `http://${emu}`;
  return { url: emu.replace(/\/+$/, "").replace(/\/storage\/v1$/, ""), emulator: true };
}
