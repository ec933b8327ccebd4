/**
 * Named kill points for crash tests: with `ACTSHARD_TEST_KILL_AT=NAME:N` in its environment, an extract process
 * sends itself SIGKILL (a real kill: no finally blocks, no flushing) the N-th time it reaches point NAME. This
 * makes a test's kill land deterministically where a random kill rarely does. Points:
 *
 * - `committed:N` — shard N was fsynced, renamed into place and listed in metadata.json, and has not yet been
 *   handed to progress or uploads (when shard N ends inside a prompt, this is also "between the two shards of a
 *   split prompt");
 * - `verified:N` — shard N's object is on GCS with its size and CRC-32C confirmed and recorded in the local
 *   metadata.json, but the GCS metadata.json does not list it yet.
 *
 * Unset (always, outside tests) it costs one string comparison per shard.
 *
 * @example
 * ```ts
 * import { killPoint } from "./kill_point.ts";
 * const entry = { shard_id: 3 }; // a committed shard's metadata entry
 * killPoint("committed", entry.shard_id); // ACTSHARD_TEST_KILL_AT=committed:3 → SIGKILL here for shard 3
 * ```
 */

/** The environment variable naming the kill point. */
export const KILL_AT_ENV = "ACTSHARD_TEST_KILL_AT";

const wanted: string | undefined = (() => {
  try {
    return Deno.env.get(KILL_AT_ENV) || undefined;
  } catch {
    return undefined; // no env permission: no kill points
  }
})();

/** Kill this process with SIGKILL when `${name}:${n}` is the configured kill point. */
export function killPoint(name: "committed" | "verified", n: number): void {
  if (wanted !== undefined && wanted === `${name}:${n}`) Deno.kill(Deno.pid, "SIGKILL");
}
