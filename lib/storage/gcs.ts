/**
 * `gs://bucket/prefix` as a {@link BlobStore}, plus verified uploads, on `@google-cloud/storage`.
 *
 * Uploads are resumable, streamed from the file in chunks (a dropped connection resumes at the byte the server
 * confirmed), created with `ifGenerationMatch: 0` (a rerun never silently replaces an object), and accepted only
 * when the object resource GCS returns has the local size and CRC-32C. Transient failures (408/429/5xx,
 * connection resets) are retried by the client inside an attempt and by a bounded backoff loop around attempts.
 * A 412 means the object exists: same size + CRC-32C → already uploaded (idempotent rerun); different → a clear
 * error. Auth is Application Default Credentials; with `apiEndpoint` or `STORAGE_EMULATOR_HOST` no auth is used.
 *
 * @example
 * ```ts
 * import { GcsStore } from "./gcs.ts";
 * const store = await GcsStore.open("my-bucket", "activations", { apiEndpoint: "http://127.0.0.1:4443" });
 * const info = await store.uploadFile("out/shard_0001.pkl.gz", "shard_0001.pkl.gz");
 * console.log(info.generation, (await store.list()).map((o) => o.name));
 * ```
 */
import { Buffer } from "node:buffer";
import { IdempotencyStrategy, Storage } from "@google-cloud/storage";
import type { Bucket, File } from "@google-cloud/storage";
import { ActshardError } from "../errors.ts";
import { Crc32c, crc32c, crc32cBase64, crc32cFromBase64 } from "../util/crc32c.ts";
import type { BlobStore, ObjectInfo } from "./types.ts";
import { EventEmitter } from "node:events";

// The client attaches an error/close listener per request to shared PassThrough streams, so a verify of a few
// dozen objects trips Node's leak warning (10) on every run. The listeners are released when requests end.
EventEmitter.defaultMaxListeners = Math.max(EventEmitter.defaultMaxListeners, 100);

/** GCS bucket names: lowercase letters, digits, `-`, `_`, `.`; starting and ending with a letter or digit. */
const BUCKET_RE = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

