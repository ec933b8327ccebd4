/**
 * The state of one dataset verification, shared by the dataset-level checks (verify.ts) and the per-shard
 * checks (verify_shard.ts): the report being built and what is tallied across shards, with the report's
 * types. Its own module so that neither check module imports the other's (verify.ts re-exports the report
 * types).
 *
 * @example
 * ```ts
 * import { Verification } from "./verify_state.ts";
 * const v = new Verification("/data/run", null);
 * v.issue("error", "shard listed in metadata.json is missing", "shard_0001.pkl.gz");
 * v.incomplete("no metadata.json: nothing says the run finished");
 * const r = v.result();
 * console.log(r.ok, r.complete, r.issues.length); // false false 1
 * ```
 *
 * @module
 */
import type { DatasetMetadata, ShardEntry } from "./metadata.ts";

/** One finding. Errors make the dataset fail verification. */
export interface VerifyIssue {
  /** error: fails verification; warning/note: reported only. */
  level: "error" | "warning" | "note";
  /** The shard it is about, if any. */
  shard?: string;
  /** One line saying what is wrong. */
  message: string;
}

/** What was checked for one shard. */
export interface ShardCheck {
  /** Shard location relative to the root. */
  name: string;
  /** "object-info": size + crc32c from the store only; "streamed": re-hashed and decoded. */
  method: "object-info" | "streamed" | "missing";
  /** Bytes checked. */
  bytes: number;
  /** Records decoded (0 for object-info). */
  records: number;
  /** Whether every check of this shard passed. */
  ok: boolean;
}

/** The result of {@link verifyDataset}. */
export interface VerifyReport {
  /** No error-level issue. */
  ok: boolean;
  /** The store's URL. */
  root: string;
  /** metadata.json was found. */
  hasMetadata: boolean;
  /** metadata.json lists sha256/crc32c (actshard-written; the seed's files have none). */
  hasChecksums: boolean;
  /** Per-shard results. */
  shards: ShardCheck[];
  /** Records over all shards. */
  records: number;
  /** Shard bytes over all shards. */
  bytes: number;
  /** Per layer: records, prompts, sample range. */
  layers: Record<
    string,
    { records: number; samples: number; sample_idx_min: number; sample_idx_max: number }
  >;
  /** Stored dtypes seen. */
  dtypes: string[];
  /** Hidden sizes seen (one, in a consistent dataset). */
  hidden: number[];
  /** NaN/Inf values found in decoded activations. */
  nonFinite: number;
  /** False when the dataset is not a finished run (in progress, interrupted, no shards, no metadata.json). */
  complete: boolean;
  /** Why it is incomplete (empty when complete). */
  incomplete: string[];
  /** Every finding, in order. */
  issues: VerifyIssue[];
}

/** A shard entry: metadata.json's, or (a dataset without one) just a listed file's name. */
export type ListedShard = Partial<ShardEntry> & { filename: string };

/** A verification in progress: the report being built, and what is tallied across shards. */
export class Verification {
  readonly report: VerifyReport;
  /** An actshard metadata.json always carries checksums: one without them was edited (nothing would be hashed). */
  readonly ours: boolean;
  /** The sample_idx values seen per layer (duplicates, coverage across layers). */
  readonly seen = new Map<number, Set<number>>();
  readonly dtypes = new Set<string>();
  readonly hidden = new Set<number>();
  duplicates = 0;
  /** Where shards deleted after their verified upload went (gs://bucket/prefix), for the closing note. */
  uploadedAway: string | null = null;

  constructor(readonly root: string, meta: DatasetMetadata | null) {
    this.ours = typeof meta?.tool === "string" && meta.tool.startsWith("actshard");
    this.report = {
      ok: true,
      root,
      hasMetadata: !!meta,
      hasChecksums: !!meta && meta.shards.length > 0 &&
        meta.shards.every((s) => typeof s.sha256 === "string"),
      shards: [],
      records: 0,
      bytes: 0,
      layers: {},
      dtypes: [],
      hidden: [],
      nonFinite: 0,
      complete: true,
      incomplete: [],
      issues: [],
    };
  }

  /** Record a finding; an error fails the dataset. */
  issue(level: VerifyIssue["level"], message: string, shard?: string): void {
    this.report.issues.push({ level, message, ...(shard ? { shard } : {}) });
    if (level === "error") this.report.ok = false;
  }

  /** Record why the dataset is not a finished run (clean but incomplete: exit 3 in the CLI). */
  incomplete(why: string): void {
    this.report.complete = false;
    this.report.incomplete.push(why);
  }

  /** The finished report. */
  result(): VerifyReport {
    this.report.dtypes = [...this.dtypes];
    this.report.hidden = [...this.hidden];
    return this.report;
  }
}
