/**
 * The onnxruntime session, in a Worker. onnxruntime-node's `session.run` is synchronous on the thread that calls
 * it (measured under Deno: a 9.7 s forward held the event loop for 9.8 s), so on the main thread a forward
 * stalls everything else for its whole length: shard writes and uploads meant to overlap it, progress, and
 * Ctrl-C (handled only after the batch, minutes on a loaded CPU). Here the main thread stays free (63 ms timer
 * lag over the same forward) and a process exit does not wait for the run in flight.
 *
 * Messages in: `{type: "init", path, options}`, `{type: "run", id, ids, lengths, dims, names}`,
 * `{type: "release"}`. Out: `{type: "ready"}` | `{type: "run", id, outs}` (outs transferred) |
 * `{type: "released"}` | `{type, id?, error}`.
 */
import * as ort from "onnxruntime-node";

// deno-lint-ignore no-explicit-any
const ctx = self as any;
let session: ort.InferenceSession | null = null;

ctx.onmessage = async (ev: MessageEvent) => {
  const m = ev.data;
  try {
    if (m.type === "init") {
      session = await ort.InferenceSession.create(m.path, m.options);
      ctx.postMessage({ type: "ready" });
    } else if (m.type === "run") {
      if (!session) throw new Error("session not initialised");
      const feeds = {
        ids: new ort.Tensor("int32", m.ids as Int32Array, m.dims),
        lengths: new ort.Tensor("int32", m.lengths as Int32Array, [m.dims[0]]),
      };
      const res = await session.run(feeds, m.names);
      const outs = (m.names as string[]).map((n) => res[n].data as Float32Array);
      try {
        ctx.postMessage({ type: "run", id: m.id, outs }, [...new Set(outs.map((o) => o.buffer))]);
      } catch {
        // A buffer onnxruntime owns cannot be transferred: send copies this thread owns.
        const copies = outs.map((o) => new Float32Array(o));
        ctx.postMessage({ type: "run", id: m.id, outs: copies }, copies.map((o) => o.buffer));
      }
    } else if (m.type === "release") {
      await session?.release();
      session = null;
      ctx.postMessage({ type: "released" });
    }
  } catch (e) {
    ctx.postMessage({ type: m.type, id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
};
