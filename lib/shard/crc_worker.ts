/**
 * Worker in front of the file sink's (see file_sink.ts): keeps each open file's running CRC-32C — continued over
 * chunks that arrive without a CRC, combined in for chunks whose CRC a compression Worker already computed — and
 * forwards every message, in order, to the sink Worker through a MessagePort, writes with `fileCrc` (the CRC of
 * the file so far) added. SHA-256 (serial by nature) and the write calls stay in the sink; the CRC, the other
 * half of the hashing, runs here in parallel.
 * Messages: `{op: "port", port}` first; then the sink's messages (file_sink_worker.ts).
 */
import { Crc32c } from "../util/crc32c.ts";
import { crc32cCombine } from "./crc_combine.ts";

// deno-lint-ignore no-explicit-any
const ctx = self as any;
let port: MessagePort | null = null;
const running = new Map<number, number>();

ctx.onmessage = (ev: MessageEvent) => {
  const m = ev.data;
  if (m.op === "port") {
    port = m.port;
    return;
  }
  if (m.op === "open") running.set(m.file, 0);
  else if (m.op === "finish" || m.op === "abort") running.delete(m.file);
  if (m.op === "write") {
    const soFar = running.get(m.file) ?? 0;
    m.fileCrc = m.crc === undefined
      ? new Crc32c(soFar).update(m.data).value()
      : crc32cCombine(soFar, m.crc, m.data.length);
    running.set(m.file, m.fileCrc);
    port!.postMessage(m, [m.data.buffer]);
  } else port!.postMessage(m);
};
