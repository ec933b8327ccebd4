/**
 * HTTP to the GCS JSON API with a stall watchdog and a retry deadline, on Deno's `fetch`.
 *
 * Why not the `@google-cloud/storage` client: its JSON calls go through teeny-request → node-fetch (no timeout),
 * its resumable chunk PUTs get none either, and under Deno `node:http`'s socket timeout does not see bytes being
 * sent — so a connection that accepts a request and never answers hung the process. Here every request has a
 * {@link Watchdog}: the timer restarts on every byte handed to the connection (request bodies are streamed in
 * 64 KiB pieces, pulled only as the connection takes them) and every byte received; when it runs out the request
 * is aborted and counts as a transient failure.
 *
 * {@link GcsTransport.retrying} runs one operation under a {@link RetryPolicy}: exponential backoff with full
 * jitter up to 64 s, a total deadline (default 600 s, as the client's), transient failures only: HTTP 408, 429,
 * 5xx, connection refused/reset, DNS failures, stalls, truncated bodies. Everything else (400, 401, 403, 404,
 * 412, …) is permanent and returned at once.
 *
 * @example
 * ```ts
 * import { GcsTransport } from "./gcs_transport.ts";
 * import { startGcsEmulator } from "./gcs_emulator/server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true });
 * const t = new GcsTransport({ endpoint: emu.url, token: null }); // token: null = no auth (emulators)
 * const r = await t.retrying("list", "gs://my-bucket", () => t.request("GET", t.jsonUrl("/b/my-bucket/o")));
 * console.log(await r.json()); // { kind: "storage#objects", … }
 * await emu.close();
 * ```
 */

/** How one operation is retried. */
export interface RetryPolicy {
  /** No new attempt starts once this much time has passed since the operation (or its last progress) began. */
  deadlineMs?: number;
  /** Old name of `deadlineMs`. */
  totalTimeoutMs?: number;
  /** First backoff (default 1 s), doubled per attempt up to `maxDelayMs` (default 64 s), with jitter. */
  initialDelayMs?: number;
  /** The longest backoff between attempts (default 64 s). */
  maxDelayMs?: number;
  /** Attempts in all (default: unbounded, the deadline decides). */
  maxAttempts?: number;
}

/** Defaults, overridable by ACTSHARD_GCS_RETRY_DEADLINE_S / ACTSHARD_GCS_STALL_TIMEOUT_S. */
export const DEFAULT_DEADLINE_MS = 600_000;
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** A failed request: HTTP status (0 = no answer), whether retrying can help, and the server's message. */
export class GcsRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly transient: boolean,
    /** What kind of failure, for messages: "http", "stall", "network", "dns", "truncated". */
    readonly cause_kind: "http" | "stall" | "network" | "dns" | "truncated" | "checksum" = "http",
  ) {
    super(message);
    this.name = "GcsRequestError";
  }
}

/** Statuses worth retrying (as the client and GCS's retry guidance). */
export const TRANSIENT_STATUS: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/** A retry in progress, as told to the caller's log. */
export interface RetryNotice {
  what: string;
  where: string;
  attempt: number;
  reason: string;
  delayMs: number;
  deadlineLeftMs: number;
}

/** Options of a {@link GcsTransport}. */
export interface GcsTransportOptions {
  /** `https://storage.googleapis.com` or an emulator's base URL. */
  endpoint: string;
  /** Bearer token source; null = send no auth (emulators). */
  token: (() => Promise<string>) | null;
  stallTimeoutMs?: number;
  retry?: RetryPolicy;
  /** Told about every retry wait (progress lines say when a run is waiting on retries). */
  onRetry?: (n: RetryNotice) => void;
}

/** Restart-on-activity timer that aborts a request when it runs out. */
export class Watchdog {
  readonly controller = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fired = false;
  constructor(readonly ms: number) {
    this.kick();
  }
  /** Activity: restart the timer. */
  kick(): void {
    if (this.#fired) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#fired = true;
      this.controller.abort(new GcsRequestError(stallText(this.ms), 0, true, "stall"));
    }, this.ms);
  }
  get fired(): boolean {
    return this.#fired;
  }
  stop(): void {
    clearTimeout(this.#timer);
  }
}

