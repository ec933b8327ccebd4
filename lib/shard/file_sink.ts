/**
 * FileSink: shard files written, hashed (SHA-256 and CRC-32C of the file bytes) and fsynced by Workers, so the
 * main thread only encodes and hands bytes over. Each chunk that arrives without its CRC-32C gets one from ISA-L
 * in the sink Worker where ISA-L loads, else from a pool of CRC Workers (crc_worker.ts, JS) in parallel; the
 * sink Worker (file_sink_worker.ts) takes every message back in order, combines the chunk CRCs into the file's
 * (crc_combine.ts) and writes. SHA-256, serial within a file, is computed by hash Workers (hash_worker.ts), files
 * alternating between them, on each chunk once written; the chunk then comes back for reuse. One sink serves a
 * writer's shards one after another; a shard's fsync and the end of its hash overlap the next shard's writes.
 * Memory: at most {@link IN_FLIGHT_BYTES} (or one chunk, if larger) at the Workers (queued, being written or
 * hashed), in at most {@link IN_FLIGHT} chunks.
 *
 * @example
 * ```ts
 * import { FileSink } from "./file_sink.ts";
 * const dir = await Deno.makeTempDir();
 * const sink = new FileSink();
 * const f = sink.open(`${dir}/x.bin`);
 * await f.write(new Uint8Array(1000));
 * console.log(await f.finish()); // { bytes: 1000, crc32c: …, sha256: "…", flushedEarly: 0, direct: … } once durable
 * sink.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { ActshardError } from "../errors.ts";
import { isalUpdate } from "../util/crc32c_isal.ts";
import { giveBuffer } from "../util/reusable_buffers.ts";

/**
 * Chunks, and bytes, at the Workers before `write` waits (backpressure). 16 × 1 MiB rather than 8: chunks now
 * wait for their hash too, and the deeper queue measured ≈ 5 % faster in the `shard` stage (alternating reps).
 * Bytes bound it too, since a handed-over array (ShardWriter.write's `handOver`) can be any size.
 */
const IN_FLIGHT = 16;
const IN_FLIGHT_BYTES = 16 << 20;

/**
 * CRC Workers per sink for `cores` cores. None where ISA-L's CRC-32C loads (crc32c_isal.ts: ≈ 50 GB/s, so the
 * sink Worker computes each chunk's CRC itself in ≈ 0.02 s/GB). Otherwise one per core, at most 4: one Worker
 * does ≈ 1.5 GB/s (JS slicing-by-16, ≈ 0.65 s/GB); four keep the CRC past 5 GB/s, beyond the sink's own serial
 * SHA-256 (≈ 1.8 GB/s), so more would only cost memory and start-up.
 */
export function crcPoolSize(cores: number = navigator.hardwareConcurrency ?? 1): number {
  if (isalUpdate()) return 0;
  return Math.max(1, Math.min(4, cores));
}

/**
 * SHA-256 Workers per sink (hash_worker.ts): two where there are two cores or more, so that a shard is still
 * being hashed (≈ 1.3–1.8 GB/s on one core) while the next is written; one on one core.
 */
export function hashPoolSize(cores: number = navigator.hardwareConcurrency ?? 1): number {
  return cores >= 2 ? 2 : 1;
}

/** What a finished file holds. */
export interface SunkFile {
  bytes: number;
  crc32c: number;
  sha256: string;
  /**
   * Bytes whose writeback the sink started before the finish, while later bytes were still coming (so that the
   * final fsync waits only for the tail; file_sink_worker.ts's `flushBehind`): a figure, not part of the file.
   */
  flushedEarly: number;
  /**
   * True when every byte went around the page cache (`O_DIRECT`, direct_file.ts); false where the sink wrote
   * through it (not Linux, no FFI, the filesystem refused, `ACTSHARD_SINK_WRITES=thread|pool`): a figure.
   */
  direct: boolean;
}

/** One file being written through a {@link FileSink}. */
export interface SinkFile {
  /**
   * Append `bytes` (ownership passes to the sink: the buffer is transferred). `crc` = its CRC-32C if known.
   * `handedOver`: an array its owner gave up (ShardWriter.write's `handOver`): once written and hashed it goes
   * to reusable_buffers.ts for the reader's next arrays.
   */
  write(bytes: Uint8Array, crc?: number, handedOver?: boolean): Promise<void>;
  /** Bytes handed over so far. */
  readonly bytes: number;
  /** fsync and close; resolves once the file is durable. */
  finish(): Promise<SunkFile>;
  /** Close without finishing; resolves once the Worker has closed it (then the caller removes the file). */
  abort(): Promise<void>;
}

interface Reply {
  id: number;
  input?: Uint8Array;
  bytes?: number;
  crc?: number;
  sha256?: string;
  flushedEarly?: number;
  direct?: boolean;
  error?: string;
}

/** A Worker owning the files of one writer. */
export class FileSink {
  #w: Worker;
  #crc: Worker[] = [];
  #hash: Worker[] = [];
  #nextCrc = 0;
  /** Order of every message to the sink Worker (it reorders what the CRC Workers forward). */
  #seq = 0;
  #nextId = 0;
  #nextFile = 0;
  #waiting = new Map<number, { ok: (r: Reply) => void; err: (e: unknown) => void }>();
  #free: Uint8Array[] = [];
  /** Sizes asked of {@link buffer}: only buffers of these are kept for reuse (not handed-over arrays). */
  #sizes = new Set<number>();

