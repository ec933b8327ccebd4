/**
 * One writer per GCS prefix: a lease object `PREFIX/.actshard-lease.json` (who holds it, renewed every
 * `renewMs`, valid for `ttlMs` after its last renewal), made safe by generation preconditions: it is created
 * with `ifGenerationMatch=0`, renewed and released with `ifGenerationMatch=<our generation>`, and taken over
 * (from a holder that is gone) with `ifGenerationMatch=<its generation>` — so of two writers racing, exactly
 * one wins and the other is told who holds the prefix.
 *
 * A holder is gone when, on the same host and for the same output directory, its process no longer exists (a
 * rerun after `kill -9` continues at once), or when its lease expires unrenewed while we watch it (killed,
 * preempted, partitioned: a replacement pod waits at most the TTL). A holder that renews while we watch (it
 * renews every ttl/4) is alive: the newcomer is refused, naming it. The watch lasts a full TTL on this host's
 * clock, so clock skew between hosts cannot make a live lease look expired.
 *
 * @example
 * ```ts
 * import { PrefixLease } from "./gcs_lease.ts";
 * import { GcsStore } from "./gcs.ts";
 * import { startGcsEmulator } from "./gcs_emulator/server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true });
 * const store = await GcsStore.open("my-bucket", "run", { apiEndpoint: emu.url });
 * const lease = await PrefixLease.acquire(store, { outputDir: "out" });
 * // ... write shards and metadata.json: a second run on this prefix is refused meanwhile ...
 * await lease.release();
 * await emu.close();
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { GcsStore } from "./gcs.ts";

/** The lease object's name under the prefix. */
export const LEASE_NAME = ".actshard-lease.json";

/** What the lease object holds. */
export interface LeaseBody {
  run_id: string;
  host: string;
  pid: number;
  output_dir: string;
  acquired_at: string;
  renewed_at: string;
  ttl_s: number;
}

/** Options for {@link PrefixLease.acquire}. */
export interface LeaseOptions {
  /** The local dataset directory this writer works from (named to the user; decides same-run takeovers). */
  outputDir: string;
  /** Default $ACTSHARD_GCS_LEASE_TTL_S or 120 s. */
  ttlMs?: number;
  /** Default ttl / 4. */
  renewMs?: number;
  /** Told while waiting on another holder (default stderr). */
  log?: (line: string) => void;
}

/** Watch a holder's lease for up to `forMs`: renewed (alive), released (gone), or expired unrenewed. */
async function watchHolder(
  store: GcsStore,
  generation: string,
  forMs: number,
  renewMs: number,
): Promise<{ state: "alive" | "gone" | "expired"; generation: string }> {
  const until = Date.now() + forMs;
  const poll = Math.max(200, Math.min(5000, renewMs / 3));
  for (;;) {
    const wait = Math.min(poll, until - Date.now());
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const now = await store.stat(LEASE_NAME);
    if (!now) return { state: "gone", generation: "0" };
    // Renewed by its holder, or taken by a third writer: either way a live writer holds it.
    if (now.generation !== generation) return { state: "alive", generation: now.generation ?? "0" };
    if (Date.now() >= until) return { state: "expired", generation };
  }
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown-host";
  }
}

