/**
 * One file of a Hub download over HTTP, robust to stalls: an inactivity timeout (no response / no body bytes
 * for `stallTimeoutMs` aborts the attempt), bounded retries with exponential backoff for stalls, dropped
 * connections, short bodies and HTTP 408/429/5xx, resuming with a `Range` request when the server answers 206
 * (else the file restarts), and one error naming the file and the last reason when every attempt failed.
 * Used by hub.ts.
 *
 * @example
 * ```ts
 * import { fetchToFile } from "./hub_transfer.ts";
 * // const headers = await fetchToFile(url, "config.json", () => Promise.resolve("/tmp/config.json"), policy,
 * //   "hint", (file, cause) => new Error(`unreachable: ${file}`));
 * ```
 */
import { ActshardError } from "../errors.ts";
import { writeAll } from "../util/write_all.ts";

/** Download progress of one file. */
export interface DownloadProgress {
  /** The file being downloaded, e.g. `model.safetensors`. */
  file: string;
  /** Bytes received so far. */
  received: number;
  /** Total bytes when the server says (Content-Length), else undefined. */
  total?: number;
}

/** The retry policy of one download. */
export interface TransferPolicy {
  headers: Record<string, string>;
  stallTimeoutMs: number;
  retries: number;
  retryBaseMs: number;
  onProgress: (p: DownloadProgress) => void;
  /**
   * Whether the endpoint has answered during this download. Until it has, a failure to connect is not retried:
   * offline is the common case, and its error should come at once.
   */
  reachable: boolean;
}

/** One attempt's outcome when it should be retried. */
class RetryableFailure extends Error {
  /** No HTTP response at all (connection refused, DNS, ...). */
  readonly noResponse: boolean;
  /** Where the attempt was writing (`dest` + ".incomplete" holds what arrived), when it got that far. */
  readonly dest?: string;
  constructor(message: string, dest: string | undefined, noResponse = false) {
    super(message);
    this.dest = dest;
    this.noResponse = noResponse;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return 0;
  }
}

/**
 * Download `url` to the path `destFor` gives (called with the first response's headers) through a
 * `.incomplete` file, with the policy's inactivity timeout and retries. Returns the response headers, or null
 * when the file does not exist (404).
 */
export async function fetchToFile(
  url: string,
  file: string,
  destFor: (headers: Headers) => Promise<string>,
  policy: TransferPolicy,
  howTo: string,
  unreachable: (file: string, cause: unknown) => ActshardError,
): Promise<Headers | null> {
  let dest: string | undefined;
  let last: RetryableFailure | undefined;
  let everResponded = false;
  let attempts = 0;
  for (let attempt = 0; attempt <= policy.retries; attempt++) {
    attempts++;
    if (attempt > 0) await sleep(Math.min(policy.retryBaseMs * 2 ** (attempt - 1), 30_000));
    try {
      const done = await attemptDownload(url, file, dest, destFor, policy, howTo);
      if (done === null) return null;
      return done.headers;
    } catch (e) {
      if (!(e instanceof RetryableFailure)) throw e;
      last = e;
      everResponded ||= !e.noResponse;
      dest ??= e.dest;
      if (e.noResponse && !policy.reachable) break;
    }
  }
  if (!everResponded && !policy.reachable) throw unreachable(file, last);
  throw new ActshardError(
    `download of ${file} failed after ${attempts} attempt(s): ${last!.message}`,
    { where: url, kind: "remote", hint: "check the network and run again", cause: last },
  );
}

async function attemptDownload(
  url: string,
  file: string,
  knownDest: string | undefined,
  destFor: (headers: Headers) => Promise<string>,
  policy: TransferPolicy,
  howTo: string,
): Promise<{ headers: Headers } | null> {
  const have = knownDest ? await fileSize(`${knownDest}.incomplete`) : 0;
  const ctrl = new AbortController();
  let stalled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      ctrl.abort();
    }, policy.stallTimeoutMs);
  };
  const fail = (msg: string, dest: string | undefined, noResponse = false) =>
    new RetryableFailure(msg, dest, noResponse);
  try {
    arm();
    let res: Response;
    try {
      const headers = have > 0 ? { ...policy.headers, range: `bytes=${have}-` } : policy.headers;
      res = await fetch(url, { headers, signal: ctrl.signal });
    } catch (e) {
      throw stalled
        ? fail(`no response for ${policy.stallTimeoutMs} ms`, knownDest)
        : fail(`connection failed (${errorText(e)})`, knownDest, true);
    }
    policy.reachable = true;
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      throw fail(`HTTP ${res.status}`, knownDest);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new ActshardError(`download of ${file} failed: HTTP ${res.status}`, {
        where: url,
        kind: "remote",
        hint: res.status === 401 || res.status === 403 ? "set HF_TOKEN for a gated or private repo" : howTo,
      });
    }
    const dest = knownDest ?? await destFor(res.headers);
    const tmp = `${dest}.incomplete`;
    // A 206 continuing exactly where the partial file ends is appended; anything else restarts the file.
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
    const resumed = have > 0 && res.status === 206 && range !== null && Number(range[1]) === have;
    if (res.status === 206 && !resumed) {
      await res.body?.cancel();
      await Deno.remove(tmp).catch(() => {});
      throw fail("the server answered the resume request with a different range", dest);
    }
    const length = res.headers.get("content-length");
    const total = length !== null ? (resumed ? have : 0) + Number(length) : undefined;
    let received = resumed ? have : 0;
    const f = await Deno.open(tmp, { write: true, create: true, truncate: !resumed, append: resumed });
    try {
      for await (const chunk of res.body!) {
        arm();
        await writeAll(f, chunk);
        received += chunk.length;
        policy.onProgress({ file, received, total });
      }
    } catch (e) {
      throw stalled
        ? fail(`stalled: no data for ${policy.stallTimeoutMs} ms after ${received} bytes`, dest)
        : fail(`connection lost after ${received} bytes (${errorText(e)})`, dest);
    } finally {
      f.close();
    }
    if (total !== undefined && received !== total) {
      if (received > total) await Deno.remove(tmp).catch(() => {});
      throw fail(`cut short (${received} of ${total} bytes)`, dest);
    }
    await Deno.rename(tmp, dest);
    return { headers: res.headers };
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
