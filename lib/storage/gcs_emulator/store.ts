/**
 * The GCS emulator's persistent state: buckets, live object generations (resource JSON + data file) and
 * resumable upload sessions, all under one directory so an emulator restarted on the same `--dir` sees the same
 * bucket contents and can continue open upload sessions. The index lives in memory (loaded at start); every
 * change is written to disk with temp file + rename before it is acknowledged. Preconditions are checked and the
 * index updated synchronously, so concurrent uploads of one name cannot both win an `ifGenerationMatch=0`.
 *
 * Layout: `DIR/buckets/<bucket>/bucket.json`, `…/objects/<encoded name>.json`, `…/data/<generation>`,
 * `DIR/sessions/<id>.json` and `<id>.part`.
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import { Crc32c, crc32cBase64 } from "../../util/crc32c.ts";

/** A GCS bucket resource (the fields the client reads). */
export interface BucketResource {
  kind: "storage#bucket";
  id: string;
  name: string;
  projectNumber: string;
  metageneration: string;
  location: string;
  storageClass: string;
  timeCreated: string;
  updated: string;
  etag: string;
}

/** A GCS object resource, as the JSON API returns it. */
export interface ObjectResource {
  kind: "storage#object";
  id: string;
  selfLink: string;
  mediaLink: string;
  name: string;
  bucket: string;
  generation: string;
  metageneration: string;
  contentType: string;
  /** Kept as given (e.g. "gzip"); the emulator never transcodes. */
  contentEncoding?: string;
  storageClass: string;
  size: string;
  md5Hash: string;
  crc32c: string;
  etag: string;
  timeCreated: string;
  updated: string;
  metadata?: Record<string, string>;
}

/** An open resumable upload session. */
export interface UploadSession {
  id: string;
  bucket: string;
  name: string;
  /** Declared total size, when known (from X-Upload-Content-Length or a final Content-Range). */
  total?: number;
  /** Bytes received and persisted so far. */
  received: number;
  contentType: string;
  contentEncoding?: string;
  metadata?: Record<string, string>;
  ifGenerationMatch?: string;
  ifGenerationNotMatch?: string;
  /** Checksums declared in the session's object metadata, checked at finalization. */
  crc32c?: string;
  md5Hash?: string;
  /** Set once the upload completed: status queries then answer 200 with this resource. */
  done?: ObjectResource;
}

/** Thrown by store operations; the server maps it to an HTTP error. */
export class GcsHttpError extends Error {
  constructor(readonly status: number, message: string, readonly reason = "invalid") {
    super(message);
  }
}

/** Preconditions as sent in query parameters. */
export interface Preconditions {
  ifGenerationMatch?: string | null;
  ifGenerationNotMatch?: string | null;
  ifMetagenerationMatch?: string | null;
  ifMetagenerationNotMatch?: string | null;
}

const enc = encodeURIComponent;

/** Persistent emulator state. */
export class EmulatorStore {
  #buckets = new Map<string, { res: BucketResource; objects: Map<string, ObjectResource> }>();
  #sessions = new Map<string, UploadSession>();
  #lastGen = 0;
  #lastWrite = new Map<string, number>();
  /** See GcsEmulatorOptions.listPageSize. */
  listPageSize?: number;
  /** See GcsEmulatorOptions.objectWriteRateLimit. */
  objectWriteRateLimit = false;

  private constructor(readonly dir: string, readonly baseUrl: () => string, readonly autoCreate: boolean) {}

  /** Open (and load) the state under `dir`. */
  static async open(dir: string, baseUrl: () => string, autoCreate = true): Promise<EmulatorStore> {
    const s = new EmulatorStore(dir, baseUrl, autoCreate);
    await Deno.mkdir(join(dir, "buckets"), { recursive: true });
    await Deno.mkdir(join(dir, "sessions"), { recursive: true });
    for await (const b of Deno.readDir(join(dir, "buckets"))) {
      if (!b.isDirectory) continue;
      const bdir = join(dir, "buckets", b.name);
      const res = JSON.parse(await Deno.readTextFile(join(bdir, "bucket.json"))) as BucketResource;
      const objects = new Map<string, ObjectResource>();
      for await (const o of Deno.readDir(join(bdir, "objects"))) {
        if (!o.name.endsWith(".json")) continue;
        const r = JSON.parse(await Deno.readTextFile(join(bdir, "objects", o.name))) as ObjectResource;
        objects.set(r.name, r);
        s.#lastGen = Math.max(s.#lastGen, Number(r.generation));
      }
      s.#buckets.set(res.name, { res, objects });
    }
    for await (const f of Deno.readDir(join(dir, "sessions"))) {
      if (!f.name.endsWith(".json")) continue;
      const sess = JSON.parse(await Deno.readTextFile(join(dir, "sessions", f.name))) as UploadSession;
      s.#sessions.set(sess.id, sess);
    }
    return s;
  }

  /** A new generation number: microseconds since the epoch, strictly increasing (as GCS). */
  #nextGeneration(): string {
    this.#lastGen = Math.max(this.#lastGen + 1, Date.now() * 1000);
    return String(this.#lastGen);
  }

