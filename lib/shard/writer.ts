/**
 * ShardWriter: records in, size-bounded shard files out, as a stream. Each shard is written to a temporary
 * name while records arrive (memory: one record plus codec buffers), then compressed tail flushed, fsynced,
 * renamed to `shard_NNNN.<ext>`, and metadata.json is rewritten atomically to list it. A prompt's records (one
 * `write` call) stay in one shard unless that prompt alone exceeds the limit. Output bytes depend only on the
 * records and options (no timestamps, fixed gzip headers and chunking): a resumed run reproduces the same files.
 *
 * @example
 * ```ts
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32",
 *   shardSizeBytes: 1 << 30, base: { shard_size_gb: 1 } });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 10, prompt: "p",
 *   activation: new Float32Array(8), shape: [2, 4] }]);
 * const meta = await w.close(); // status "complete"
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import type { ActivationDType, ActivationRecord } from "../types.ts";
import { ActshardError, isDiskFull } from "../errors.ts";
import { type Codec, codecSpec, type Compressor, createCompressor, type SharedCodec } from "./codecs.ts";
import { FileSink, type SinkFile, type SunkFile } from "./file_sink.ts";
import { ConvertPool, convertPoolSize } from "./convert_pool.ts";
import { dtypeSize } from "../util/dtype.ts";
import { type DatasetMetadata, newMetadata, type ShardEntry, writeMetadataAtomic } from "./metadata.ts";
import {
  checkFormatDtype,
  isShardFileName,
  type ShardEncoder,
  shardFileName,
  type ShardFormat,
  shardFormat,
} from "./formats/mod.ts";

/** Shard payload formats and their names (the format registry's, lib/shard/formats/mod.ts). */
export { FORMATS, shardFileName, type ShardFormat } from "./formats/mod.ts";

/** Options for {@link ShardWriter.open}. */
export interface ShardWriterOptions {
  /** Output directory (created if needed). */
  dir: string;
  /** A format of the registry (lib/shard/formats/mod.ts). */
  format: ShardFormat;
  /** A codec of the codec table (lib/shard/codecs.ts). */
  codec: Codec;
  /** Stored dtype; the format must hold it. */
  dtype: ActivationDType;
  /** Bound on the uncompressed payload (stored-dtype activation bytes) per shard. */
  shardSizeBytes: number;
  /** metadata.json fields of a fresh dataset. */
  base: Partial<DatasetMetadata>;
  /** Resume: keep these committed shards, continue numbering after them. */
  existing?: DatasetMetadata;
  /** Called after a shard's rename + metadata rewrite. */
  onShardCommitted?: (entry: ShardEntry) => void | Promise<void>;
  /** gzip Workers (default: cores). zstd: one frame per shard, by libzstd's threads or node:zlib (zstd_stream.ts). */
  gzipWorkers?: number;
  /** zstd level (default 1: `ZSTD_DEFAULT_LEVEL`, same ratio as higher levels on activations, fastest). */
  zstdLevel?: number;
}

/** Matches shard files this project (or the seed) writes (defined with the metadata checks). */
export { SHARD_FILE_RE } from "./metadata_check.ts";

/** The shard being written: its file, codec and the format's encoder, plus what metadata.json will say. */
class OpenShard {
  out!: SinkFile;
  comp!: Compressor;
  enc!: ShardEncoder;
  payload = 0;
  records = 0;
  perLayer = new Map<number, number>();
  minIdx = Infinity;
  maxIdx = -Infinity;
  constructor(readonly id: number, readonly name: string, readonly tmpPath: string) {}
}