/** Parse `gs://bucket[/prefix]`; the prefix has no leading/trailing "/". */
export function parseGsUrl(url: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(url.trim());
  if (!m || !BUCKET_RE.test(m[1])) {
    throw new ActshardError(`not a valid gs:// location: "${url}"`, {
      kind: "usage",
      hint: "write it as gs://BUCKET/PREFIX (bucket: lowercase letters, digits, - _ .)",
    });
  }
  return { bucket: m[1], prefix: (m[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

/** Retry policy around whole upload attempts (the client also retries inside an attempt). */
export interface RetryPolicy {
  /** Attempts in all (default 6). */
  maxAttempts?: number;
  /** First backoff delay (default 500 ms), doubled per attempt up to `maxDelayMs` (default 16 s), with jitter. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** No new attempt starts after this long (default 15 min). */
  totalTimeoutMs?: number;
}

/** Options for {@link GcsStore.open}. */
export interface GcsStoreOptions {
  /** E.g. the emulator's URL. Default: `STORAGE_EMULATOR_HOST` if set, else real GCS. */
  apiEndpoint?: string;
  retry?: RetryPolicy;
  /** Resumable chunk size (multiple of 256 KiB; default 16 MiB): memory per upload, and what a reset resends. */
  chunkSize?: number;
  /** Check that the bucket/prefix can be listed at open (default true). */
  checkAccess?: boolean;
}

/** Local facts of a file to upload. */
export interface LocalFileFacts {
  size: number;
  crc32c: number;
}

const DEFAULT_RETRY: Required<RetryPolicy> = {
  maxAttempts: 6,
  initialDelayMs: 500,
  maxDelayMs: 16_000,
  totalTimeoutMs: 15 * 60_000,
};

/** A dataset root in a GCS bucket. */
export class GcsStore implements BlobStore {
  readonly url: string;
  readonly #bucket: Bucket;
  readonly #uploadBucket: Bucket;
  readonly #retry: Required<RetryPolicy>;
  readonly #chunkSize: number;

  private constructor(
    readonly bucket: string,
    readonly prefix: string,
    readonly storage: Storage,
    opts: GcsStoreOptions,
  ) {
    this.url = prefix ? `gs://${bucket}/${prefix}` : `gs://${bucket}`;
    this.#bucket = storage.bucket(bucket);
    // Uploads: no retries inside the client. Its in-session resume can emit an unhandled RangeError when a
    // retryable status hits the last chunk (seen with 8.4.0); our loop restarts the upload instead, which is
    // safe because the object only appears when complete and ifGenerationMatch=0 guards it.
    this.#uploadBucket = new Storage({
      ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
      retryOptions: { autoRetry: false, maxRetries: 0 },
    }).bucket(bucket);
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#chunkSize = opts.chunkSize ?? 16 * 1024 * 1024;
  }

  /** Open `gs://bucket/prefix`; checks credentials and access with one list call (unless told not to). */
  static async open(bucket: string, prefix: string, opts: GcsStoreOptions = {}): Promise<GcsStore> {
    if (!BUCKET_RE.test(bucket)) {
      // e.g. --gcs_bucket gs://b/p, which an emulator would accept and GCS would answer with a bare 400
      throw new ActshardError(`not a valid bucket name: "${bucket}"`, {
        kind: "usage",
        where: "--gcs_bucket",
        hint: "give the bucket's name only (e.g. --gcs_bucket my-bucket; the path goes in --gcs_prefix)",
      });
    }
    const retry = { ...DEFAULT_RETRY, ...opts.retry };
    const storage = new Storage({
      ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
      retryOptions: {
        autoRetry: true,
        maxRetries: 4,
        retryDelayMultiplier: 2,
        // Seconds; the client's first delay is ~1 s + jitter, capped by this.
        maxRetryDelay: Math.max(1, Math.min(retry.maxDelayMs, 32_000) / 1000), // the client needs >= 1 s
        totalTimeout: Math.max(1, retry.totalTimeoutMs / 1000),
        // We always send preconditions (ifGenerationMatch), but the client treats `0` as "no precondition"
        // and would then not retry uploads at all.
        idempotencyStrategy: IdempotencyStrategy.RetryAlways,
      },
    });
    const s = new GcsStore(bucket, prefix.replace(/^\/+|\/+$/g, ""), storage, opts);
    if (opts.checkAccess ?? true) {
      try {
        await s.#bucket.getFiles({ prefix: s.#key(""), maxResults: 1, autoPaginate: false });
      } catch (e) {
        throw gcsError(e, `gs://${bucket}`, "cannot access bucket");
      }
    }
    return s;
  }

  /** Full object key for a name relative to the root. */
  #key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  /** `gs://` URL of a name relative to the root. */
  objectUrl(name: string): string {
    return `gs://${this.bucket}/${this.#key(name)}`;
  }

  #file(name: string): File {
    return this.#bucket.file(this.#key(name));
  }

  async list(): Promise<ObjectInfo[]> {
    try {
      const [files] = await this.#bucket.getFiles({ prefix: this.prefix ? `${this.prefix}/` : "" });
      const cut = this.prefix ? this.prefix.length + 1 : 0;
      return files.map((f) => toInfo(f.metadata as Record<string, unknown>, cut))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (e) {
      throw gcsError(e, this.url, "cannot list objects");
    }
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const [m] = await this.#file(name).getMetadata();
      return toInfo(m as Record<string, unknown>, this.prefix ? this.prefix.length + 1 : 0);
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw gcsError(e, this.objectUrl(name), "cannot stat object");
    }
  }

  async read(name: string): Promise<Uint8Array> {
    try {
      const [buf] = await this.#file(name).download();
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      throw gcsError(e, this.objectUrl(name), "cannot read object");
    }
  }

  async readRange(name: string, start: number, end: number): Promise<Uint8Array> {
    if (end <= start) return new Uint8Array();
    try {
      const [buf] = await this.#file(name).download({ start, end: end - 1 });
      if (buf.byteLength !== end - start) {
        throw new ActshardError(`short ranged read: got ${buf.byteLength} of ${end - start} bytes`, {
          where: this.objectUrl(name),
          kind: "remote",
        });
      }
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      if (e instanceof ActshardError) throw e;
      throw gcsError(e, this.objectUrl(name), "cannot read object range");
    }
  }

  // deno-lint-ignore require-await
  async openRead(name: string): Promise<ReadableStream<Uint8Array>> {
    const node = this.#file(name).createReadStream({ validation: "crc32c" });
    const where = this.objectUrl(name);
    const it = node[Symbol.asyncIterator]();
    return new ReadableStream<Uint8Array>({
      async pull(ctl) {
        try {
          const { value, done } = await it.next();
          if (done) ctl.close();
          else ctl.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
        } catch (e) {
          ctl.error(gcsError(e, where, "cannot read object"));
        }
      },
      cancel() {
        node.destroy();
      },
    });
  }

  /**
   * Upload a local file as `name` (resumable, chunked, `ifGenerationMatch: 0`), retrying transient failures
   * within the retry policy, and return the remote object once its size and CRC-32C equal the local ones.
   * If the object already exists with the same size and CRC-32C, that object is returned (idempotent rerun).
   */
  async uploadFile(
    localPath: string,
    name: string,
    opts: { local?: LocalFileFacts; contentType?: string } = {},
  ): Promise<ObjectInfo> {
    const local = opts.local ?? await fileFacts(localPath);
    const where = this.objectUrl(name);
    return await this.#withRetry(where, async () => {
      try {
        await this.#uploadBucket.upload(localPath, {
          destination: this.#key(name),
          resumable: true,
          chunkSize: this.#chunkSize,
          validation: "crc32c",
          preconditionOpts: { ifGenerationMatch: 0 },
          metadata: { contentType: opts.contentType ?? "application/octet-stream" },
        });
      } catch (e) {
        if (statusOf(e) !== 412) throw e;
        // Exists already (a previous run, or an earlier attempt whose answer was lost): compare below.
      }
      return await this.#confirm(name, local, where);
    });
  }

  /**
   * Write a small object (metadata.json) in one request, replacing whatever is there, and confirm it.
   * The write is conditional on the generation seen just before, so two writers cannot interleave silently.
   */
  async writeSmall(name: string, data: Uint8Array, contentType = "application/json"): Promise<ObjectInfo> {
    const where = this.objectUrl(name);
    const local = { size: data.byteLength, crc32c: crc32c(data) };
    return await this.#withRetry(where, async () => {
      const before = await this.stat(name);
      if (before && before.size === local.size && before.crc32c === local.crc32c) return before;
      try {
        await this.#file(name).save(Buffer.from(data), {
          resumable: false,
          validation: "crc32c",
          contentType,
          preconditionOpts: { ifGenerationMatch: before ? Number(before.generation) : 0 },
        });
      } catch (e) {
        if (statusOf(e) !== 412) throw e;
      }
      const after = await this.stat(name);
      if (!after || after.size !== local.size || after.crc32c !== local.crc32c) {
        throw Object.assign(new Error("object changed concurrently"), { code: 503 }); // retry
      }
      return after;
    });
  }

  /** Delete an object (absent is fine). */
  async delete(name: string): Promise<void> {
    try {
      await this.#file(name).delete({ ignoreNotFound: true });
    } catch (e) {
      throw gcsError(e, this.objectUrl(name), "cannot delete object");
    }
  }

  async #confirm(name: string, local: LocalFileFacts, where: string): Promise<ObjectInfo> {
    const remote = await this.stat(name);
    if (!remote) {
      throw Object.assign(new Error("upload reported success but the object is absent"), { code: 503 });
    }
    if (remote.size !== local.size || remote.crc32c !== local.crc32c) {
      throw new ActshardError(
        `a different object already exists at ${where} (remote ${remote.size} bytes, crc32c ${
          crc32cBase64(remote.crc32c ?? 0)
        }; local ${local.size} bytes, crc32c ${crc32cBase64(local.crc32c)})`,
        {
          where,
          kind: "remote",
          hint: "it was not overwritten; delete it or upload under another --gcs_prefix",
        },
      );
    }
    return remote;
  }

  async #withRetry<T>(where: string, fn: () => Promise<T>): Promise<T> {
    const p = this.#retry;
    const t0 = Date.now();
    let delay = p.initialDelayMs;
    for (let attempt = 1;; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof ActshardError) throw e;
        const elapsed = Date.now() - t0;
        if (!isRetryable(e) || attempt >= p.maxAttempts || elapsed + delay > p.totalTimeoutMs) {
          const err = gcsError(e, where, "upload failed");
          if (isRetryable(e)) {
            throw new ActshardError(`upload failed after ${attempt} attempts: ${err.message}`, {
              where,
              kind: "remote",
              hint: "the local file was kept; rerun (or `deno task upload`) once GCS is reachable",
              cause: e,
            });
          }
          throw err;
        }
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random() / 2)));
        delay = Math.min(delay * 2, p.maxDelayMs);
      }
    }
  }
}

