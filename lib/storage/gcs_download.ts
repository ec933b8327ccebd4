/**
 * Downloads for {@link GcsStore}: bytes [start, end) of an object as a stream of chunks, resumed with `Range`
 * (pinned to the generation first seen) after a dropped, stalled or truncated body, within the retry deadline
 * (which restarts whenever bytes arrive); a whole-object read is checked against the object's CRC-32C. A server
 * that ignores Range (200 for a resumed read) is handled by skipping what already arrived.
 */
import { Crc32c, crc32cBase64, crc32cFromBase64 } from "../util/crc32c.ts";
import type { GcsStore } from "./gcs.ts";
import { GcsRequestError } from "./gcs_transport.ts";

/**
 * Bytes [start, end) of an object (end undefined = to its end), resuming with `Range` after a dropped,
 * stalled or truncated body, within the retry deadline (which restarts whenever bytes arrive). A whole-object
 * read is checked against the object's CRC-32C.
 */
export async function* downloadRange(
  store: GcsStore,
  name: string,
  start: number,
  end: number | undefined,
): AsyncGenerator<Uint8Array> {
  const t = store.transport;
  let pos = start;
  let generation: string | undefined;
  let crcWant: number | undefined;
  const crc = start === 0 && end === undefined ? new Crc32c() : null;
  let lastProgress = Date.now();
  let delay = t.retry.initialDelayMs;
  for (let attempt = 1;; attempt++) {
    if (end !== undefined && pos >= end) return;
    const r = await t.retrying(
      "download",
      store.objectUrl(name),
      () =>
        t.request("GET", t.jsonUrl(store.objectPath(name), { alt: "media", generation }), {
          headers: pos > start || end !== undefined || pos > 0
            ? { range: `bytes=${pos}-${end === undefined ? "" : end - 1}` }
            : {},
        }),
    );
    generation ??= r.res.headers.get("x-goog-generation") ?? undefined;
    if (crc && crcWant === undefined) crcWant = hashHeader(r.res.headers.get("x-goog-hash"));
    // A server that ignores Range answers 200 with the whole object: skip what we have.
    let skip = r.res.status === 200 ? pos : 0;
    try {
      for await (let c of r.body()) {
        if (skip > 0) {
          const k = Math.min(skip, c.byteLength);
          skip -= k;
          c = c.subarray(k);
          if (c.byteLength === 0) continue;
        }
        if (end !== undefined && pos + c.byteLength > end) c = c.subarray(0, end - pos);
        pos += c.byteLength;
        crc?.update(c);
        lastProgress = Date.now();
        delay = t.retry.initialDelayMs;
        yield c;
      }
    } catch (e) {
      if (!(e instanceof GcsRequestError) || !e.transient) throw e;
      const left = t.retry.deadlineMs - (Date.now() - lastProgress);
      const wait = Math.round(delay * (0.5 + Math.random() / 2));
      if (attempt >= t.retry.maxAttempts || wait >= left) {
        throw new GcsRequestError(
          `${e.message} (gave up after ${attempt} attempts)`,
          0,
          false,
          e.cause_kind,
        );
      }
      t.notify({
        what: "download",
        where: store.objectUrl(name),
        attempt,
        reason: `${e.message} at byte ${pos}`,
        delayMs: wait,
        deadlineLeftMs: left,
      });
      await new Promise((res) => setTimeout(res, wait));
      delay = Math.min(delay * 2, t.retry.maxDelayMs);
      continue;
    }
    if (crc && crcWant !== undefined && crc.value() !== crcWant) {
      throw new GcsRequestError(
        `downloaded bytes do not match the object's CRC-32C (${crc32cBase64(crc.value())} ≠ ${
          crc32cBase64(crcWant)
        }): damaged in transit`,
        0,
        false,
        "checksum",
      );
    }
    return;
  }
}

function hashHeader(h: string | null): number | undefined {
  for (const part of (h ?? "").split(",")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === "crc32c") {
      try {
        return crc32cFromBase64(part.slice(i + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
