/**
 * A Worker of the file sink's CRC pool (see file_sink.ts): computes the CRC-32C of each chunk it is given and
 * forwards the message, CRC added (`crc`), to the sink Worker through its MessagePort. Chunks of one file are
 * spread over the pool; the sink Worker puts every message back in order (`seq`) and combines the chunk CRCs
 * into the file's (crc_combine.ts), so the CRC, half of the hashing, no longer runs on one thread.
 * Messages: `{op: "port", port}` first; then the sink's write messages (file_sink_worker.ts) without `crc`.
 */
import { crc32c } from "../util/crc32c.ts";

// deno-lint-ignore no-explicit-any
const ctx = self as any;
let port: MessagePort | null = null;

ctx.onmessage = (ev: MessageEvent) => {
  const m = ev.data;
  if (m.op === "port") {
    port = m.port;
    return;
  }
  m.crc = crc32c(m.data);
  port!.postMessage(m, [m.data.buffer]);
};