  /**
   * `crcWorkers`: size of the CRC pool (default {@link crcPoolSize}); `hashWorkers`: SHA-256 Workers (default
   * {@link hashPoolSize}, at least 1).
   */
  constructor(opts: { crcWorkers?: number; hashWorkers?: number } = {}) {
    // The sink Worker (order, writes, replies) first, then the CRC pool, then the hash Workers (the bench names
    // threads by this order).
    // A chunk without a CRC goes to a CRC Worker, which forwards it with its CRC to the sink through a
    // MessagePort; everything else goes to the sink directly. Each message carries its place in the sink's order.
    this.#w = new Worker(new URL("./file_sink_worker.ts", import.meta.url), { type: "module" });
    for (let i = 0; i < (opts.crcWorkers ?? crcPoolSize()); i++) {
      const crc = new Worker(new URL("./crc_worker.ts", import.meta.url), { type: "module" });
      const ch = new MessageChannel();
      this.#w.postMessage({ op: "port", port: ch.port2 }, [ch.port2]);
      crc.postMessage({ op: "port", port: ch.port1 }, [ch.port1]);
      this.#crc.push(crc);
    }
    for (let i = 0; i < Math.max(1, opts.hashWorkers ?? hashPoolSize()); i++) {
      const hash = new Worker(new URL("./hash_worker.ts", import.meta.url), { type: "module" });
      const ch = new MessageChannel();
      this.#w.postMessage({ op: "hasher", port: ch.port2 }, [ch.port2]);
      hash.postMessage({ op: "port", port: ch.port1 }, [ch.port1]);
      this.#hash.push(hash);
    }
    this.#w.onmessage = (ev: MessageEvent<Reply>) => {
      const r = this.#waiting.get(ev.data.id)!;
      this.#waiting.delete(ev.data.id);
      const input = ev.data.input;
      if (input && this.#sizes.has(input.length)) {
        if (this.#free.length < IN_FLIGHT) this.#free.push(new Uint8Array(input.buffer));
      } else if (input) giveBuffer(new Uint8Array(input.buffer));
      if (ev.data.error) {
        r.err(
          new ActshardError(ev.data.error, {
            kind: "io",
            hint: "check the output directory's free space and permissions",
          }),
        );
      } else r.ok(ev.data);
    };
  }

  /** A buffer of `size` bytes, recycled from written chunks when one fits. */
  buffer(size: number): Uint8Array {
    this.#sizes.add(size);
    const i = this.#free.findIndex((b) => b.length === size);
    return i >= 0 ? this.#free.splice(i, 1)[0] : new Uint8Array(size);
  }

  /**
   * Send `msg` in order: through a CRC Worker (round robin) when it is a write without its CRC and there is a
   * pool (otherwise the sink Worker computes the CRC).
   */
  #post(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): void {
    const m = { ...msg, seq: this.#seq++ };
    if (msg.op === "write" && msg.crc === undefined && this.#crc.length > 0) {
      this.#crc[this.#nextCrc++ % this.#crc.length].postMessage(m, transfer);
    } else this.#w.postMessage(m, transfer);
  }

  #call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    const id = this.#nextId++;
    const p = new Promise<Reply>((ok, err) => this.#waiting.set(id, { ok, err }));
    this.#post({ ...msg, id }, transfer);
    return p;
  }

  /** Start writing `path` (created or truncated). */
  open(path: string): SinkFile {
    const file = this.#nextFile++;
    this.#post({ op: "open", file, path });
    const inFlight: { reply: Promise<Reply>; bytes: number }[] = [];
    let inFlightBytes = 0;
    let failed: unknown = null;
    let bytes = 0;
    const track = (reply: Promise<Reply>, n: number) => {
      reply.catch((e) => (failed ??= e));
      inFlight.push({ reply, bytes: n });
      inFlightBytes += n;
    };
    const settleOldest = async () => {
      const oldest = inFlight.shift()!;
      inFlightBytes -= oldest.bytes;
      await oldest.reply.catch(() => {});
    };
    const call = this.#call.bind(this);
    const sizes = this.#sizes;
    return {
      get bytes() {
        return bytes;
      },
      async write(b: Uint8Array, crc?: number, handedOver?: boolean) {
        if (failed) throw failed;
        if (b.length === 0) return;
        bytes += b.length;
        // Transfer whole buffers only: a view of a larger buffer is copied (transferring would detach the rest).
        const own = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
        const back = sizes.has(own.length) || handedOver === true; // only a buffer to reuse comes back
        track(call({ op: "write", file, data: own, crc, back }, [own.buffer as ArrayBuffer]), own.length);
        while (inFlight.length > IN_FLIGHT || (inFlightBytes > IN_FLIGHT_BYTES && inFlight.length > 1)) {
          await settleOldest();
        }
        if (failed) throw failed;
      },
      async finish() {
        const r = await call({ op: "finish", file });
        await Promise.all(inFlight.splice(0).map((f) => f.reply)).catch(() => {});
        inFlightBytes = 0;
        if (failed) throw failed;
        return {
          bytes: r.bytes!,
          crc32c: r.crc!,
          sha256: r.sha256!,
          flushedEarly: r.flushedEarly ?? 0,
          direct: r.direct ?? false,
        };
      },
      async abort() {
        inFlight.length = 0;
        inFlightBytes = 0;
        failed ??= new ActshardError("file aborted", { kind: "internal" });
        await call({ op: "abort", file }).catch(() => {});
      },
    };
  }

  close(): void {
    for (const w of [...this.#crc, ...this.#hash]) w.terminate();
    this.#crc = [];
    this.#hash = [];
    this.#w.terminate();
  }
}
