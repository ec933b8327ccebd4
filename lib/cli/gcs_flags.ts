/**
 * The network flags of every stage that talks to GCS: `--gcs_stall_timeout_s` and `--gcs_retry_deadline_s`.
 * They set `ACTSHARD_GCS_STALL_TIMEOUT_S` / `ACTSHARD_GCS_RETRY_DEADLINE_S` for this process, which every
 * GCS connection it opens reads (lib/storage/gcs_transport.ts), so one flag covers the upload, the resume
 * lookup and the reads alike. Unset, the environment (or the defaults, 60 s and 600 s) decides.
 *
 * @example
 * ```ts
 * import { GCS_NETWORK_FLAGS, applyGcsNetworkFlags } from "./gcs_flags.ts";
 * // parseFlags("upload", args, { ...mySpecs, ...GCS_NETWORK_FLAGS }); then:
 * applyGcsNetworkFlags({ gcs_stall_timeout_s: "30" });
 * ```
 */
import type { FlagSpec } from "./flags.ts";
import { numberFlag } from "./flags.ts";
import { usageError } from "../errors.ts";

/** Flag specs to merge into a stage's own. */
export const GCS_NETWORK_FLAGS: Record<string, FlagSpec> = {
  gcs_stall_timeout_s: {
    type: "string",
    metavar: "S",
    help: "abort and retry a GCS request after S s with no byte sent or received (default 60; " +
      "$ACTSHARD_GCS_STALL_TIMEOUT_S)",
  },
  gcs_retry_deadline_s: {
    type: "string",
    metavar: "S",
    help: "give up a GCS operation that keeps failing transiently after S s (default 600; " +
      "$ACTSHARD_GCS_RETRY_DEADLINE_S)",
  },
};

const ENV: Record<string, string> = {
  gcs_stall_timeout_s: "ACTSHARD_GCS_STALL_TIMEOUT_S",
  gcs_retry_deadline_s: "ACTSHARD_GCS_RETRY_DEADLINE_S",
};

/** Validate the flags (and the environment variables they stand for) and export them to this process. */
export function applyGcsNetworkFlags(values: Record<string, string | boolean | undefined>): void {
  for (const [flag, env] of Object.entries(ENV)) {
    const v = numberFlag(flag, values[flag], { min: 0.001 });
    if (v !== undefined) {
      Deno.env.set(env, String(v));
      continue;
    }
    const raw = Deno.env.get(env);
    if (raw !== undefined && raw.trim() !== "" && !(Number(raw) > 0)) {
      throw usageError(`$${env} must be a number of seconds > 0, got "${raw}"`, `unset it or use --${flag}`);
    }
  }
}