/** Size and CRC-32C of a local file, streamed. */
export async function fileFacts(path: string): Promise<LocalFileFacts> {
  const c = new Crc32c();
  let size = 0;
  const f = await Deno.open(path);
  for await (const chunk of f.readable) {
    c.update(chunk);
    size += chunk.length;
  }
  return { size, crc32c: c.value() };
}

function toInfo(m: Record<string, unknown>, cut: number): ObjectInfo {
  return {
    name: String(m.name).slice(cut),
    size: Number(m.size),
    crc32c: typeof m.crc32c === "string" ? crc32cFromBase64(m.crc32c) : undefined,
    generation: m.generation === undefined ? undefined : String(m.generation),
  };
}

/** HTTP status of a client error, when it has one. */
export function statusOf(e: unknown): number | undefined {
  const c = (e as { code?: unknown; status?: unknown })?.code ?? (e as { status?: unknown })?.status;
  const n = typeof c === "string" ? Number(c) : c;
  return typeof n === "number" && Number.isFinite(n) ? n : undefined;
}

const TRANSIENT_CODES = new Set([408, 429, 500, 502, 503, 504]);
const TRANSIENT_TEXT =
  /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|socket hang up|aborted|premature close|connection (closed|reset)|Retry limit exceeded|Retry total time limit|checksum mismatch|FILE_NO_UPLOAD|network|body/i;

