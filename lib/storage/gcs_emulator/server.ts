/**
 * A GCS JSON-API emulator: a Deno HTTP server speaking the subset of the API that `@google-cloud/storage` uses
 * (buckets, media/multipart/resumable uploads, preconditions, generations, crc32c/md5, ranged downloads, list,
 * delete), with state persisted under a directory and scripted faults for tests. See docs/gcs.md for what it
 * covers and what it does not. Point a client at it with `apiEndpoint: emu.url` or
 * `STORAGE_EMULATOR_HOST=emu.url`.
 *
 * @example
 * ```ts
 * import { Storage } from "@google-cloud/storage";
 * import { startGcsEmulator } from "./server.ts";
 * const emu = await startGcsEmulator({ port: 0 });
 * const storage = new Storage({ apiEndpoint: emu.url, projectId: "test" });
 * await storage.createBucket("my-bucket"); // unknown buckets are 404, as on GCS (or: autoCreateBuckets)
 * await storage.bucket("my-bucket").file("x.txt").save("hello", { resumable: false });
 * emu.faults.add({ op: "download", kind: "status", status: 503 }); // next download answers 503 once
 * await emu.close();
 * ```
 *
 * @module
 */
import { type FaultRule, FaultScript, type FaultTarget, type FiredFault } from "./faults.ts";
import { EmulatorStore, GcsHttpError } from "./store.ts";
import { type Route, route } from "./routes.ts";
import { errorResponse, json, preconditions } from "./http.ts";
import { download, listPage } from "./objects.ts";
import { uploadChunk, uploadInsert } from "./uploads.ts";

export type { FaultOp, FaultRule, FiredFault } from "./faults.ts";

const LOG = (() => {
  try {
    return !!Deno.env.get("ACTSHARD_GCS_EMULATOR_LOG");
  } catch {
    return false;
  }
})();

/** A running emulator. */
export interface GcsEmulator {
  /** Base URL, e.g. http://127.0.0.1:PORT (use as `apiEndpoint` or `STORAGE_EMULATOR_HOST`). */
  url: string;
  /** The TCP port it listens on. */
  port: number;
  /** State directory. */
  dir: string;
  /** Scripted faults (also reachable over HTTP: POST/DELETE /_emulator/faults). */
  faults: { add(rule: FaultRule): void; clear(): void; fired: FiredFault[] };
  /** Stop serving and remove the state directory when it was a fresh temp dir. */
  close(): Promise<void>;
}

/** Options for {@link startGcsEmulator}. */
export interface GcsEmulatorOptions {
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** State directory; a fresh temp dir (removed on close) when omitted. */
  dir?: string;
  /** Hostname to bind (default 127.0.0.1). */
  hostname?: string;
  /** Create buckets on first reference (default false: unknown buckets are 404, as on GCS). */
  autoCreateBuckets?: boolean;
  /** At most this many entries per list page, whatever maxResults asks (GCS may return short pages). */
  listPageSize?: number;
  /** Answer 429 to a second write of one object name within a second (GCS's per-object rate limit). */
  objectWriteRateLimit?: boolean;
  /** Buckets to create at start. */
  buckets?: string[];
}

/**
 * Start the emulator.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { startGcsEmulator } from "./server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true }); // port 0: a free port; state in a temp dir
 * const put = await fetch(`${emu.url}/upload/storage/v1/b/my-bucket/o?uploadType=media&name=x.txt`, {
 *   method: "POST", body: "hello",
 * });
 * assert((await put.json()).size === "5");
 * emu.faults.add({ op: "download", kind: "status", status: 503 }); // the next download answers 503 once
 * const get = await fetch(`${emu.url}/storage/v1/b/my-bucket/o/x.txt?alt=media`);
 * assert(get.status === 503);
 * await get.body?.cancel();
 * await emu.close();
 * ```
 */
