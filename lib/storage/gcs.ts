/**
 * `gs://bucket/prefix` as a {@link BlobStore}, plus verified uploads, on the GCS JSON API over our own
 * transport ({@link GcsTransport}: a stall watchdog on every request and a retry deadline per operation; see
 * gcs_transport.ts for why not `@google-cloud/storage`).
 *
 * Uploads are resumable, streamed from the file in chunks (a failed chunk resumes at the byte the server
 * confirmed), created with `ifGenerationMatch: 0` (a rerun never silently replaces an object), and accepted only
 * when the object resource GCS returns has the local size and CRC-32C. A 412 means the object exists: same size +
 * CRC-32C → already uploaded (idempotent rerun); different → a clear error. Reads resume a dropped or truncated
 * download with `Range` (pinned to the generation first seen) and check the whole object's CRC-32C.
 * Auth: gcs_auth.ts (Application Default Credentials); with `apiEndpoint` or `STORAGE_EMULATOR_HOST` none.
 *
 * @example
 * ```ts
 * import { GcsStore } from "./gcs.ts";
 * import { startGcsEmulator } from "./gcs_emulator/server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true }); // without apiEndpoint: GCS itself, ADC auth
 * const file = await Deno.makeTempFile();
 * await Deno.writeTextFile(file, "shard bytes");
 * const store = await GcsStore.open("my-bucket", "activations", { apiEndpoint: emu.url });
 * const info = await store.uploadFile(file, "shard_0001.pkl.gz");
 * console.log(info.generation, (await store.list()).map((o) => o.name)); // … ["shard_0001.pkl.gz"]
 * await emu.close();
 * await Deno.remove(file);
 * ```
 */
import { ActshardError } from "../errors.ts";
import { crc32c, crc32cBase64 } from "../util/crc32c.ts";
import type { BlobStore, ObjectInfo } from "./types.ts";
import { type Credentials, findCredentials, scopesAllowWrite } from "./gcs_auth.ts";
import {
  envNumber,
  GcsRequestError,
  GcsTransport,
  type RetryNotice,
  type RetryPolicy,
} from "./gcs_transport.ts";
import { uploadResumable } from "./gcs_resumable.ts";
import { downloadRange } from "./gcs_download.ts";
import { gcsError, logRetry } from "./gcs_errors.ts";
import { gcsEndpoint, isBucketName } from "./gcs_location.ts";
import { concat, fileFacts, type LocalFileFacts, toInfo } from "./gcs_objects.ts";

export { gcsError, logRetry, retryLine, statusOf } from "./gcs_errors.ts";
export { gcsEndpoint, parseGsUrl } from "./gcs_location.ts";
export { concat, fileFacts, type LocalFileFacts, toInfo } from "./gcs_objects.ts";

export type { RetryPolicy } from "./gcs_transport.ts";

/** Options for {@link GcsStore.open}. */
export interface GcsStoreOptions {
  /** E.g. the emulator's URL. Default: `STORAGE_EMULATOR_HOST` if set, else real GCS. */
  apiEndpoint?: string;
  retry?: RetryPolicy;
  /** No byte sent or received for this long aborts a request (default ACTSHARD_GCS_STALL_TIMEOUT_S or 60 s). */
  stallTimeoutMs?: number;
  /** Resumable chunk size (multiple of 256 KiB; default 16 MiB): memory per upload, and what a failure resends. */
  chunkSize?: number;
  /** Check that the bucket/prefix can be listed at open (default true). */
  checkAccess?: boolean;
  /** Told about each retry wait (default: one line on stderr). */
  onRetry?: (n: RetryNotice) => void;
}

/** A dataset root in a GCS bucket. */
export class GcsStore implements BlobStore {
  readonly url: string;
  readonly transport: GcsTransport;
  readonly chunkSize: number;
  /** How this process authenticates (undefined against an emulator). */
  readonly credentials?: Credentials;

