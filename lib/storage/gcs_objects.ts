/**
 * GCS objects' facts as this store compares them: a local file's size and CRC-32C, an object resource as an
 * {@link ObjectInfo}, and the byte joins the JSON API's bodies need.
 *
 * @example
 * ```ts
 * import { fileFacts } from "./gcs_objects.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "123456789");
 * console.log(await fileFacts(path)); // { size: 9, crc32c: 3808858755 } (0xe3069283, CRC-32C's check value)
 * await Deno.remove(path);
 * ```
 *
 * @module
 */
import { Crc32c, crc32cFromBase64 } from "../util/crc32c.ts";
import type { ObjectInfo } from "./types.ts";

/** Local facts of a file to upload. */
export interface LocalFileFacts {
  size: number;
  crc32c: number;
}

/**
 * Size and CRC-32C of a local file, streamed.
 *
 * @example
 * ```ts
 * import { fileFacts } from "./gcs_objects.ts";
 * const path = await Deno.makeTempFile();
 * console.log(await fileFacts(path)); // { size: 0, crc32c: 0 }
 * await Deno.remove(path);
 * ```
 */
export async function fileFacts(path: string): Promise<LocalFileFacts> {
  const c = new Crc32c();
  let size = 0;
  const f = await Deno.open(path);
  for await (const chunk of f.readable) {
    c.update(chunk);
    size += chunk.length;
  }
  return { size, crc32c: c.value() };
}

/**
 * An object resource → ObjectInfo with the name relative to the root (`cut` = prefix length + 1).
 *
 * @example
 * ```ts
 * import { toInfo } from "./gcs_objects.ts";
 * const info = toInfo({ name: "runs/a/shard_0001.pkl", size: "9", crc32c: "4waSgw==", generation: "7" }, 7);
 * console.log(info); // { name: "shard_0001.pkl", size: 9, crc32c: 3808858755, generation: "7" }
 * ```
 */
export function toInfo(m: Record<string, unknown>, cut: number): ObjectInfo {
  return {
    name: String(m.name).slice(cut),
    size: Number(m.size),
    crc32c: typeof m.crc32c === "string" ? crc32cFromBase64(m.crc32c) : undefined,
    generation: m.generation === undefined ? undefined : String(m.generation),
  };
}

/**
 * Concatenate byte arrays (one part: that part itself, not a copy).
 *
 * @example
 * ```ts
 * import { concat } from "./gcs_objects.ts";
 * console.log(concat([new Uint8Array([1]), new Uint8Array([2, 3])])); // Uint8Array(3) [ 1, 2, 3 ]
 * ```
 */
export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
