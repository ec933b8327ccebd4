/**
 * Worker behind {@link FileSink} (file_sink.ts): owns the shard files being written, so write syscalls and
 * hashing never run on the main thread, which only encodes records and hands bytes over. It puts chunks in
 * order, combines their CRC-32Cs (computed here by ISA-L, or by the CRC pool, crc_worker.ts, or by the
 * compression Workers) into each file's, and writes; each written chunk then goes to a hash Worker
 * (hash_worker.ts, files alternating between them) for the file's SHA-256, and from there back to the sender.
 * Messages arrive from the main thread and, for writes whose CRC the pool computed, from the pool's ports; each
 * carries `seq`, its place in the sender's order, and they are handled in that order:
 * - `{op: "open", file, path}`: create/truncate `path` as file `file`;
 * - `{op: "write", file, id, data, crc, back}` → `{id, input}`: append `data` (`crc` = its CRC-32C, computed here
 *   when absent); answered once written and hashed (`input`: the buffer, handed back for reuse with `back`);
 * - `{op: "finish", file, id}` → `{id, bytes, crc, sha256, flushedEarly, direct}` once the file is fsynced,
 *   hashed and closed, and holds exactly the bytes written (its size is checked: a file cut short under the
 *   writer fails here). The fsync and the hash's tail do not hold up later messages: the next shard's writes
 *   proceed meanwhile. `flushedEarly`: bytes whose writeback was started before the finish ({@link flushBehind});
 *   `direct`: every byte went around the page cache ({@link DIRECT});
 * - `{op: "abort", file, id}` → `{id}`: close the file (then the sender removes it).
 * Any failure answers `{id, error}` and poisons the file (later messages for it answer the same error).
 * First come the ports: `{op: "port", port}` from each CRC Worker, `{op: "hasher", port}` to each hash Worker.
 */
import { crc32cCombine } from "./crc_combine.ts";
import { Crc32c, crc32c } from "../util/crc32c.ts";
import { CachedFile, dropCachedPages } from "../util/page_cache.ts";
import { DirectFile } from "../util/direct_file.ts";
import { writeAllSync } from "../util/write_all.ts";

type Msg =
  & { seq: number }
  & (
    | { op: "open"; file: number; path: string }
    | { op: "write"; file: number; id: number; data: Uint8Array; crc?: number; back?: boolean }
    | { op: "finish"; file: number; id: number }
    | { op: "abort"; file: number; id: number }
  );

interface OpenFile {
  f: Deno.FsFile;
  /** Direct writes (direct_file.ts), where they could be set up; else the writes go through `f`. */
  direct: DirectFile | null;
  path: string;
  /** Writes on the blocking pool, in order ({@link WRITES_ON_THIS_THREAD} false); else always settled. */
  writes: Promise<void>;
  /** The hash Worker of this file; `written`: bytes whose write has returned. */
  hasher: MessagePort | null;
  written: number;
  /** Advice about the file's cached pages (null where it cannot be given), and the bytes sent to writeback. */
  cache: CachedFile | null;
  flushed: number;
  crc: number;
  bytes: number;
  error?: string;
}

/** Ports to the hash Workers; a file goes to `hashers[file % length]`. */
const hashers: MessagePort[] = [];
/** Files whose SHA-256 is awaited from a hash Worker. */
const hashWaiting = new Map<number, (r: { sha256?: string; error?: string }) => void>();

/** The file's SHA-256 once its hash Worker has hashed every chunk (sent after the last write returned). */
function hashOf(o: OpenFile, file: number): Promise<{ sha256?: string; error?: string }> {
  const p = new Promise<{ sha256?: string; error?: string }>((ok) => hashWaiting.set(file, ok));
  o.hasher!.postMessage({ op: "end", file });
  return p;
}

/** What a hash Worker answers: a chunk hashed (back to its sender), or a file's digest. */
type HashReply =
  | { op: "hashed"; id: number; data?: Uint8Array }
  | { op: "digest"; file: number; sha256?: string; error?: string };

// deno-lint-ignore no-explicit-any
const ctx = self as any;
const files = new Map<number, OpenFile>();
const errorText = (e: unknown) => e instanceof Error ? e.message : String(e);

/**
 * Bytes per write syscall, at most. The kernel's buffered write was measured here to cost several times more CPU
 * per byte from 2 MiB up (≈ 1.5–2.5 against ≈ 0.3–0.4 s/GB); 1 MiB writes (the codecs' chunks) measured ≈ 10 %
 * cheaper than 256 KiB ones in the `shard` stage, in A/B reps on a quiet box.
 */
const WRITE_BYTES = 1 << 20;