function processExists(pid: number): boolean | undefined {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      try {
        Deno.statSync("/proc/self");
        return false; // /proc works, the pid is not there
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

function defaultTtlMs(): number {
  try {
    const v = Number(Deno.env.get("ACTSHARD_GCS_LEASE_TTL_S"));
    if (v > 0) return v * 1000;
  } catch { /* no env access */ }
  return 120_000;
}

/** A held lease; renewed in the background until {@link release}. */
export class PrefixLease {
  #generation: string;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lost: ActshardError | null = null;
  #renewing: Promise<void> = Promise.resolve();

  private constructor(
    readonly store: GcsStore,
    readonly body: LeaseBody,
    generation: string,
    renewMs: number,
  ) {
    this.#generation = generation;
    this.#timer = setInterval(() => {
      this.#renewing = this.#renew();
    }, renewMs);
    Deno.unrefTimer(this.#timer);
  }

  /** Take the prefix, or throw one line naming the holder. */
  static async acquire(store: GcsStore, o: LeaseOptions): Promise<PrefixLease> {
    const ttlMs = o.ttlMs ?? defaultTtlMs();
    const renewMs = o.renewMs ?? Math.max(1000, Math.floor(ttlMs / 4));
    const now = new Date().toISOString();
    const body: LeaseBody = {
      run_id: crypto.randomUUID(),
      host: hostname(),
      pid: Deno.pid,
      output_dir: o.outputDir,
      acquired_at: now,
      renewed_at: now,
      ttl_s: ttlMs / 1000,
    };
    const data = encode(body);
    let r = await store.tryWrite(LEASE_NAME, data, "application/json", "0");
    for (let tries = 0; !("written" in r) && tries < 3; tries++) {
      const holder = r.conflict;
      if (!holder) {
        r = await store.tryWrite(LEASE_NAME, data, "application/json", "0"); // released meanwhile
        continue;
      }
      let held: LeaseBody | null = null;
      try {
        held = JSON.parse(new TextDecoder().decode(await store.read(LEASE_NAME)));
      } catch { /* unreadable: treated as expired below */ }
      const age = held ? Date.now() - Date.parse(held.renewed_at) : Infinity;
      const sameRun = held && held.host === body.host && held.output_dir === o.outputDir &&
        processExists(held.pid) === false;
      const expired = !held; // unreadable; otherwise watched below (no trust in the holder's clock)
      let takeGeneration = holder.generation ?? "0";
      if (!sameRun && !expired) {
        // A holder on another host (or another dir) may be alive or dead (preempted): it renews every ttl/4, so
        // watch for one renewal. Renewed → alive: refused. Expired unrenewed → dead: taken over.
        const ttl = (held!.ttl_s ?? ttlMs / 1000) * 1000;
        const left = ttl; // a full TTL on our clock from now: skew between hosts cannot shorten it
        (o.log ?? console.error)(
          `gcs: ${store.url} is leased by host ${held!.host} pid ${held!.pid} (renewed ${
            Math.round(age / 1000)
          } s ago); waiting up to ${Math.ceil(left / 1000)} s to see whether it is alive`,
        );
        const seen = await watchHolder(store, holder.generation ?? "0", left, ttl / 4);
        if (seen.state === "alive") {
          throw new ActshardError(
            `another run is writing ${store.url} (host ${held!.host}, pid ${held!.pid}, output dir ${
              held!.output_dir
            }; it renewed its lease while we watched)`,
            {
              where: store.objectUrl(LEASE_NAME),
              kind: "remote",
              hint: "wait for it to finish, or use another --gcs_prefix",
            },
          );
        }
        if (seen.state === "gone") {
          r = await store.tryWrite(LEASE_NAME, data, "application/json", "0");
          continue;
        }
        takeGeneration = seen.generation;
      }
      r = await store.tryWrite(LEASE_NAME, data, "application/json", takeGeneration);
    }
    if (!("written" in r)) {
      throw new ActshardError(
        `could not take the writer lease of ${store.url}: another writer keeps taking it`,
        {
          where: store.objectUrl(LEASE_NAME),
          kind: "remote",
          hint: "stop the other run writing this prefix, or use another --gcs_prefix",
        },
      );
    }
    return new PrefixLease(store, body, r.written.generation ?? "0", renewMs);
  }

  /** Throws once the lease was lost (another writer took it): writing on would mix two runs. */
  check(): void {
    if (this.#lost) throw this.#lost;
  }

  async #renew(): Promise<void> {
    if (this.#lost) return;
    const body = { ...this.body, renewed_at: new Date().toISOString() };
    try {
      const r = await this.store.tryWrite(LEASE_NAME, encode(body), "application/json", this.#generation);
      if ("written" in r) {
        this.#generation = r.written.generation ?? this.#generation;
        return;
      }
      this.#lost = new ActshardError(`lost the writer lease of ${this.store.url}: another run took it over`, {
        where: this.store.objectUrl(LEASE_NAME),
        kind: "remote",
        hint: "this run stopped writing; check which run should own the prefix, then rerun that one",
      });
    } catch {
      // A failed renewal is retried at the next tick; the lease stays valid for its TTL meanwhile.
    }
  }

  /** Stop renewing and delete the lease (only if still ours). */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    await this.#renewing.catch(() => {});
    if (this.#lost) return;
    await this.store.delete(LEASE_NAME, { ifGenerationMatch: this.#generation }).catch(() => {});
  }
}

function encode(b: LeaseBody): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(b, null, 2) + "\n");
}