function isRetryable(e: unknown): boolean {
  if (isAuthError(e)) return false;
  const s = statusOf(e);
  if (s !== undefined && TRANSIENT_CODES.has(s)) return true;
  if (s !== undefined && s >= 400 && s < 500) return false;
  const text = `${(e as Error)?.message ?? ""} ${(e as { code?: unknown })?.code ?? ""}`;
  return TRANSIENT_TEXT.test(text);
}

function isAuthError(e: unknown): boolean {
  const s = statusOf(e);
  const msg = String((e as Error)?.message ?? e);
  return s === 401 || s === 403 ||
    /default credentials|invalid_grant|invalid authentication|reauth|Could not refresh access token|unauthorized_client/i
      .test(msg);
}

/** One-line ActshardError for a client failure; never includes credentials (only the client's message). */
export function gcsError(e: unknown, where: string, what: string): ActshardError {
  if (e instanceof ActshardError) return e;
  const msg = String((e as Error)?.message ?? e).split("\n")[0].slice(0, 300);
  const s = statusOf(e);
  if (/default credentials/i.test(msg)) {
    return new ActshardError(`${what}: no Google credentials found`, {
      where,
      kind: "remote",
      hint:
        "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a key file)",
      cause: e,
    });
  }
  if (isAuthError(e)) {
    return new ActshardError(`${what}: credentials were refused (${s ?? "auth error"})`, {
      where,
      kind: "remote",
      hint:
        "run `gcloud auth application-default login` with an account that can read/write this bucket (roles/storage.objectAdmin)",
      cause: e,
    });
  }
  if (s === 404) {
    return new ActshardError(`${what}: not found (${msg})`, {
      where,
      kind: "remote",
      hint: "check the bucket name (it must exist) and the prefix",
      cause: e,
    });
  }
  return new ActshardError(`${what}: ${msg}`, { where, kind: "remote", cause: e });
}