function stallText(ms: number): string {
  return `connection stalled: no byte sent or received for ${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** A response whose body is read under the watchdog; `release()` stops it (call when done). */
export interface WatchedResponse {
  res: Response;
  /** The body as a stream whose every chunk restarts the watchdog; errors are GcsRequestErrors. */
  body(): ReadableStream<Uint8Array>;
  /** Whole body (for JSON and small objects). */
  bytes(): Promise<Uint8Array>;
  json(): Promise<Record<string, unknown>>;
  release(): void;
}

/** HTTP to one GCS endpoint. */
export class GcsTransport {
  readonly endpoint: string;
  readonly stallTimeoutMs: number;
  readonly retry: Required<Omit<RetryPolicy, "totalTimeoutMs">>;
  readonly #token: (() => Promise<string>) | null;
  readonly #onRetry?: (n: RetryNotice) => void;
  #lengthRequired = false;

  constructor(o: GcsTransportOptions) {
    this.endpoint = o.endpoint.replace(/\/+$/, "");
    this.#token = o.token;
    this.#onRetry = o.onRetry;
    this.stallTimeoutMs = o.stallTimeoutMs ?? envSeconds("ACTSHARD_GCS_STALL_TIMEOUT_S") ??
      DEFAULT_STALL_TIMEOUT_MS;
    const r = o.retry ?? {};
    this.retry = {
      deadlineMs: r.deadlineMs ?? r.totalTimeoutMs ?? envSeconds("ACTSHARD_GCS_RETRY_DEADLINE_S") ??
        DEFAULT_DEADLINE_MS,
      initialDelayMs: r.initialDelayMs ?? 1000,
      maxDelayMs: r.maxDelayMs ?? 64_000,
      maxAttempts: r.maxAttempts ?? Infinity,
    };
  }

  /** Tell the caller's log about a retry wait (for loops outside {@link retrying}, e.g. resumed downloads). */
  notify(n: RetryNotice): void {
    this.#onRetry?.(n);
  }

  /** `ENDPOINT/storage/v1` + path. */
  jsonUrl(path: string, query: Record<string, string | number | undefined> = {}): string {
    return withQuery(`${this.endpoint}/storage/v1${path}`, query);
  }

  /** `ENDPOINT/upload/storage/v1` + path. */
  uploadUrl(path: string, query: Record<string, string | number | undefined> = {}): string {
    return withQuery(`${this.endpoint}/upload/storage/v1${path}`, query);
  }

  /**
   * One request. Non-2xx/308 answers become a {@link GcsRequestError} (transient or not); so do connection
   * failures and stalls. `body` as a Uint8Array is streamed in 64 KiB pieces so the watchdog sees it leave.
   */
  async request(
    method: string,
    url: string,
    opts: { headers?: Record<string, string>; body?: Uint8Array; okStatus?: number[] } = {},
  ): Promise<WatchedResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.#token) {
      headers.authorization = `Bearer ${await withStallTimeout(this.#token(), this.stallTimeoutMs).catch(
        tokenError,
      )}`;
    }
    const dog = new Watchdog(this.stallTimeoutMs);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: opts.body === undefined
          ? undefined
          : (this.#lengthRequired ? opts.body : watchedBody(opts.body, dog)) as BodyInit,
        signal: dog.controller.signal,
        redirect: "manual",
      });
    } catch (e) {
      dog.stop();
      throw dog.fired ? dog.controller.signal.reason : networkError(e);
    }
    dog.kick();
    if (res.status === 411 && !this.#lengthRequired && (opts.body?.byteLength ?? 0) > 64 * 1024) {
      // A server that wants Content-Length for a streamed body: send whole buffers from now on (the watchdog
      // then sees only the answer side of those requests).
      await res.body?.cancel();
      dog.stop();
      this.#lengthRequired = true;
      return await this.request(method, url, opts);
    }
    const ok = res.ok || (opts.okStatus ?? []).includes(res.status);
    const watched = watchResponse(res, dog);
    if (!ok) {
      let text = "";
      try {
        text = new TextDecoder().decode(await watched.bytes());
      } catch { /* the status says enough */ }
      throw httpError(res.status, text);
    }
    return watched;
  }

  /**
   * Run `attempt` until it succeeds, fails permanently, or the deadline passes; `progressed()` (returned by
   * the attempt's context) restarts the deadline, for long operations made of many requests.
   */
  async retrying<T>(
    what: string,
    where: string,
    attempt: (ctx: { attempt: number; progressed: () => void }) => Promise<T>,
  ): Promise<T> {
    const p = this.retry;
    let start = Date.now();
    const ctx = { attempt: 1, progressed: () => (start = Date.now()) };
    let delay = p.initialDelayMs;
    for (;; ctx.attempt++) {
      try {
        return await attempt(ctx);
      } catch (e) {
        if (!(e instanceof GcsRequestError) || !e.transient) throw e;
        const left = p.deadlineMs - (Date.now() - start);
        const wait = Math.round(delay * (0.5 + Math.random() / 2));
        if (ctx.attempt >= p.maxAttempts || wait >= left) {
          throw new GcsRequestError(
            `${e.message} (gave up after ${ctx.attempt} attempt${ctx.attempt === 1 ? "" : "s"} over ${
              ((Date.now() - start) / 1000).toFixed(0)
            } s, the retry deadline is ${(p.deadlineMs / 1000).toFixed(0)} s)`,
            e.status,
            false,
            e.cause_kind,
          );
        }
        this.#onRetry?.({
          what,
          where,
          attempt: ctx.attempt,
          reason: e.message,
          delayMs: wait,
          deadlineLeftMs: left,
        });
        await new Promise((r) => setTimeout(r, wait));
        delay = Math.min(delay * 2, p.maxDelayMs);
      }
    }
  }
}

/** Bytes handed to the connection per pull of a streamed body. */
const PIECE = 256 * 1024;

/** A request body that hands out PIECE bytes at a time, restarting the watchdog on each piece taken. */
function watchedBody(data: Uint8Array, dog: Watchdog): ReadableStream<Uint8Array> | Uint8Array {
  if (data.byteLength <= PIECE) return data;
  let off = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      dog.kick();
      if (off >= data.byteLength) {
        c.close();
        return;
      }
      const end = Math.min(data.byteLength, off + PIECE);
      c.enqueue(data.subarray(off, end)); // a view: the caller keeps the buffer unchanged while it is sent
      off = end;
    },
  }, { highWaterMark: 0 });
}

function watchResponse(res: Response, dog: Watchdog): WatchedResponse {
  const body = (): ReadableStream<Uint8Array> => {
    const reader = res.body?.getReader();
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!reader) {
          dog.stop();
          c.close();
          return;
        }
        try {
          const { value, done } = await reader.read();
          if (done) {
            dog.stop();
            c.close();
          } else {
            dog.kick();
            c.enqueue(value);
          }
        } catch (e) {
          dog.stop();
          c.error(dog.fired ? dog.controller.signal.reason : bodyError(e));
        }
      },
      cancel(reason) {
        dog.stop();
        return reader?.cancel(reason);
      },
    });
  };
  return {
    res,
    body,
    async bytes() {
      const parts: Uint8Array[] = [];
      let n = 0;
      for await (const c of body()) {
        parts.push(c);
        n += c.byteLength;
      }
      const out = new Uint8Array(n);
      let o = 0;
      for (const c of parts) {
        out.set(c, o);
        o += c.byteLength;
      }
      return out;
    },
    async json() {
      const b = await this.bytes();
      if (b.byteLength === 0) return {};
      try {
        return JSON.parse(new TextDecoder().decode(b));
      } catch {
        throw new GcsRequestError(`answer is not JSON (HTTP ${res.status})`, res.status, true, "truncated");
      }
    },
    release() {
      dog.stop();
      res.body?.cancel().catch(() => {});
    },
  };
}

function httpError(status: number, text: string): GcsRequestError {
  let msg = text.trim().split("\n")[0].slice(0, 300);
  try {
    const j = JSON.parse(text);
    if (j?.error?.message) msg = String(j.error.message).split("\n")[0].slice(0, 300);
  } catch { /* not JSON */ }
  return new GcsRequestError(`HTTP ${status}${msg ? `: ${msg}` : ""}`, status, TRANSIENT_STATUS.has(status));
}

/** A fetch failure (no answer): DNS failures, refused and reset connections are all transient. */
export function networkError(e: unknown): GcsRequestError {
  if (e instanceof GcsRequestError) return e;
  const msg = String((e as Error)?.message ?? e).split("\n")[0];
  const dns =
    /dns error|failed to lookup|ENOTFOUND|EAI_AGAIN|Name or service not known|nodename nor servname/i
      .test(msg);
  return new GcsRequestError(
    dns ? `DNS lookup failed: ${msg.slice(0, 200)}` : `network error: ${msg.slice(0, 200)}`,
    0,
    true,
    dns ? "dns" : "network",
  );
}

/** A failure to get an access token: the network is retried, a refused credential is a 401 (permanent). */
function tokenError(e: unknown): never {
  if (e instanceof GcsRequestError) throw e;
  const msg = String((e as Error)?.message ?? e).split("\n")[0].slice(0, 200);
  if (/ENOTFOUND|EAI_AGAIN|ECONNRESET|ECONNREFUSED|ETIMEDOUT|socket|network|dns|fetch failed/i.test(msg)) {
    const n = networkError(e);
    throw new GcsRequestError(`getting an access token: ${n.message}`, 0, true, n.cause_kind);
  }
  throw new GcsRequestError(`the credentials gave no access token: ${msg}`, 401, false);
}

function bodyError(e: unknown): GcsRequestError {
  if (e instanceof GcsRequestError) return e;
  const msg = String((e as Error)?.message ?? e).split("\n")[0].slice(0, 200);
  return new GcsRequestError(`connection dropped mid-body: ${msg}`, 0, true, "truncated");
}

async function withStallTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new GcsRequestError(`getting an access token: ${stallText(ms)}`, 0, true, "stall")),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function withQuery(base: string, query: Record<string, string | number | undefined>): string {
  const q = Object.entries(query).filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join("&");
  return q ? `${base}?${q}` : base;
}

/** A positive number from an environment variable (undefined when unset or invalid). */
export function envNumber(name: string): number | undefined {
  let v: string | undefined;
  try {
    v = Deno.env.get(name);
  } catch {
    return undefined;
  }
  if (v === undefined || v.trim() === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** A positive number of seconds from an environment variable, in ms (undefined when unset or invalid). */
export function envSeconds(name: string): number | undefined {
  const n = envNumber(name);
  return n === undefined ? undefined : n * 1000;
}
