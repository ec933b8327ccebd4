/**
 * Test support: an HTTP proxy on loopback (port 0) in front of a GCS server that can stall chosen requests —
 * accept them and never answer nor read their bodies, the hang real networks produce — and forwards all others
 * unchanged (upload-session `Location`s are rewritten to point back at the proxy). Loopback only; tests only.
 *
 * @example
 * ```ts
 * import { startStallProxy } from "./_gcs_proxy.ts";
 * // const proxy = await startStallProxy(emu.url, (r) => r.method === "PUT" && r.url.includes("upload_id"), 3);
 * // STORAGE_EMULATOR_HOST=proxy.url … ; proxy.stalled === 1 afterwards
 * ```
 */

/** A running proxy. */
export interface StallProxy {
  url: string;
  /** Requests stalled so far. */
  stalled: number;
  /** Requests forwarded so far, by method. */
  forwarded: Record<string, number>;
  close(): Promise<void>;
}

/**
 * Forward to `upstream`, stalling the `nth` (1-based) request for which `match` holds, `times` times in a row
 * (default 1; Infinity = every matching request from the nth on).
 */
export async function startStallProxy(
  upstream: string,
  match: (req: Request) => boolean,
  nth = 1,
  times = 1,
): Promise<StallProxy> {
  const ac = new AbortController();
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let seen = 0;
  let self = "";
  const state: StallProxy = { url: "", stalled: 0, forwarded: {}, close: async () => {} };
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen: (a) => resolve(a as Deno.NetAddr) },
    async (req) => {
      if (match(req)) {
        seen++;
        if (seen >= nth && seen < nth + times) {
          state.stalled++;
          await new Promise<void>((r) => req.signal.addEventListener("abort", () => r(), { once: true }));
          return new Response(null, { status: 504 });
        }
      }
      state.forwarded[req.method] = (state.forwarded[req.method] ?? 0) + 1;
      const u = new URL(req.url);
      const headers = new Headers(req.headers);
      headers.delete("host");
      const body = req.body ? new Uint8Array(await req.arrayBuffer()) : undefined;
      const res = await fetch(upstream + u.pathname + u.search, {
        method: req.method,
        headers,
        body,
        redirect: "manual",
      });
      const out = new Headers(res.headers);
      const loc = out.get("location");
      if (loc?.startsWith(upstream)) out.set("location", self + loc.slice(upstream.length));
      return new Response(res.body, { status: res.status, headers: out });
    },
  );
  const addr = await listening;
  self = `http://127.0.0.1:${addr.port}`;
  state.url = self;
  state.close = async () => {
    ac.abort();
    await server.finished;
  };
  return state;
}
