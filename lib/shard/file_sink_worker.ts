/**
 * Worker behind {@link FileSink} (file_sink.ts): owns the shard files being written, so hashing (SHA-256, CRC-32C)
 * and write syscalls never run on the main thread, which only encodes records and hands bytes over.
 * Messages, handled in order:
 * - `{op: "open", file, path}`: create/truncate `path` as file `file`;
 * - `{op: "write", file, id, data, crc?}` → `{id, input}`: hash and append `data` (`crc` = its CRC-32C when the
 *   sender already knows it; `input` handed back for reuse);
 * - `{op: "finish", file, id}` → `{id, bytes, crc, sha256}` once the file is fsynced and closed. The fsync runs
 *   on Deno's blocking pool and does not hold up later messages: the next shard's writes proceed meanwhile;
 * - `{op: "abort", file, id}` → `{id}`: close the file (then the sender removes it).
 * Any failure answers `{id, error}` and poisons the file (later messages for it answer the same error).
 */
import { createHash, type Hash } from "node:crypto";
import { Crc32c } from "../util/crc32c.ts";
import { crc32cCombine } from "./crc_combine.ts";

type Msg =
  | { op: "open"; file: number; path: string }
  | { op: "write"; file: number; id: number; data: Uint8Array; crc?: number }
  | { op: "finish"; file: number; id: number }
  | { op: "abort"; file: number; id: number };

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

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let o = 0;
  while (o < b.length) o += await f.write(b.subarray(o));
}

ctx.onmessage = (ev: MessageEvent<Msg>) => {
  const m = ev.data;
  if (m.op === "open") {
    try {
      const f = Deno.openSync(m.path, { write: true, create: true, truncate: true });
      files.set(m.file, {
        f,
        path: m.path,
        writes: Promise.resolve(),
        sha: createHash("sha256"),
        crc: 0,
        bytes: 0,
      });
    } catch (e) {
      const f = null as unknown as Deno.FsFile;
      files.set(m.file, {
        f,
        path: m.path,
        writes: Promise.resolve(),
        sha: createHash("sha256"),
        crc: 0,
        bytes: 0,
      });
      files.get(m.file)!.error = `cannot create ${m.path}: ${errorText(e)}`;
    }
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
      // A known CRC is combined in; otherwise the running CRC continues over the bytes (no combine step).
      o.crc = m.crc === undefined
        ? new Crc32c(o.crc).update(m.data).value()
        : crc32cCombine(o.crc, m.crc, m.data.length);
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
};
