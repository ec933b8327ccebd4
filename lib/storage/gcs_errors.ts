/**
 * GCS failures as one-line {@link ActshardError}s with a hint that fits the cause and where this process runs
 * (permission denied on a VM → IAM role or access scopes; on a workstation → the account; network failures named
 * as such, never as a corrupt file). Never includes credentials (only the server's message).
 */
import { ActshardError } from "../errors.ts";
import { type Credentials, scopesAllowWrite } from "./gcs_auth.ts";
import { GcsRequestError, type RetryNotice, TRANSIENT_STATUS } from "./gcs_transport.ts";

/** HTTP status of a failure, when it has one. */
export function statusOf(e: unknown): number | undefined {
  if (e instanceof GcsRequestError) return e.status || undefined;
  const c = (e as { code?: unknown; status?: unknown })?.code ?? (e as { status?: unknown })?.status;
  const n = typeof c === "string" ? Number(c) : c;
  return typeof n === "number" && Number.isFinite(n) ? n : undefined;
}

/** One-line ActshardError for a failure; never includes credentials (only the server's message). */
export function gcsError(e: unknown, where: string, what: string, creds?: Credentials): ActshardError {
  if (e instanceof ActshardError) return e;
  const msg = String((e as Error)?.message ?? e).split("\n")[0].slice(0, 300);
  const s = statusOf(e);
  if (s === 401 || s === 403) {
    let hint: string;
    if (creds?.source === "metadata-server") {
      hint = scopesAllowWrite(creds.vmScopes)
        ? "grant this VM's service account roles/storage.objectAdmin on the bucket (IAM)"
        : "this VM's access scopes lack Storage read/write: stop it and change its access scopes";
    } else {
      hint = "use an account with roles/storage.objectAdmin on the bucket " +
        "(`gcloud auth application-default login`, or a key file in GOOGLE_APPLICATION_CREDENTIALS)";
    }
    return new ActshardError(`${what}: permission denied (${s}): ${msg}`, {
      where,
      kind: "remote",
      hint,
      cause: e,
    });
  }
  if (s === 404) {
    return new ActshardError(`${what}: not found (${msg})`, {
      where,
      kind: "remote",
      hint: "check the bucket name (it must exist; create it first) and the prefix",
      cause: e,
    });
  }
  if (e instanceof GcsRequestError && e.status === 0 && e.cause_kind !== "checksum") {
    return new ActshardError(`${what}: network failure, ${msg}`, {
      where,
      kind: "remote",
      hint: e.cause_kind === "dns"
        ? "check the network and DNS (or STORAGE_EMULATOR_HOST), then rerun; local files are kept"
        : "GCS did not answer in time; check the network (or STORAGE_EMULATOR_HOST), then rerun; local files are kept",
      cause: e,
    });
  }
  if (e instanceof GcsRequestError && TRANSIENT_STATUS.has(s ?? -1)) {
    return new ActshardError(`${what}: ${msg}`, {
      where,
      kind: "remote",
      hint: "GCS kept failing; local files are kept: rerun (or `deno task upload`) once it answers",
      cause: e,
    });
  }
  return new ActshardError(`${what}: ${msg}`, { where, kind: "remote", cause: e });
}

/**
 * A retry wait as one progress line.
 *
 * @example
 * ```ts
 * import { retryLine } from "./gcs_errors.ts";
 * console.log(retryLine({ what: "uploading", where: "gs://b/p/shard_0001.pkl", reason: "HTTP 503", attempt: 0,
 *   delayMs: 1500, deadlineLeftMs: 598_000 })); // "gcs: uploading gs://b/p/shard_0001.pkl: HTTP 503; retrying in 1.5 s (attempt 1, …)"
 * ```
 */
export function retryLine(n: RetryNotice): string {
  return `gcs: ${n.what} ${n.where}: ${n.reason}; retrying in ${(n.delayMs / 1000).toFixed(1)} s ` +
    `(attempt ${n.attempt + 1}, gives up in ${(n.deadlineLeftMs / 1000).toFixed(0)} s)`;
}

/** Default retry notice: one line on stderr, so a run that is waiting says so. */
export function logRetry(n: RetryNotice): void {
  console.error(retryLine(n));
}