  private constructor(
    readonly bucket: string,
    readonly prefix: string,
    transport: GcsTransport,
    chunkSize: number,
    credentials?: Credentials,
  ) {
    this.url = prefix ? `gs://${bucket}/${prefix}` : `gs://${bucket}`;
    this.transport = transport;
    this.chunkSize = chunkSize;
    this.credentials = credentials;
  }

  /** Open `gs://bucket/prefix`; checks credentials and access with one list call (unless told not to). */
  static async open(bucket: string, prefix: string, opts: GcsStoreOptions = {}): Promise<GcsStore> {
    if (!isBucketName(bucket)) {
      // e.g. --gcs_bucket gs://b/p, which an emulator would accept and GCS would answer with a bare 400
      throw new ActshardError(`not a valid bucket name: "${bucket}"`, {
        kind: "usage",
        where: "--gcs_bucket",
        hint: "give the bucket's name only (e.g. --gcs_bucket my-bucket; the path goes in --gcs_prefix)",
      });
    }
    const ep = gcsEndpoint(opts.apiEndpoint);
    const credentials = ep.emulator ? undefined : await findCredentials();
    const transport = new GcsTransport({
      endpoint: ep.url,
      token: credentials ? () => credentials.token() : null,
      stallTimeoutMs: opts.stallTimeoutMs,
      retry: opts.retry,
      onRetry: opts.onRetry ?? logRetry,
    });
    // ACTSHARD_GCS_CHUNK_SIZE (bytes): a tuning and test knob (memory per upload vs. requests per shard).
    const chunk = opts.chunkSize ?? envNumber("ACTSHARD_GCS_CHUNK_SIZE") ?? 16 * 1024 * 1024;
    const s = new GcsStore(bucket, prefix.replace(/^\/+|\/+$/g, ""), transport, chunk, credentials);
    if (opts.checkAccess ?? true) {
      try {
        await s.#listPage(s.prefix ? `${s.prefix}/` : "", undefined, 1);
      } catch (e) {
        throw s.error(e, `gs://${bucket}`, "cannot access bucket");
      }
    }
    return s;
  }

  /** Full object key for a name relative to the root. */
  key(name: string): string {
    return this.prefix ? `${this.prefix}/${name}` : name;
  }

  /** `gs://` URL of a name relative to the root. */
  objectUrl(name: string): string {
    return `gs://${this.bucket}/${this.key(name)}`;
  }

  /** JSON-API path of an object (relative to /storage/v1 or /upload/storage/v1). */
  objectPath(name: string): string {
    return `/b/${encodeURIComponent(this.bucket)}/o/${encodeURIComponent(this.key(name))}`;
  }