  // ---- buckets ----

  /** Create a bucket; 409 when it exists. */
  async createBucket(name: string): Promise<BucketResource> {
    if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(name)) {
      throw new GcsHttpError(400, `Invalid bucket name: '${name}'`);
    }
    if (this.#buckets.has(name)) {
      throw new GcsHttpError(
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
        "conflict",
      );
    }
    const now = new Date().toISOString();
    const res: BucketResource = {
      kind: "storage#bucket",
      id: name,
      name,
      projectNumber: "0",
      metageneration: "1",
      location: "US",
      storageClass: "STANDARD",
      timeCreated: now,
      updated: now,
      etag: "CAE=",
    };
    const bdir = join(this.dir, "buckets", enc(name));
    await Deno.mkdir(join(bdir, "objects"), { recursive: true });
    await Deno.mkdir(join(bdir, "data"), { recursive: true });
    await atomicWrite(join(bdir, "bucket.json"), JSON.stringify(res));
    this.#buckets.set(name, { res, objects: new Map() });
    return res;
  }

  /** The bucket (auto-created when enabled); 404 otherwise. */
  async bucket(name: string): Promise<{ res: BucketResource; objects: Map<string, ObjectResource> }> {
    let b = this.#buckets.get(name);
    if (!b && this.autoCreate) {
      await this.createBucket(name);
      b = this.#buckets.get(name);
    }
    if (!b) throw new GcsHttpError(404, `The specified bucket does not exist.`, "notFound");
    return b;
  }

  // ---- objects ----

  /** The live object, or a 404. */
  async object(bucket: string, name: string, generation?: string | null): Promise<ObjectResource> {
    const o = (await this.bucket(bucket)).objects.get(name);
    if (!o || (generation && generation !== o.generation)) {
      throw new GcsHttpError(404, `No such object: ${bucket}/${name}`, "notFound");
    }
    return o;
  }

  /** Path of an object's data file. */
  dataPath(bucket: string, generation: string): string {
    return join(this.dir, "buckets", enc(bucket), "data", generation);
  }

  /** Check preconditions against the live object (absent = generation 0). */
  checkPreconditions(existing: ObjectResource | undefined, p: Preconditions): void {
    const gen = existing?.generation ?? "0";
    const meta = existing?.metageneration ?? "0";
    const fail = () => {
      throw new GcsHttpError(
        412,
        "At least one of the pre-conditions you specified did not hold.",
        "conditionNotMet",
      );
    };
    if (p.ifGenerationMatch != null && p.ifGenerationMatch !== gen) fail();
    if (p.ifGenerationNotMatch != null && p.ifGenerationNotMatch === gen) fail();
    if (p.ifMetagenerationMatch != null && p.ifMetagenerationMatch !== meta) fail();
    if (p.ifMetagenerationNotMatch != null && p.ifMetagenerationNotMatch === meta) fail();
  }

  /**
   * Commit a new generation whose bytes are already in `tmpPath` (moved into place). Checks preconditions and
   * any declared checksums; on failure the temp file is removed.
   */
  async commitObject(
    bucket: string,
    name: string,
    tmpPath: string,
    opts: {
      contentType?: string;
      contentEncoding?: string;
      metadata?: Record<string, string>;
      pre: Preconditions;
      expectCrc32c?: string;
      expectMd5?: string;
    },
  ): Promise<ObjectResource> {
    const b = await this.bucket(bucket);
    try {
      this.#rateLimit(bucket, name);
      const { size, crc, md5 } = await hashFile(tmpPath);
      if (opts.expectCrc32c && opts.expectCrc32c !== crc) {
        throw new GcsHttpError(
          400,
          `Provided CRC32C "${opts.expectCrc32c}" doesn't match calculated CRC32C "${crc}".`,
          "invalid",
        );
      }
      if (opts.expectMd5 && opts.expectMd5 !== md5) {
        throw new GcsHttpError(
          400,
          `Provided MD5 hash "${opts.expectMd5}" doesn't match calculated MD5 hash "${md5}".`,
        );
      }
      this.checkPreconditions(b.objects.get(name), opts.pre); // early answer; re-checked atomically below
      const generation = this.#nextGeneration();
      await Deno.rename(tmpPath, this.dataPath(bucket, generation));
      tmpPath = this.dataPath(bucket, generation);
      const existing = b.objects.get(name);
      this.checkPreconditions(existing, opts.pre);
      const now = new Date().toISOString();
      const base = this.baseUrl();
      const res: ObjectResource = {
        kind: "storage#object",
        id: `${bucket}/${name}/${generation}`,
        selfLink: `${base}/storage/v1/b/${bucket}/o/${enc(name)}`,
        mediaLink: `${base}/download/storage/v1/b/${bucket}/o/${
          enc(name)
        }?generation=${generation}&alt=media`,
        name,
        bucket,
        generation,
        metageneration: "1",
        contentType: opts.contentType || "application/octet-stream",
        ...(opts.contentEncoding ? { contentEncoding: opts.contentEncoding } : {}),
        storageClass: "STANDARD",
        size: String(size),
        md5Hash: md5,
        crc32c: crc,
        etag: btoa(generation).replace(/=+$/, ""),
        timeCreated: now,
        updated: now,
        ...(opts.metadata ? { metadata: opts.metadata } : {}),
      };
      // Check and index with no await in between, so a concurrent commit of the same name sees this one.
      b.objects.set(name, res);
      tmpPath = "";
      await this.#persistObject(res);
      if (existing) await Deno.remove(this.dataPath(bucket, existing.generation)).catch(() => {});
      return res;
    } catch (e) {
      if (tmpPath) await Deno.remove(tmpPath).catch(() => {});
      throw e;
    }
  }

  /** GCS allows about one write per second to one object name; faster ones get 429 (when modelled). */
  #rateLimit(bucket: string, name: string): void {
    if (!this.objectWriteRateLimit) return;
    const key = `${bucket}/${name}`;
    const now = Date.now();
    const last = this.#lastWrite.get(key);
    if (last !== undefined && now - last < 1000) {
      throw new GcsHttpError(
        429,
        "The object exceeded the rate limit for object mutation operations (create, update, and delete).",
        "rateLimitExceeded",
      );
    }
    this.#lastWrite.set(key, now);
  }

  /** Update an object's custom metadata / content type (PATCH): bumps metageneration. */
  async patchObject(
    bucket: string,
    name: string,
    patch: { contentType?: string; metadata?: Record<string, string | null> },
    pre: Preconditions,
  ): Promise<ObjectResource> {
    const o = await this.object(bucket, name);
    this.checkPreconditions(o, pre);
    const metadata: Record<string, string> = { ...(o.metadata ?? {}) };
    for (const [k, v] of Object.entries(patch.metadata ?? {})) {
      if (v === null) delete metadata[k];
      else metadata[k] = String(v);
    }
    const res: ObjectResource = {
      ...o,
      contentType: patch.contentType ?? o.contentType,
      metadata,
      metageneration: String(Number(o.metageneration) + 1),
      updated: new Date().toISOString(),
    };
    (await this.bucket(bucket)).objects.set(name, res);
    await this.#persistObject(res);
    return res;
  }

  /** Delete the live object (404 when absent, 412 on a failed precondition). */
  async deleteObject(bucket: string, name: string, pre: Preconditions): Promise<void> {
    const b = await this.bucket(bucket);
    const o = await this.object(bucket, name);
    this.checkPreconditions(o, pre);
    b.objects.delete(name);
    await Deno.remove(join(this.dir, "buckets", enc(bucket), "objects", `${enc(name)}.json`)).catch(() => {});
    await Deno.remove(this.dataPath(bucket, o.generation)).catch(() => {});
  }

  /** All live objects of a bucket, sorted by name. */
  async listObjects(bucket: string): Promise<ObjectResource[]> {
    const b = await this.bucket(bucket);
    return [...b.objects.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }

  async #persistObject(res: ObjectResource): Promise<void> {
    await atomicWrite(
      join(this.dir, "buckets", enc(res.bucket), "objects", `${enc(res.name)}.json`),
      JSON.stringify(res),
    );
  }

  /** A fresh temp file path inside the state dir (same filesystem, so rename is atomic). */
  tmpPath(): string {
    return join(this.dir, "sessions", `tmp-${crypto.randomUUID()}`);
  }

  // ---- resumable sessions ----

  async createSession(s: Omit<UploadSession, "id" | "received">): Promise<UploadSession> {
    const sess: UploadSession = { ...s, id: crypto.randomUUID().replaceAll("-", ""), received: 0 };
    await Deno.writeFile(this.sessionPart(sess.id), new Uint8Array());
    await this.saveSession(sess);
    this.#sessions.set(sess.id, sess);
    return sess;
  }

  session(id: string): UploadSession {
    const s = this.#sessions.get(id);
    if (!s) throw new GcsHttpError(404, `No such upload session: ${id}`, "notFound");
    return s;
  }

  sessionPart(id: string): string {
    return join(this.dir, "sessions", `${id}.part`);
  }

  async saveSession(s: UploadSession): Promise<void> {
    await atomicWrite(join(this.dir, "sessions", `${s.id}.json`), JSON.stringify(s));
  }

  async dropSession(id: string): Promise<void> {
    this.#sessions.delete(id);
    await Deno.remove(join(this.dir, "sessions", `${id}.json`)).catch(() => {});
    await Deno.remove(this.sessionPart(id)).catch(() => {});
  }
}

/** Size, base64 CRC-32C and base64 MD5 of a file, streamed. */
export async function hashFile(path: string): Promise<{ size: number; crc: string; md5: string }> {
  const c = new Crc32c();
  const m = createHash("md5");
  let size = 0;
  const f = await Deno.open(path);
  for await (const chunk of f.readable) {
    c.update(chunk);
    m.update(chunk);
    size += chunk.length;
  }
  return { size, crc: crc32cBase64(c.value()), md5: m.digest("base64") };
}

async function atomicWrite(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}
