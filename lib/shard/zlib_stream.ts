/**
 * A node:zlib decompressor as a pulled web `ReadableStream` (input is read only as output is wanted: bounded
 * memory), used by the codec table's `decompress` (codecs.ts) on the calling thread. Also routes Deno's uncaught
 * zstd checksum errors to the stream they belong to.
 *
 * @example
 * ```ts
 * import { createGunzip, gzipSync } from "node:zlib";
 * import { zlibStream } from "./zlib_stream.ts";
 * const input = new Blob([gzipSync(new Uint8Array(10))]).stream();
 * const out = new Uint8Array(await new Response(zlibStream(createGunzip(), input, false)).arrayBuffer());
 * console.log(out.length); // 10
 * ```
 */
import type { Transform } from "node:stream";

/**
 * Deno 2.9's zstd decompressor throws a failed frame check ("Zstd decompress error: Restored data doesn't match
 * checksum") from a nextTick callback instead of emitting "error", which would end the process with a stack
 * trace. While zstd streams are open, such uncaught errors are routed to them (each fails as corrupt data).
 */
const zstdOpen = new Set<(e: unknown) => void>();
function onUncaughtZstd(ev: ErrorEvent): void {
  const e = ev.error;
  if (!(e instanceof Error) || !/^Zstd decompress/.test(e.message) || zstdOpen.size === 0) return;
  ev.preventDefault();
  for (const fail of [...zstdOpen]) fail(e);
}
function trackZstd(fail: (e: unknown) => void): () => void {
  if (zstdOpen.size === 0) globalThis.addEventListener("error", onUncaughtZstd);
  zstdOpen.add(fail);
  return () => {
    if (zstdOpen.delete(fail) && zstdOpen.size === 0) {
      globalThis.removeEventListener("error", onUncaughtZstd);
    }
  };
}

/**
 * `input` through a node:zlib transform, pulled: input is read only as output is wanted (bounded memory).
 * Not `Duplex.toWeb`: its adapter keeps enqueueing output after the stream was cancelled or errored (a decoder
 * that stopped at a corrupt record), and the TypeError it then throws is uncaught — it took the whole process
 * down with a stack trace.
 */
export function zlibStream(
  z: Transform,
  input: ReadableStream<Uint8Array>,
  zstd: boolean,
): ReadableStream<Uint8Array> {
  const reader = input.getReader();
  const ready: Uint8Array[] = [];
  let failed: unknown = null;
  let ended = false;
  let inputDone = false;
  const waiting = new Set<() => void>();
  const poke = () => {
    for (const w of [...waiting]) w();
    waiting.clear();
  };
  /** Until `start` calls back, or output, an error or the end arrives (zlib drops write callbacks on error). */
  const until = (start: (done: () => void) => void) =>
    new Promise<void>((ok) => {
      waiting.add(ok);
      start(ok);
    });
  z.on("data", (b: Uint8Array) => {
    ready.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    poke();
  });
  const fail = (e: unknown) => {
    failed ??= e;
    untrack();
    poke();
  };
  const untrack = zstd ? trackZstd(fail) : () => {};
  z.on("error", fail);
  z.on("end", () => {
    ended = true;
    untrack();
    poke();
  });
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      for (;;) {
        if (ready.length) return ctl.enqueue(ready.shift()!);
        if (failed) throw failed;
        if (ended) return ctl.close();
        if (inputDone) {
          await until(() => {});
          continue;
        }
        const r = await reader.read();
        if (r.done) {
          inputDone = true;
          z.end();
          continue;
        }
        await until((done) => z.write(r.value, () => done()));
      }
    },
    cancel(reason) {
      untrack();
      z.destroy();
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
