/**
 * The interface every shard format implements ({@link ShardFormatSpec}): what the format registry
 * (formats/mod.ts) holds per format, what {@link ShardWriter} drives to encode a shard and what the reader and
 * `verify` drive to decode one. A format sees only records and bytes: the codec (compression), the file, its
 * hashes, naming and metadata.json are the writer's.
 *
 * @example
 * ```ts
 * import type { ShardFormatSpec } from "./spec.ts";
 * const canHold = (f: ShardFormatSpec) => Object.entries(f.dtypes).filter(([, ok]) => ok === true);
 * ```
 *
 * @module
 */
import type { ActivationDType, ActivationRecord } from "../../types.ts";
import type { BlobStore } from "../../storage/types.ts";

/** One format: its names, what it holds, its encoder and decoder. */
export interface ShardFormatSpec {
  /** The `--format` choice and metadata.json's `format` value. */
  readonly name: string;
  /** File extension before any codec suffix: `shard_0001.<extension>[.gz]`. */
  readonly extension: string;
  /** Each stored dtype: `true` when the format holds it, else why not (a clause shown to the user). */
  readonly dtypes: Readonly<Record<ActivationDType, true | string>>;
  /**
   * Scratch disk an open shard needs beyond its own file, in shard payloads (safetensors stages its body and
   * writes the header first at the end: 1; a streamed format: 0). The disk-full message counts it.
   */
  readonly scratchShards: number;
  /** Start encoding one shard. */
  encoder(ctx: EncoderContext): ShardEncoder;
  /** The records of one shard's decompressed bytes, in file order. Must cancel `stream` when it stops early. */
  decode(stream: ReadableStream<Uint8Array>, where: string): AsyncIterable<ShardItem>;
  /**
   * The records of an uncompressed shard through range reads only (the format's index, then just the records a
   * caller wants): for formats with random access; absent otherwise.
   */
  readRanged?(store: BlobStore, name: string, where: string): AsyncIterable<ShardItem>;
}

/** What the writer gives a shard's encoder. */
export interface EncoderContext {
  /** The stored dtype (one {@link ShardFormatSpec.dtypes} holds). */
  dtype: ActivationDType;
  /**
   * Where the shard's bytes go, in file order (the codec's compressor; awaited: backpressure). `owned`: the
   * encoder gives `bytes`' buffer up (it may be detached), see the compressor's `write`.
   */
  out: (bytes: Uint8Array, owned?: boolean) => Promise<void>;
  /**
   * A scratch file this shard may create (the encoder removes it in finish/abort; after a crash the writer's
   * open removes it with the other dot-temp files).
   */
  scratchPath: string;
  /** The shard's file name, for errors. */
  shard: string;
}

/** One shard being encoded, driven by the writer: begin, record × n, then finish (or abort). */
export interface ShardEncoder {
  /** Write what precedes the first record. */
  begin(): Promise<void>;
  /**
   * Encode one record (its shape already checked against its values). `stored`: its activation already in the
   * shard's dtype (little-endian bytes, converted by the writer's pool), else the encoder converts it.
   * `handOver`: the activation's buffer is the writer's to give up (ShardWriter.write's `handOver`); `stored`
   * always is.
   */
  record(r: ActivationRecord, stored?: Uint8Array, handOver?: boolean): Promise<void>;
  /** Write everything still owed (tail, or staged body) to `out`; the writer then finishes the codec. */
  finish(): Promise<void>;
  /** Drop the shard: close and remove any scratch file. Never throws. */
  abort(): Promise<void>;
}

/** A record as decoded, with the dtype it was stored in. */
export interface DecodedRecord extends ActivationRecord {
  /** The stored dtype (values are float32 either way). */
  dtype: ActivationDType;
}

/** A record's keys, read before its values: a filter that drops it never decodes them. */
export interface ShardItem {
  /** Layer index. */
  layer: number;
  /** ARC task id ("" when the shard has none: the seed's text variant). */
  task_id: string;
  /** Prompt index within the run (-1 when absent). */
  sample_idx: number;
  /** Decode the record's values. */
  record(): DecodedRecord | Promise<DecodedRecord>;
}
