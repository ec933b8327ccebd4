/**
 * A SHA-256 Worker of the file sink (see file_sink.ts): hashes a shard file by reading it back behind the sink
 * Worker, which writes it. SHA-256 of one file cannot be split, so it was the one serial stage that capped a
 * writer (≈ 1.3–1.8 GB/s on one core); read back here, the sink only orders and writes, and two of these take
 * alternate files, so shard N is still being hashed while shard N+1 is written. The bytes read are the ones
 * just written (page cache, ≈ 0.1 CPU-s/GB for the copy), and what is hashed is the file as the kernel has it.
 *
 * Messages, from the sink Worker through a MessagePort, in order per file:
 * - `{op: "open", file, path}`: open `path` for reading (the sink has created it);
 * - `{op: "upto", file, bytes}`: the first `bytes` bytes are written (hashed once 4 MiB are pending);
 * - `{op: "end", file, bytes}` → `{file, sha256}` (hex) or `{file, error}`: hash up to `bytes`, close;
 * - `{op: "abort", file}`: close without an answer.
 */
import { createHash, type Hash } from "node:crypto";

type Msg =
  | { op: "open"; file: number; path: string }
  | { op: "upto" | "end"; file: number; bytes: number }
  | { op: "abort"; file: number };

interface Hashing {
  f: Deno.FsFile | null;
  path: string;
  sha: Hash;
  hashed: number;
  error?: string;
}

/** Read-back buffer, and the least a read catches up by (fewer, larger reads). */
const READ_BYTES = 4 << 20;
const buf = new Uint8Array(READ_BYTES);
const files = new Map<number, Hashing>();
const errorText = (e: unknown) => e instanceof Error ? e.message : String(e);

/** Hash `h`'s file from where it stopped up to byte `upto`. */
function catchUp(h: Hashing, upto: number): void {
  if (h.error) return;
  try {
    while (h.hashed < upto) {
      const want = Math.min(READ_BYTES, upto - h.hashed);
      const n = h.f!.readSync(buf.subarray(0, want));
      if (n === null || n === 0) throw new Error(`file ends at byte ${h.hashed}, ${upto} were written`);
      h.sha.update(buf.subarray(0, n));
      h.hashed += n;
    }
  } catch (e) {
    h.error = `reading back ${h.path} to hash it: ${errorText(e)}`;
  }
}

function close(h: Hashing): void {
  try {
    h.f?.close();
  } catch { /* already closed */ }
}

function handle(port: MessagePort, m: Msg): void {
  if (m.op === "open") {
    const h: Hashing = { f: null, path: m.path, sha: createHash("sha256"), hashed: 0 };
    try {
      h.f = Deno.openSync(m.path, { read: true });
    } catch (e) {
      h.error = `opening ${m.path} to hash it: ${errorText(e)}`;
    }
    files.set(m.file, h);
    return;
  }
  const h = files.get(m.file);
  if (!h) {
    return m.op === "end"
      ? port.postMessage({ file: m.file, error: `file ${m.file} is not open` })
      : undefined;
  }
  if (m.op === "abort") {
    files.delete(m.file);
    return close(h);
  }
  if (m.op === "upto") {
    if (m.bytes - h.hashed >= READ_BYTES) catchUp(h, m.bytes);
    return;
  }
  files.delete(m.file);
  catchUp(h, m.bytes);
  close(h);
  if (h.error) port.postMessage({ file: m.file, error: h.error });
  else port.postMessage({ file: m.file, sha256: h.sha.digest("hex") });
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
ctx.onmessage = (ev: MessageEvent<{ op: "port"; port: MessagePort }>) => {
  const port = ev.data.port;
  port.onmessage = (e: MessageEvent<Msg>) => handle(port, e.data);
};
