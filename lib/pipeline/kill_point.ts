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
 * The pipeline carries no test hook: these are {@link ExtractHooks} observers (`onShardCommitted`,
 * `onShardVerified`) that the CLI edge (scripts/extract.ts) passes to `runExtract`; unset (always, outside
 * tests) there are none.
 *
 * @example
 * ```ts
 * import { killPointHooks } from "./kill_point.ts";
 * // ACTSHARD_TEST_KILL_AT unset: no observers at all. Set to "committed:3", `runExtract(config, hooks)` gets an
 * // onShardCommitted that SIGKILLs the process once shard 3 is durable (scripts/extract.ts does exactly this).
 * const hooks = killPointHooks(undefined);
 * console.log(Object.keys(hooks).length); // 0
 * ```
 */
import type { ExtractHooks } from "./extract.ts";
import type { ShardEntry } from "../shard/metadata.ts";

/** The environment variable naming the kill point. */
export const KILL_AT_ENV = "ACTSHARD_TEST_KILL_AT";

/** The points a crash test can name. */
export type KillPointName = "committed" | "verified";

/** `NAME:N` from {@link KILL_AT_ENV}, or undefined (unset, or no env permission: no kill points). */
export function killPointFromEnv(): string | undefined {
  try {
    return Deno.env.get(KILL_AT_ENV) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The extract observers that SIGKILL this process at kill point `at` (`NAME:N`, default from the environment);
 * none when it is unset.
 */
export function killPointHooks(
  at: string | undefined = killPointFromEnv(),
): Pick<ExtractHooks, "onShardCommitted" | "onShardVerified"> {
  if (at === undefined) return {};
  const killAt = (name: KillPointName) => (entry: ShardEntry) => {
    if (at === `${name}:${entry.shard_id}`) Deno.kill(Deno.pid, "SIGKILL");
  };
  return { onShardCommitted: killAt("committed"), onShardVerified: killAt("verified") };
}