  async #listPage(prefix: string, pageToken: string | undefined, max = 1000) {
    const t = this.transport;
    const url = t.jsonUrl(`/b/${encodeURIComponent(this.bucket)}/o`, { prefix, pageToken, maxResults: max });
    return await t.retrying("list", this.url, async () => {
      const r = await t.request("GET", url);
      return await r.json() as { items?: Record<string, unknown>[]; nextPageToken?: string };
    });
  }

  async list(): Promise<ObjectInfo[]> {
    try {
      const out: ObjectInfo[] = [];
      const cut = this.prefix ? this.prefix.length + 1 : 0;
      let token: string | undefined;
      do {
        const page = await this.#listPage(this.prefix ? `${this.prefix}/` : "", token);
        for (const m of page.items ?? []) out.push(toInfo(m, cut));
        token = page.nextPageToken;
      } while (token);
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch (e) {
      throw this.error(e, this.url, "cannot list objects");
    }
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const t = this.transport;
    try {
      return await t.retrying("stat", this.objectUrl(name), async () => {
        try {
          const r = await t.request("GET", t.jsonUrl(this.objectPath(name)));
          return toInfo(await r.json(), this.prefix ? this.prefix.length + 1 : 0);
        } catch (e) {
          if (e instanceof GcsRequestError && e.status === 404) return null;
          throw e;
        }
      });
    } catch (e) {
      throw this.error(e, this.objectUrl(name), "cannot stat object");
    }
  }

  async read(name: string): Promise<Uint8Array> {
    for (let tries = 1;; tries++) {
      try {
        const parts: Uint8Array[] = [];
        for await (const c of downloadRange(this, name, 0, undefined)) parts.push(c);
        return concat(parts);
      } catch (e) {
        // A whole-object CRC-32C mismatch is damage in transit (GCS checks what it stores): read it again.
        if (tries < 3 && e instanceof GcsRequestError && e.cause_kind === "checksum") continue;
        throw this.error(e, this.objectUrl(name), "cannot read object");
      }
    }
  }

  async readRange(name: string, start: number, end: number): Promise<Uint8Array> {
    if (end <= start) return new Uint8Array();
    let buf: Uint8Array;
    try {
      const parts: Uint8Array[] = [];
      for await (const c of downloadRange(this, name, start, end)) parts.push(c);
      buf = concat(parts);
    } catch (e) {
      throw this.error(e, this.objectUrl(name), "cannot read object range");
    }
    if (buf.byteLength !== end - start) {
      throw new ActshardError(`short ranged read: got ${buf.byteLength} of ${end - start} bytes`, {
        where: this.objectUrl(name),
        kind: "remote",
      });
    }
    return buf;
  }

  // deno-lint-ignore require-await
  async openRead(name: string): Promise<ReadableStream<Uint8Array>> {
    const it = downloadRange(this, name, 0, undefined);
    const where = this.objectUrl(name);
    return new ReadableStream<Uint8Array>({
      pull: async (ctl) => {
        try {
          const { value, done } = await it.next();
          if (done) ctl.close();
          else ctl.enqueue(value);
        } catch (e) {
          ctl.error(this.error(e, where, "cannot read object"));
        }
      },
      async cancel() {
        await it.return(undefined);
      },
    });
  }

  /**
   * Upload a local file as `name` (resumable, chunked, `ifGenerationMatch: 0`), retrying transient failures
   * within the retry deadline, and return the remote object once its size and CRC-32C equal the local ones.
   * If the object already exists with the same size and CRC-32C, that object is returned (idempotent rerun).
   */
  async uploadFile(
    localPath: string,
    name: string,
    opts: { local?: LocalFileFacts; contentType?: string } = {},
  ): Promise<ObjectInfo> {
    const local = opts.local ?? await fileFacts(localPath);
    const where = this.objectUrl(name);
    try {
      const res = await uploadResumable(this, localPath, name, local, opts.contentType);
      return await this.#confirm(name, local, where, res ? toInfo(res, this.#cut) : null);
    } catch (e) {
      throw this.error(e, where, "upload failed");
    }
  }

  get #cut(): number {
    return this.prefix ? this.prefix.length + 1 : 0;
  }

  /**
   * Write a small object (metadata.json) in one request and confirm it. Conditional: on `ifGenerationMatch`
   * when given (the generation this writer last saw: a 412 with other content means another writer), else on
   * the generation seen just before. Returns the object written.
   */
  async writeSmall(
    name: string,
    data: Uint8Array,
    contentType = "application/json",
    opts: { ifGenerationMatch?: string } = {},
  ): Promise<ObjectInfo> {
    const where = this.objectUrl(name);
    let gen = opts.ifGenerationMatch;
    if (gen === undefined) {
      const before = await this.stat(name);
      if (before && before.size === data.byteLength && before.crc32c === crc32c(data)) return before;
      gen = before?.generation ?? "0";
    }
    const r = await this.tryWrite(name, data, contentType, gen);
    if ("written" in r) return r.written;
    throw new ActshardError(
      `${name} was changed by another writer (generation ${
        r.conflict?.generation ?? "none"
      }, expected ${gen})`,
      {
        where,
        kind: "remote",
        hint: "two runs write this prefix; stop one of them, or give each its own --gcs_prefix",
      },
    );
  }

  /**
   * Write `data` as `name` if its generation is `ifGenerationMatch` ("0": only if absent). A 412 whose object
   * holds exactly `data` (our own earlier attempt whose answer was lost) counts as written; otherwise the
   * object that won is returned as `conflict` (null if it is gone again).
   */
  async tryWrite(
    name: string,
    data: Uint8Array,
    contentType: string,
    ifGenerationMatch: string,
  ): Promise<{ written: ObjectInfo } | { conflict: ObjectInfo | null }> {
    const where = this.objectUrl(name);
    const local = { size: data.byteLength, crc32c: crc32c(data) };
    const t = this.transport;
    const boundary = `actshard-${crypto.randomUUID()}`;
    const meta = JSON.stringify({ name: this.key(name), contentType, crc32c: crc32cBase64(local.crc32c) });
    const te = new TextEncoder();
    const body = concat([
      te.encode(`--${boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n${meta}\r\n`),
      te.encode(`--${boundary}\r\ncontent-type: ${contentType}\r\n\r\n`),
      data,
      te.encode(`\r\n--${boundary}--\r\n`),
    ]);
    const url = t.uploadUrl(`/b/${encodeURIComponent(this.bucket)}/o`, {
      uploadType: "multipart",
      name: this.key(name),
      ifGenerationMatch,
    });
    try {
      return await t.retrying("write", where, async () => {
        try {
          const r = await t.request("POST", url, {
            headers: { "content-type": `multipart/related; boundary=${boundary}` },
            body,
          });
          const info = toInfo(await r.json(), this.#cut);
          if (info.size === local.size && info.crc32c === local.crc32c) return { written: info };
          throw new GcsRequestError("the object written differs from what was sent", 0, true, "checksum");
        } catch (e) {
          if (!(e instanceof GcsRequestError) || e.status !== 412) throw e;
          const now = await this.stat(name);
          if (now && now.size === local.size && now.crc32c === local.crc32c) return { written: now };
          return { conflict: now };
        }
      });
    } catch (e) {
      throw this.error(e, where, "cannot write object");
    }
  }

  /** Delete an object (absent is fine); `ifGenerationMatch` makes it conditional. */
  async delete(name: string, opts: { ifGenerationMatch?: string } = {}): Promise<void> {
    const t = this.transport;
    try {
      await t.retrying("delete", this.objectUrl(name), async () => {
        try {
          (await t.request("DELETE", t.jsonUrl(this.objectPath(name), opts))).release();
        } catch (e) {
          if (e instanceof GcsRequestError && e.status === 404) return;
          throw e;
        }
      });
    } catch (e) {
      throw this.error(e, this.objectUrl(name), "cannot delete object");
    }
  }

  /**
   * Prove this process may write under the prefix before any work: create a tiny object with
   * `ifGenerationMatch=0`, then delete it. A read-only account or a VM without write scope fails here.
   */
  async probeWrite(): Promise<void> {
    if (this.credentials && !scopesAllowWrite(this.credentials.vmScopes)) {
      throw new ActshardError("this VM's access scopes do not allow writing to GCS", {
        where: this.url,
        kind: "remote",
        hint: `its scopes are ${this.credentials.vmScopes!.join(", ") || "none"}; stop the VM and set its ` +
          "access scopes to include Storage read/write (or cloud-platform), or run with a key file " +
          "(GOOGLE_APPLICATION_CREDENTIALS)",
      });
    }
    const name = `.actshard-write-probe-${crypto.randomUUID()}`;
    const r = await this.tryWrite(name, new TextEncoder().encode("probe\n"), "text/plain", "0").catch((e) => {
      throw this.error((e as ActshardError).cause ?? e, this.url, "cannot write under this prefix");
    });
    if ("written" in r) await this.delete(name, { ifGenerationMatch: r.written.generation });
  }

  async #confirm(
    name: string,
    local: LocalFileFacts,
    where: string,
    known: ObjectInfo | null,
  ): Promise<ObjectInfo> {
    const remote = known ?? await this.stat(name);
    if (!remote) throw new GcsRequestError("upload reported success but the object is absent", 503, true);
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

  /** One-line ActshardError for a failure, with a hint that fits where this process runs. */
  error(e: unknown, where: string, what: string): ActshardError {
    return gcsError(e, where, what, this.credentials);
  }
}