/**
 * Whether files are written around the page cache (`O_DIRECT`, direct_file.ts), the default where it can be set
 * up: the kernel's buffered write, its writeback and the reclaim of those pages cost ≈ 0.5 CPU-s/GB more (the
 * module's measurement), and on 2 cores the `shard` stage is CPU-bound. `ACTSHARD_SINK_WRITES=thread|pool`
 * writes through the page cache instead, as does `ACTSHARD_PAGE_CACHE=keep`; so does any file where the
 * filesystem refuses the flag (then {@link WRITES_ON_THIS_THREAD} says where).
 */
const DIRECT = ((): boolean => {
  const v = Deno.env.get("ACTSHARD_SINK_WRITES");
  return v !== "thread" && v !== "pool";
})();

/**
 * Where the buffered write syscalls run. On this Worker's own thread (`writeSync`: it blocks, with nothing else
 * to do meanwhile; its messages wait in order) where there are fewer than 4 cores: there the CPU per GB decides, and
 * the blocking pool's thread hop per write costs ≈ 0.2–0.3 CPU-s/GB. Measured on 2 cores, alternating: the
 * extract ceiling, pickle/none/float32, 1134–1137 MB/s at 1.42–1.50 CPU-s/GB here against 926–952 at
 * 1.72–1.76 on the pool; the `shard` stage, pickle → none, 763–818 against 689–737 MB/s. With more cores the
 * writes go to Deno's blocking pool, so that this thread's ordering and the kernel's copies run in parallel:
 * this thread then carries 0.31–0.33 s/GB instead of 0.42–0.43, and a writer's busiest serial stage is a hash
 * Worker's (≈ 0.35 over many shards): a cap of ≈ 2.9 GB/s rather than ≈ 2.3. `ACTSHARD_SINK_WRITES=thread|pool`
 * chooses.
 */
const WRITES_ON_THIS_THREAD = ((): boolean => {
  const v = Deno.env.get("ACTSHARD_SINK_WRITES");
  if (v === "thread" || v === "pool") return v === "thread";
  return (navigator.hardwareConcurrency ?? 1) < 4;
})();

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await f.write(b.subarray(o, Math.min(b.length, o + WRITE_BYTES)));
}

/**
 * Written bytes past which the sink starts their writeback (page_cache.ts says why: the kernel here would start
 * none before the final fsync). Measured in the `shard` stage, pickle → none: 582–599 → 668–692 MB/s.
 */
const FLUSH_BEHIND_BYTES = 32 << 20;

