/**
 * actshard — the public TypeScript API: readers, writers and the extract job.
 *
 * @module
 */
export type { ActivationDType, ActivationRecord, Backend, TokenBatch } from "./lib/types.ts";
export { ActshardError } from "./lib/errors.ts";
export { Crc32c, crc32c } from "./lib/util/crc32c.ts";
export type { BlobStore, ObjectInfo } from "./lib/storage/types.ts";