export async function startGcsEmulator(opts: GcsEmulatorOptions = {}): Promise<GcsEmulator> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "actshard-gcs-emu-" });
  let url = "";
  const store = await EmulatorStore.open(dir, () => url, opts.autoCreateBuckets ?? false);
  store.listPageSize = opts.listPageSize;
  store.objectWriteRateLimit = opts.objectWriteRateLimit ?? false;
  for (const b of opts.buckets ?? []) await store.bucket(b).catch(() => store.createBucket(b));
  const faults = new FaultScript();
  const ac = new AbortController();
  const hostname = opts.hostname ?? "127.0.0.1";
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { port: opts.port ?? 0, hostname, signal: ac.signal, onListen: (a) => resolve(a as Deno.NetAddr) },
    async (req) => {
      const res = await handle(req, store, faults, url);
      if (LOG) {
        const cr = req.headers.get("content-range") ?? "";
        console.error(
          `gcs-emulator: ${req.method} ${req.url} ${cr} -> ${res.status} ${res.headers.get("range") ?? ""}`,
        );
      }
      return res;
    },
  );
  const addr = await listening;
  url = `http://${hostname === "0.0.0.0" ? "127.0.0.1" : hostname}:${addr.port}`;
  return {
    url,
    port: addr.port,
    dir,
    faults,
    async close() {
      ac.abort();
      await server.finished;
      if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function handle(
  req: Request,
  store: EmulatorStore,
  faults: FaultScript,
  base: string,
): Promise<Response> {
  try {
    const u = new URL(req.url);
    const r = route(req.method, u);
    if (r.op === "admin") return await admin(req, u, faults);
    const fault = r.op === "unknown" ? null : faults.take({ op: r.op, object: r.object } as FaultTarget);
    if (fault?.kind === "stall") {
      // Accepted, never answered, body never read: held until the client drops the connection.
      await new Promise<void>((resolve) =>
        req.signal.addEventListener("abort", () => resolve(), { once: true })
      );
      return new Response(null, { status: 504 });
    }
    if (fault?.kind === "status") {
      await req.body?.cancel();
      const status = fault.status ?? 503;
      return errorResponse(new GcsHttpError(status, `Injected fault: HTTP ${status}`, "backendError"));
    }
    return await dispatch(req, u, r, store, base, fault);
  } catch (e) {
    if (e instanceof GcsHttpError) return errorResponse(e);
    return errorResponse(
      new GcsHttpError(500, `emulator error: ${(e as Error)?.message ?? e}`, "backendError"),
    );
  }
}

async function dispatch(
  req: Request,
  u: URL,
  r: Route,
  store: EmulatorStore,
  base: string,
  fault: FaultRule | null,
): Promise<Response> {
  const q = u.searchParams;
  const pre = preconditions(q);
  switch (r.kind) {
    case "bucket-insert": {
      const body = await req.json().catch(() => ({}));
      if (!body?.name) throw new GcsHttpError(400, "Missing bucket name");
      return json(await store.createBucket(String(body.name)));
    }
    case "bucket-list": {
      await req.body?.cancel();
      return json({ kind: "storage#buckets", items: [] });
    }
    case "bucket-get":
      return json((await store.bucket(r.bucket!)).res);
    case "object-list":
      return json(await listPage(store, r.bucket!, q, store.listPageSize));
    case "object-get": {
      const o = await store.object(r.bucket!, r.object!, q.get("generation"));
      store.checkPreconditions(o, pre);
      if (q.get("alt") === "media" || r.download) return download(req, store, o, fault);
      return json(o);
    }
    case "object-patch": {
      const body = await req.json().catch(() => ({}));
      return json(await store.patchObject(r.bucket!, r.object!, body, pre));
    }
    case "object-delete":
      await store.deleteObject(r.bucket!, r.object!, pre);
      return new Response(null, { status: 204 });
    case "upload-insert":
      return await uploadInsert(req, q, r.bucket!, store, base);
    case "upload-chunk":
      return await uploadChunk(req, q.get("upload_id")!, store, fault);
    default:
      await req.body?.cancel();
      throw new GcsHttpError(
        501,
        `the emulator does not implement ${req.method} ${u.pathname}`,
        "notImplemented",
      );
  }
}

// ---- admin ----

async function admin(req: Request, u: URL, faults: FaultScript): Promise<Response> {
  if (u.pathname === "/_emulator/faults") {
    if (req.method === "POST") {
      const rule = await req.json() as Omit<FaultRule, "times"> & { times?: number | string | null };
      const times = rule.times === null || rule.times === "Infinity"
        ? Infinity
        : rule.times as number | undefined;
      faults.add({ ...rule, times });
      return json({ ok: true });
    }
    if (req.method === "DELETE") {
      faults.clear();
      return json({ ok: true });
    }
    return json({ fired: faults.fired });
  }
  await req.body?.cancel();
  return json({ ok: true, emulator: "actshard-gcs" });
}