/**
 * Streams records into size-bounded shards; see the module doc.
 *
 * @example
 * ```ts
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "safetensors", codec: "zstd", dtype: "bfloat16",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 10, prompt: "p", activation: new Float32Array(8),
 *   shape: [2, 4] }]);
 * const meta = await w.close();
 * console.log(meta.status, meta.shards[0].filename); // "complete" "shard_0001.safetensors.zst"
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ShardWriter {
  #meta: DatasetMetadata;
  #cur: OpenShard | null = null;
  #nextId: number;
  /** The codec's Workers, shared by every shard of this writer. */
  #codec: SharedCodec | undefined;
  /** Started in the constructor once the options are checked: its Workers would outlive a throw. */
  #sink: FileSink;
  /** float16/bfloat16 on 2+ cores: the conversion runs on Workers (convert_pool.ts), not on this thread. */
  #convert: ConvertPool | null = null;
  #metaChain: Promise<void> = Promise.resolve();
  /** The shard commit in flight (fsync → rename → metadata → callback), if any. */
  #committing: Promise<void> = Promise.resolve();
  /** Why a background commit failed (thrown by the next write or close). */
  #failure: unknown = null;
  #closed = false;
  /** The shard being opened (its temp file may exist before #cur is set): abort() waits for it. */
  #starting: Promise<OpenShard> | null = null;

  private constructor(private opts: ShardWriterOptions) {
    this.#meta = opts.existing ? structuredClone(opts.existing) : newMetadata(opts.base);
    this.#meta.status = "in_progress";
    this.#nextId = Math.max(0, ...this.#meta.shards.map((s) => s.shard_id)) + 1;
    checkFormatDtype(opts.format, opts.dtype); // e.g. pickle cannot hold bfloat16: refused before any file
    if (!(opts.shardSizeBytes > 0)) {
      throw new ActshardError("shard size must be positive", { kind: "usage", where: "--shard_size_gb" });
    }
    // The sink's Workers before the conversion pool's (the ceiling bench names threads by creation order).
    this.#sink = new FileSink();
    const converters = opts.dtype === "float32" ? 0 : convertPoolSize();
    if (converters > 0) this.#convert = new ConvertPool(opts.dtype as "float16" | "bfloat16", converters);
  }

  /** Open a writer on `dir` (created if needed), removing stale temp files and unlisted shard files. */
  static async open(opts: ShardWriterOptions): Promise<ShardWriter> {
    const w = new ShardWriter(opts);
    // Any failure from here on (a directory that cannot be made or read; ACTSHARD_ZSTD_ENGINE=libzstd without
    // libzstd) releases the Workers started so far: they would keep the process alive.
    try {
      await Deno.mkdir(opts.dir, { recursive: true });
      const listed = new Set(w.#meta.shards.map((s) => s.path ?? s.filename));
      for await (const e of Deno.readDir(opts.dir)) {
        if (!e.isFile) continue;
        const stale = e.name.endsWith(".tmp") && e.name.startsWith(".shard_") ||
          (isShardFileName(e.name) && !listed.has(e.name));
        if (stale) await Deno.remove(join(opts.dir, e.name));
      }
      w.#codec = codecSpec(opts.codec).shared({ gzipWorkers: opts.gzipWorkers, zstdLevel: opts.zstdLevel });
    } catch (e) {
      w.#release();
      throw e;
    }
    return w;
  }

  /**
   * Activation bytes taken into the shard being written (before compression: codecs buffer, so the file's own
   * size is known when it closes). Progress counts them, so its size does not sit at 0 until a shard closes.
   */
  get openShardBytes(): number {
    return this.#cur?.payload ?? 0;
  }

  /** Current metadata (committed shards only). */
  get metadata(): DatasetMetadata {
    return this.#meta;
  }

  /**
   * Write one prompt's records (all its layers); kept in one shard unless they alone exceed the limit.
   * `handOver`: the records' activation buffers pass to the writer, which may transfer them to its Workers
   * (they are then detached: the caller must not use them again); saves a copy of each byte where the bytes go
   * out unchanged (float32, codec none). The `shard` stage's records, read for it alone, are handed over.
   */
  async write(group: ActivationRecord[], opts: { handOver?: boolean } = {}): Promise<void> {
    if (this.#closed) throw new ActshardError("ShardWriter is closed", { kind: "internal" });
    try {
      if (this.#failure) throw this.#failure;
      await this.#writeGroup(group, opts.handOver === true);
    } catch (e) {
      throw await this.#failed(e);
    }
  }

  async #writeGroup(group: ActivationRecord[], handOver: boolean): Promise<void> {
    const size = dtypeSize(this.opts.dtype);
    const groupBytes = group.reduce((s, r) => s + r.activation.length * size, 0);
    const limit = this.opts.shardSizeBytes;
    if (this.#cur && this.#cur.records > 0 && groupBytes <= limit && this.#cur.payload + groupBytes > limit) {
      await this.#commit();
    }
    // Conversions run ahead of the encoding, a few records deep (memory: ≈ 2 × pool size activations).
    const pool = this.#convert;
    const ahead = pool ? 2 * convertPoolSize() : 0;
    const stored: Promise<Uint8Array>[] = [];
    const startUpTo = (i: number) => {
      while (pool && stored.length < Math.min(group.length, i + ahead)) {
        const p = pool.convert(group[stored.length].activation);
        p.catch(() => {}); // awaited below, in order; a failure there fails the write
        stored.push(p);
      }
    };
    for (const [i, r] of group.entries()) {
      startUpTo(i);
      const b = r.activation.length * size;
      if (this.#cur && this.#cur.records > 0 && this.#cur.payload + b > limit) await this.#commit();
      await this.#writeRecord(r, pool ? await stored[i] : undefined, handOver);
    }
  }

  async #start(): Promise<OpenShard> {
    // A write in flight when abort() ran (Ctrl-C) must not open a new temp file behind it.
    if (this.#closed) throw new ActshardError("ShardWriter is closed", { kind: "internal" });
    const id = this.#nextId++;
    const name = shardFileName(id, this.opts.format, this.opts.codec);
    const s = new OpenShard(id, name, join(this.opts.dir, `.${name}.tmp`));
    // Hashing and write syscalls happen in the sink's Workers; this thread only encodes.
    s.out = this.#sink.open(s.tmpPath);
    s.comp = createCompressor(this.opts.codec, (b, crc, handedOver) => s.out.write(b, crc, handedOver), {
      ...this.#codec!.options,
      buffers: (n) => this.#sink.buffer(n),
    });
    s.enc = shardFormat(this.opts.format).encoder({
      dtype: this.opts.dtype,
      out: (b, owned) => s.comp.write(b, owned),
      scratchPath: join(this.opts.dir, `.${name}.body.tmp`),
      shard: name,
    });
    this.#cur = s; // before begin: a failed begin is then dropped (compressor, sink, scratch) like any write
    await s.enc.begin();
    return s;
  }

  async #writeRecord(r: ActivationRecord, stored: Uint8Array | undefined, handOver: boolean): Promise<void> {
    const expect = r.shape.reduce((a, b) => a * b, 1);
    if (expect !== r.activation.length) {
      throw new ActshardError(`record shape ${r.shape} does not match ${r.activation.length} values`, {
        where: `task ${r.task_id} sample ${r.sample_idx} layer ${r.layer}`,
        kind: "internal",
      });
    }
    if (!this.#cur) {
      this.#starting = this.#start();
      try {
        await this.#starting;
      } finally {
        this.#starting = null;
      }
    }
    const s = this.#cur!;
    const values = r.activation.length; // read first: a handed-over activation is detached by the encoding
    await s.enc.record(r, stored, handOver);
    s.payload += values * dtypeSize(this.opts.dtype);
    s.records++;
    s.perLayer.set(r.layer, (s.perLayer.get(r.layer) ?? 0) + 1);
    s.minIdx = Math.min(s.minIdx, r.sample_idx);
    s.maxIdx = Math.max(s.maxIdx, r.sample_idx);
  }

  /**
   * A write failure, after removing the partial shard's temp files. Disk full becomes one line naming the
   * directory and what to free (committed shards and metadata.json are intact: rerunning resumes after them).
   */
  async #failed(e: unknown): Promise<unknown> {
    await this.#drop().catch(() => {});
    if (!isDiskFull(e)) return e;
    const mb = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;
    const oneShard = this.opts.shardSizeBytes * (1 + shardFormat(this.opts.format).scratchShards);
    return new ActshardError("disk full while writing shards", {
      where: this.opts.dir,
      kind: "io",
      hint: `free at least ${mb(oneShard)} (one shard in flight) plus the rest of the run's output on that ` +
        "filesystem, then rerun the same command: committed shards are kept and the run resumes after them " +
        "(or --upload_to_gcs --delete_local_after_upload, --dtype float16, fewer layers)",
      cause: e,
    });
  }

  async #commit(): Promise<void> {
    const s = this.#cur;
    if (!s) return;
    this.#cur = null;
    let durable: Promise<SunkFile>;
    try {
      durable = (await this.#flushShard(s)).durable;
    } catch (e) {
      // a failed flush (disk full, say) leaves no temp file behind
      await this.#discard(s).catch(() => {});
      throw e;
    }
    // The shard becomes durable (fsync) and is listed while the next shard is already being written; one
    // commit at a time, in order, so metadata.json only ever lists a prefix of durable shards.
    const previous = this.#committing;
    this.#committing = previous.then(() => durable).then((f) => this.#list(s, f)).catch(async (e) => {
      // a failed fsync or rename leaves no temp file behind either
      await Deno.remove(s.tmpPath).catch(() => {});
      throw e;
    });
    this.#committing.catch((e) => (this.#failure ??= e));
    await previous;
  }

  /** Encode a shard's tail and flush its compressor; `durable` resolves once the sink has fsynced it. */
  async #flushShard(s: OpenShard): Promise<{ durable: Promise<SunkFile> }> {
    await s.enc.finish();
    await s.comp.finish();
    const durable = s.out.finish();
    durable.catch(() => {});
    return { durable };
  }

  /** Rename a durable shard into place, list it in metadata.json, tell the caller. */
  async #list(s: OpenShard, f: SunkFile): Promise<void> {
    const finalPath = join(this.opts.dir, s.name);
    await Deno.rename(s.tmpPath, finalPath);
    const m = this.#meta;
    const layers = [...s.perLayer.keys()].sort((a, b) => a - b);
    const entry: ShardEntry = {
      shard_id: s.id,
      filename: s.name,
      local_path: finalPath,
      gcs_path: m.upload_to_gcs && m.gcs_bucket
        ? `gs://${m.gcs_bucket}/${m.gcs_prefix ? `${m.gcs_prefix.replace(/\/$/, "")}/` : ""}${s.name}`
        : null,
      file_size_mb: f.bytes / 2 ** 20,
      buffer_size_mb: s.payload / 2 ** 20,
      layers,
      samples_per_layer: Object.fromEntries(layers.map((l) => [String(l), s.perLayer.get(l)!])),
      total_samples_in_shard: s.records,
      bytes: f.bytes,
      crc32c: f.crc32c,
      sha256: f.sha256,
      sample_idx_min: s.minIdx,
      sample_idx_max: s.maxIdx,
      n_records: s.records,
      format: this.opts.format,
      codec: this.opts.codec,
      dtype: this.opts.dtype,
    };
    m.shards.push(entry);
    m.total_shards = m.shards.length;
    m.total_samples += s.records;
    try {
      await this.#rewriteMetadata();
    } catch (e) {
      // metadata.json on disk does not list it (disk full, say): the shard is not committed; take it back
      m.shards.pop();
      m.total_shards = m.shards.length;
      m.total_samples -= s.records;
      await Deno.remove(finalPath).catch(() => {});
      throw e;
    }
    await this.opts.onShardCommitted?.(entry);
  }

  #rewriteMetadata(): Promise<void> {
    const next = this.#metaChain.then(() => {
      this.#meta.updated_at = new Date().toISOString();
      return writeMetadataAtomic(this.opts.dir, this.#meta);
    });
    this.#metaChain = next.catch(() => {});
    return next;
  }

  /** Patch a committed shard's entry (e.g. GCS generation) and rewrite metadata.json atomically. */
  async updateShard(shardId: number, patch: Partial<ShardEntry>): Promise<void> {
    // A shard still on its way to durable (commits overlap the next shard's writes) is waited for.
    if (!this.#meta.shards.some((s) => s.shard_id === shardId)) await this.#committing.catch(() => {});
    const e = this.#meta.shards.find((s) => s.shard_id === shardId);
    if (!e) throw new ActshardError(`no committed shard ${shardId}`, { kind: "internal" });
    Object.assign(e, patch);
    await this.#rewriteMetadata();
  }

  /**
   * Commit the last shard and mark the dataset complete — or, with `incomplete` (a conversion of a run that did
   * not finish), leave it `in_progress` so the output never claims more than its input held.
   */
  async close(opts: { incomplete?: boolean } = {}): Promise<DatasetMetadata> {
    try {
      if (this.#failure) throw this.#failure;
      if (this.#cur && this.#cur.records > 0) await this.#commit();
      else await this.#drop();
      await this.#committing;
      this.#meta.status = opts.incomplete ? "in_progress" : "complete";
      await this.#rewriteMetadata();
    } catch (e) {
      this.#meta.status = "in_progress"; // not on disk: the writer must not report more than metadata.json says
      throw await this.#failed(e);
    } finally {
      this.#closed = true;
      this.#release();
    }
    return this.#meta;
  }

  #release(): void {
    this.#codec?.close();
    this.#sink.close();
    this.#convert?.close();
  }

  /** Drop the partial shard; committed shards stay (status stays in_progress). */
  async abort(): Promise<void> {
    this.#closed = true;
    try {
      await this.#drop();
      // A shard already handed to commit is durable data: let it be listed (or fail) before the Workers go.
      await this.#committing.catch(() => {});
    } finally {
      this.#release();
    }
  }

  async #drop(): Promise<void> {
    await this.#starting?.catch(() => {});
    const s = this.#cur;
    this.#cur = null;
    if (s) await this.#discard(s);
  }

  /** Stop a shard's compressor and remove its temp files (the committed shards are untouched). */
  async #discard(s: OpenShard): Promise<void> {
    s.comp.abort();
    await s.out.abort();
    await s.enc?.abort();
    await Deno.remove(s.tmpPath).catch(() => {});
  }
}
