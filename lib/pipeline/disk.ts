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
import { formatSize } from "./progress.ts";

/** Bytes per stored element of each activation dtype. */
export const DTYPE_BYTES: Record<ActivationDType, number> = { float32: 4, float16: 2, bfloat16: 2 };

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
  return o.tokens * o.hidden * o.layers * DTYPE_BYTES[o.dtype] +
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
  /** Headroom kept free (default 1 GiB or 5 % of the need, whichever is larger). */
  reserveBytes?: number;
  /** Free bytes, when already known (tests). */
  freeBytes?: number;
}

/** The check's outcome, for the pre-run summary line. */
export interface DiskCheck {
  needBytes: number;
  freeBytes: number;
  ok: boolean;
}

/** Throws an {@link ActshardError} (kind "io") when `needBytes` plus headroom exceeds the free space. */
export async function checkFreeDisk(dir: string, opts: DiskCheckOptions): Promise<DiskCheck> {
  const free = opts.freeBytes ?? await freeBytes(dir);
  const reserve = opts.reserveBytes ?? Math.max(1 << 30, opts.needBytes * 0.05);
  const ok = opts.needBytes + reserve <= free;
  if (!ok) {
    // The units of the run summary and progress (GiB shown as GB, as the seed's MB are MiB).
    const gb = formatSize;
    throw new ActshardError(
      `not enough free disk: the run needs about ${gb(opts.needBytes)} (+${gb(reserve)} headroom), ` +
        `${gb(free)} free`,
      {
        kind: "io",
        where: dir,
        hint: "free space, extract fewer tasks/layers, use --dtype float16, or " +
          "--upload_to_gcs --delete_local_after_upload",
      },
    );
  }
  return { needBytes: opts.needBytes, freeBytes: free, ok };
}
