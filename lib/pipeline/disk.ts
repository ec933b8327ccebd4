/**
 * Output size estimate and the free-disk check made before any work. A run that cannot fit is refused up front
 * instead of dying hours in with ENOSPC. Activations are float32 noise to a compressor (gzip saves ≈ 7 % on them),
 * so the estimate assumes no compression: it is an upper bound within a few percent.
 *
 * @example
 * ```ts
 * import { checkFreeDisk, estimateOutputBytes } from "./disk.ts";
 * const bytes = estimateOutputBytes({ tokens: 1e6, hidden: 896, layers: 14, dtype: "float32" });
 * await checkFreeDisk("./activations_arc", { needBytes: bytes });
 * ```
 */
import { statfs } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { ActshardError } from "../errors.ts";
import type { ActivationDType } from "../types.ts";
import { dtypeSize } from "../util/dtype.ts";

/** Per-record overhead guess (pickle/safetensors headers, task id, prompt preview). */
const RECORD_OVERHEAD = 512;

/** Estimated stored bytes: tokens × hidden × layers × dtype size, plus per-record overhead. */
export function estimateOutputBytes(o: {
  /** Stored tokens summed over prompts (padded lengths under `--keep_padding`). */
  tokens: number;
  hidden: number;
  layers: number;
  dtype: ActivationDType;
  /** Prompts (for per-record overhead). */
  prompts?: number;
}): number {
  return o.tokens * o.hidden * o.layers * dtypeSize(o.dtype) +
    (o.prompts ?? 0) * o.layers * RECORD_OVERHEAD;
}

/** Free bytes available to this user on the filesystem holding `path` (or its nearest existing parent). */
export async function freeBytes(path: string): Promise<number> {
  let p = resolve(path);
  while (true) {
    try {
      const s = await statfs(p);
      return Number(s.bavail) * Number(s.bsize);
    } catch (e) {
      const up = dirname(p);
      if (
        up === p || !(e instanceof Error && /ENOENT|NotFound|no such file/i.test(`${e.name} ${e.message}`))
      ) {
        throw e;
      }
      p = up;
    }
  }
}

/** Options for {@link checkFreeDisk}. */
export interface DiskCheckOptions {
  /** Bytes the run still has to write locally. */
  needBytes: number;
  /**
   * Headroom kept free. Default: proportional to the run — 5 % of the need (the estimate's margin) plus the
   * temp files of the shard in flight ({@link DiskCheckOptions.inFlightBytes}), at least 16 MiB (metadata.json
   * rewrites, filesystem overhead). A fixed 1 GiB minimum refused tiny runs on small disks.
   */
  reserveBytes?: number;
  /** Bytes that exist only transiently besides the output (a safetensors shard's body temp file). */
  inFlightBytes?: number;
  /** Free bytes, when already known (tests). */
  freeBytes?: number;
}

/** The check's outcome, for the pre-run summary line. */
export interface DiskCheck {
  needBytes: number;
  freeBytes: number;
  ok: boolean;
}

/** Smallest headroom kept free, whatever the run. */
export const MIN_RESERVE_BYTES = 16 * 2 ** 20;

/** The default headroom: 5 % of the need plus the transient bytes, at least {@link MIN_RESERVE_BYTES}. */
export function defaultReserve(needBytes: number, inFlightBytes = 0): number {
  return Math.max(MIN_RESERVE_BYTES, Math.ceil(needBytes * 0.05) + Math.min(inFlightBytes, needBytes));
}

/** Throws an {@link ActshardError} (kind "io") when `needBytes` plus headroom exceeds the free space. */
export async function checkFreeDisk(dir: string, opts: DiskCheckOptions): Promise<DiskCheck> {
  const free = opts.freeBytes ?? await freeBytes(dir);
  const reserve = opts.reserveBytes ?? defaultReserve(opts.needBytes, opts.inFlightBytes ?? 0);
  const ok = opts.needBytes + reserve <= free;
  if (!ok) {
    const gb = (b: number) => b < 1e9 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e9).toFixed(2)} GB`;
    throw new ActshardError(
      `not enough free disk: the run needs about ${gb(opts.needBytes)} (+${gb(reserve)} headroom), ` +
        `${gb(free)} free`,
      {
        kind: "io",
        where: dir,
        hint:
          `free ${
            gb(opts.needBytes + reserve - free)
          } there, extract fewer tasks/layers, use --dtype float16, or ` +
          "--upload_to_gcs --delete_local_after_upload",
      },
    );
  }
  return { needBytes: opts.needBytes, freeBytes: free, ok };
}
