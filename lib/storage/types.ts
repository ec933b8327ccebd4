/**
 * Where a dataset lives. Readers (`read`, `verify`, `shard`, merge) see a dataset root through this interface,
 * so the same code serves a local directory (`LocalStore`, lib/storage/local.ts) and `gs://bucket/prefix`
 * (`GcsStore`, lib/storage/gcs.ts). Names are relative to the root and use "/" (e.g. "metadata.json",
 * "worker-00000-of-00003/shard_0001.pkl.gz").
 */

/** What a store knows about one object without reading it. */
export interface ObjectInfo {
  /** Name relative to the store's root, "/"-separated. */
  name: string;
  /** Size in bytes. */
  size: number;
  /** CRC-32C as an unsigned integer, when the store keeps one (GCS does; local files don't). */
  crc32c?: number;
  /** GCS object generation (string of digits). */
  generation?: string;
}

/** Read access to a dataset root. */
export interface BlobStore {
  /** Human-readable root, e.g. "/data/out" or "gs://b/p". */
  readonly url: string;
  /** Objects under the root (recursive), sorted by name. */
  list(): Promise<ObjectInfo[]>;
  /** Info for one object, or null if absent. */
  stat(name: string): Promise<ObjectInfo | null>;
  /** The whole object (for small ones: metadata.json, headers). Throws ActshardError when absent. */
  read(name: string): Promise<Uint8Array>;
  /** Bytes [start, end) of an object. */
  readRange(name: string, start: number, end: number): Promise<Uint8Array>;
  /** A stream of the whole object (for shards: never buffered whole). */
  openRead(name: string): Promise<ReadableStream<Uint8Array>>;
}