/** Start the writeback of what `o` wrote since the last call, once that is {@link FLUSH_BEHIND_BYTES}. */
function flushBehind(o: OpenFile): void {
  if (!o.cache || o.error || o.written - o.flushed < FLUSH_BEHIND_BYTES) return;
  if (o.cache.writeBack(o.flushed, o.written - o.flushed)) o.flushed = o.written;
  else {
    o.cache.close(); // refused (not a regular file?): the final fsync does it all, as without FFI
    o.cache = null;
  }
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

// Messages come from the main thread and through the CRC Workers' ports (file_sink.ts); the ports arrive first.
ctx.onmessage = (
  ev: MessageEvent<{ op: "port"; port: MessagePort } | { op: "hasher"; port: MessagePort } | Msg>,
) => {
  const m = ev.data;
  if (m.op === "port") m.port.onmessage = (e: MessageEvent<Msg>) => arrive(e.data);
  else if (m.op === "hasher") {
    hashers.push(m.port);
    m.port.onmessage = (e: MessageEvent<HashReply>) => {
      const r = e.data;
      if (r.op === "hashed") {
        return r.data
          ? ctx.postMessage({ id: r.id, input: r.data }, [r.data.buffer])
          : ctx.postMessage({ id: r.id });
      }
      const done = hashWaiting.get(r.file);
      hashWaiting.delete(r.file);
      done?.(r);
    };
  } else arrive(m);
};

function handle(m: Msg): void {
  if (m.op === "open") {
    const o: OpenFile = {
      f: null as unknown as Deno.FsFile,
      direct: null,
      path: m.path,
      writes: Promise.resolve(),
      hasher: null,
      written: 0,
      cache: null,
      flushed: 0,
      crc: 0,
      bytes: 0,
    };
    try {
      o.f = Deno.openSync(m.path, { write: true, create: true, truncate: true });
      if (DIRECT) o.direct = DirectFile.open(m.path, o.f);
      if (!o.direct) o.cache = CachedFile.open(m.path);
      o.hasher = hashers[m.file % hashers.length];
      o.hasher.postMessage({ op: "open", file: m.file });
    } catch (e) {
      o.error = `cannot create ${m.path}: ${errorText(e)}`; // answered to this file's next message
    }
    files.set(m.file, o);
    return;
  }
  const o = files.get(m.file);
  if (m.op === "abort") {
    files.delete(m.file);
    const close = async () => {
      await o?.direct?.close(); // once its writes in flight have returned
      o?.cache?.close();
      try {
        o?.f?.close();
      } catch { /* already closed */ }
      o?.hasher?.postMessage({ op: "abort", file: m.file });
      ctx.postMessage({ id: m.id });
    };
    return void (o ? o.writes.then(close, close) : close());
  }
  if (!o) return ctx.postMessage({ id: m.id, error: `file ${m.file} is not open` });
  if (o.error) return ctx.postMessage({ id: m.id, error: o.error });
  if (m.op === "write") {
    try {
      // No CRC and no CRC pool (file_sink.ts): ISA-L loaded, so it is cheapest here. With direct writes it is
      // taken in the write below, piece by piece right after each piece's copy into staging, from the cache (one
      // pass over the bytes from memory fewer: −3.5 % of the `shard` stage's CPU, 4 alternating reps); every
      // CRC is then combined there, in the writes' order, given ones too.
      if (!o.direct) o.crc = crc32cCombine(o.crc, m.crc ?? crc32c(m.data), m.data.length);
      o.bytes += m.data.length;
      const data = m.data;
      const written = () => {
        o.written += data.length;
        flushBehind(o);
        // Hashed while hot in the cache; the hash Worker's reply answers the sender (HashReply).
        o.hasher!.postMessage({ op: "data", file: m.file, id: m.id, data, back: m.back }, [data.buffer]);
      };
      if (o.direct) {
        const direct = o.direct;
        o.writes = o.writes.then(async () => {
          let crc = m.crc;
          if (crc === undefined) {
            const c = new Crc32c();
            await direct.write(data, (piece) => c.update(piece));
            crc = c.value();
          } else await direct.write(data);
          o.crc = crc32cCombine(o.crc, crc, data.length); // in order: the writes are chained
        }).then(written, (e) => {
          o.error ??= `writing ${o.path}: ${errorText(e)}`;
          ctx.postMessage({ id: m.id, error: o.error });
        });
      } else if (WRITES_ON_THIS_THREAD) {
        writeAllSync(o.f, data, WRITE_BYTES);
        written();
      } else {
        o.writes = o.writes.then(() => writeAll(o.f, data)).then(written, (e) => {
          o.error ??= `writing ${o.path}: ${errorText(e)}`;
          ctx.postMessage({ id: m.id, error: o.error });
        });
      }
    } catch (e) {
      o.error = `writing ${o.path}: ${errorText(e)}`;
      ctx.postMessage({ id: m.id, error: o.error });
    }
    return;
  }
  files.delete(m.file);
  // fsync (on Deno's blocking pool) and the hash's tail run together, once the last write has returned; the
  // next file's writes go on meanwhile.
  const file = m.file;
  o.writes.then(async () => {
    if (o.error) throw new Error(o.error);
    if (o.direct) {
      await o.direct.finish().catch((e) => {
        o.error ??= `writing ${o.path}: ${errorText(e)}`;
        throw e;
      });
    }
    const [, h] = await Promise.all([o.f.sync(), hashOf(o, file)]);
    // The hash covers the bytes handed to write(); the file must hold exactly those (not changed under us).
    const size = (await o.f.stat()).size;
    if (size !== o.bytes) {
      o.error =
        `${o.path} holds ${size} bytes after its fsync, ${o.bytes} were written (changed under the writer?)`;
      throw new Error(o.error);
    }
    return h;
  }).then(
    async (h) => {
      const direct = o.direct !== null && !o.direct.fellBack;
      await o.direct?.close();
      o.f.close();
      // Durable and hashed: its pages go back (page_cache.ts says why; an upload or verify reads from disk).
      if (!h.error && o.cache) o.cache.drop();
      else if (!h.error && o.direct?.fellBack) dropCachedPages(o.path); // what went the ordinary way
      o.cache?.close();
      if (h.error) ctx.postMessage({ id: m.id, error: h.error });
      else {
        ctx.postMessage({
          id: m.id,
          bytes: o.bytes,
          crc: o.crc,
          sha256: h.sha256,
          flushedEarly: o.flushed,
          direct,
        });
      }
    },
    async (e) => {
      await o.direct?.close();
      o.cache?.close();
      try {
        o.f.close();
      } catch { /* already closed */ }
      o.hasher?.postMessage({ op: "abort", file });
      ctx.postMessage({ id: m.id, error: o.error ?? `fsync of ${o.path}: ${errorText(e)}` });
    },
  );
}
