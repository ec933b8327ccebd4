/**
 * Worker behind {@link FileSink} (file_sink.ts): owns the shard files being written, so hashing and write
 * syscalls never run on the main thread, which only encodes records and hands bytes over. It computes SHA-256
 * and combines chunk CRC-32Cs (computed by the CRC pool, crc_worker.ts, or by the compression Workers) into each
 * file's. Messages arrive from the main thread and, for writes whose CRC the pool computed, from the pool's
 * ports; each carries `seq`, its place in the sender's order, and they are handled in that order:
 * - `{op: "open", file, path}`: create/truncate `path` as file `file`;
 * - `{op: "write", file, id, data, crc}` → `{id, input}`: hash and append `data` (`crc` = its CRC-32C, computed
 *   here when absent; `input` handed back for reuse);
 * - `{op: "finish", file, id}` → `{id, bytes, crc, sha256}` once the file is fsynced and closed. The fsync runs
 *   on Deno's blocking pool and does not hold up later messages: the next shard's writes proceed meanwhile;
 * - `{op: "abort", file, id}` → `{id}`: close the file (then the sender removes it).
 * Any failure answers `{id, error}` and poisons the file (later messages for it answer the same error).
 */
import { createHash, type Hash } from "node:crypto";
import { crc32cCombine } from "./crc_combine.ts";
import { crc32c } from "../util/crc32c.ts";

type Msg =
  & { seq: number }
  & (
    | { op: "open"; file: number; path: string }
    | { op: "write"; file: number; id: number; data: Uint8Array; crc?: number }
    | { op: "finish"; file: number; id: number }
    | { op: "abort"; file: number; id: number }
  );

interface OpenFile {
  f: Deno.FsFile;
  path: string;
  /** Writes run on Deno's blocking pool, in order, while this thread hashes the next chunk. */
  writes: Promise<void>;
  sha: Hash;
  crc: number;
  bytes: number;
  error?: string;
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
const files = new Map<number, OpenFile>();
const errorText = (e: unknown) => e instanceof Error ? e.message : String(e);

/**
 * Bytes per write syscall, at most. The kernel's buffered write was measured here to cost several times more CPU
 * per byte from 2 MiB up (≈ 1.5–2.5 against ≈ 0.3–0.4 s/GB of the blocking pool's CPU); 1 MiB writes (the
 * codecs' chunks) measured ≈ 10 % cheaper than 256 KiB ones in the `shard` stage, in A/B reps on a quiet box.
 */
const WRITE_BYTES = 1 << 20;

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await f.write(b.subarray(o, Math.min(b.length, o + WRITE_BYTES)));
}

/** Messages that arrived ahead of their turn (bounded by the sender's chunks in flight). */
const early = new Map<number, Msg>();
let nextSeq = 0;
function arrive(m: Msg): void {
  early.set(m.seq, m);
  for (let next = early.get(nextSeq); next; next = early.get(nextSeq)) {
    early.delete(nextSeq++);
    handle(next);
  }
}

// Messages come from the main thread and through the CRC Workers' ports (file_sink.ts); each port arrives first.
ctx.onmessage = (ev: MessageEvent<{ op: "port"; port: MessagePort } | Msg>) => {
  const m = ev.data;
  if (m.op === "port") m.port.onmessage = (e: MessageEvent<Msg>) => arrive(e.data);
  else arrive(m);
};

function handle(m: Msg): void {
  if (m.op === "open") {
    const o: OpenFile = {
      f: null as unknown as Deno.FsFile,
      path: m.path,
      writes: Promise.resolve(),
      sha: createHash("sha256"),
      crc: 0,
      bytes: 0,
    };
    try {
      o.f = Deno.openSync(m.path, { write: true, create: true, truncate: true });
    } catch (e) {
      o.error = `cannot create ${m.path}: ${errorText(e)}`; // answered to this file's next message
    }
    files.set(m.file, o);
    return;
  }
  const o = files.get(m.file);
  if (m.op === "abort") {
    files.delete(m.file);
    const close = () => {
      try {
        o?.f?.close();
      } catch { /* already closed */ }
      ctx.postMessage({ id: m.id });
    };
    return void (o ? o.writes.then(close, close) : close());
  }
  if (!o) return ctx.postMessage({ id: m.id, error: `file ${m.file} is not open` });
  if (o.error) return ctx.postMessage({ id: m.id, error: o.error });
  if (m.op === "write") {
    try {
      o.sha.update(m.data);
      // No CRC and no CRC pool (file_sink.ts): ISA-L loaded, so it is cheapest here.
      o.crc = crc32cCombine(o.crc, m.crc ?? crc32c(m.data), m.data.length);
      o.bytes += m.data.length;
      const data = m.data;
      o.writes = o.writes.then(() => writeAll(o.f, data)).then(
        () => ctx.postMessage({ id: m.id, input: data }, [data.buffer]),
        (e) => {
          o.error ??= `writing ${o.path}: ${errorText(e)}`;
          ctx.postMessage({ id: m.id, error: o.error });
        },
      );
    } catch (e) {
      o.error = `writing ${o.path}: ${errorText(e)}`;
      ctx.postMessage({ id: m.id, error: o.error });
    }
    return;
  }
  files.delete(m.file);
  o.writes.then(() => {
    if (o.error) throw new Error(o.error);
    return o.f.sync();
  }).then(
    () => {
      o.f.close();
      ctx.postMessage({ id: m.id, bytes: o.bytes, crc: o.crc, sha256: o.sha.digest("hex") });
    },
    (e) => {
      try {
        o.f.close();
      } catch { /* already closed */ }
      ctx.postMessage({ id: m.id, error: o.error ?? `fsync of ${o.path}: ${errorText(e)}` });
    },
  );
}
