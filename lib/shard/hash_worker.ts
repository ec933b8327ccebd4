/**
 * A SHA-256 Worker of the file sink (see file_sink.ts): hashes each shard file's bytes as the sink Worker writes
 * them. SHA-256 of one file cannot be split, so it was the one serial stage that capped a writer (≈ 1.3–1.8 GB/s
 * on one core); here, the sink only orders and writes, and two of these take alternate files, so shard N is
 * still being hashed while shard N+1 is written. Each chunk comes here once its write has returned (it is hot in
 * the CPU's cache) and goes back to the sink when hashed, which hands it back to the writer for reuse. It was
 * read back from the file before: the same bytes out of the page cache (not the disk), for ≈ 0.2 CPU-s/GB of
 * copies; a file changed under the writer is still caught, by its size at the finish (file_sink_worker.ts).
 *
 * Messages, from the sink Worker through a MessagePort, in order per file:
 * - `{op: "open", file}`: start a file;
 * - `{op: "data", file, id, data, back}` → `{op: "hashed", id, data}`: the next bytes of the file; `data` is
 *   transferred back only with `back` (a buffer the writer reuses: a chunk of its own, or a handed-over array
 *   for the reader's next records, reusable_buffers.ts); others (compressed output) are freed here;
 * - `{op: "end", file}` → `{op: "digest", file, sha256}` (hex) or `{op: "digest", file, error}`;
 * - `{op: "abort", file}`: drop the file without an answer.
 */
import { createHash, type Hash } from "node:crypto";

type Msg =
  | { op: "open" | "end" | "abort"; file: number }
  | { op: "data"; file: number; id: number; data: Uint8Array; back?: boolean };

const files = new Map<number, Hash>();

function handle(port: MessagePort, m: Msg): void {
  if (m.op === "open") files.set(m.file, createHash("sha256"));
  else if (m.op === "data") {
    files.get(m.file)?.update(m.data); // an unknown file (aborted) still gets its buffer back
    if (m.back) port.postMessage({ op: "hashed", id: m.id, data: m.data }, [m.data.buffer]);
    else port.postMessage({ op: "hashed", id: m.id }); // not reused by the sender: freed here
  } else {
    const sha = files.get(m.file);
    files.delete(m.file);
    if (m.op === "abort") return;
    if (sha) port.postMessage({ op: "digest", file: m.file, sha256: sha.digest("hex") });
    else port.postMessage({ op: "digest", file: m.file, error: `file ${m.file} is not being hashed` });
  }
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
ctx.onmessage = (ev: MessageEvent<{ op: "port"; port: MessagePort }>) => {
  const port = ev.data.port;
  port.onmessage = (e: MessageEvent<Msg>) => handle(port, e.data);
};
