/**
 * Scripted faults for the GCS emulator: tests tell it to answer the next N matching requests with an HTTP error
 * (429, 503, …), to drop the connection after part of an upload chunk arrived ("reset"), or to cut a download
 * short ("truncate"), or to accept a request and never answer it ("stall"). Rules are matched in the order added; each has a budget (`times`, default 1; `Infinity`
 * = a fault that never clears) and can let the first `skip` matching requests through.
 *
 * @example
 * ```ts
 * import { FaultScript } from "./faults.ts";
 * const f = new FaultScript();
 * f.add({ op: "upload-chunk", kind: "reset", skip: 1 }); // second chunk PUT of any resumable upload resets
 * f.add({ op: "download", kind: "status", status: 503, times: 2 });
 * ```
 */

/** Which kind of request a rule applies to. */
export type FaultOp =
  | "any"
  | "upload-start" // POST …/upload/…?uploadType=resumable (session creation)
  | "upload-chunk" // PUT of data (or status query) to a resumable session
  | "upload-simple" // uploadType=media|multipart
  | "download" // GET …?alt=media
  | "metadata" // GET object resource
  | "list"
  | "delete"
  | "bucket";

/** A fault that fired, as the emulator records it. */
export interface FiredFault {
  /** The request kind it matched. */
  op: string;
  /** The object name, when the request was about one. */
  object?: string;
  /** The rule's kind (`status`, `reset`, …). */
  kind: string;
  /** The HTTP status answered, for `status` faults. */
  status?: number;
}

/** One scripted fault. */
export interface FaultRule {
  /** Request kind (default "any"). */
  op?: FaultOp;
  /** Only objects whose name starts with this. */
  objectPrefix?: string;
  /**
   * `status`: answer with `status` and a GCS-style JSON error; `reset`: read about half of the request body
   * (uploads keep those bytes, as GCS may), then abort the connection; `truncate`: send the right headers
   * (full Content-Length) but only half the body, then abort; `stall`: accept the request and never answer
   * nor read its body (the connection stays open until the client gives up) — the commonest real-world hang;
   * `stall-body` (downloads): send the headers and half the body, then nothing until the client gives up.
   */
  kind: "status" | "reset" | "truncate" | "stall" | "stall-body";
  /** For `status` (default 503). */
  status?: number;
  /** How many matching requests it hits (default 1; `Infinity` never clears). */
  times?: number;
  /** Let this many matching requests through before the first hit (default 0). */
  skip?: number;
}

/** The request facts a rule is matched against. */
export interface FaultTarget {
  op: Exclude<FaultOp, "any">;
  object?: string;
}

/** An ordered list of rules with their remaining budgets. */
export class FaultScript {
  #rules: { rule: FaultRule; skip: number; left: number }[] = [];
  /** Faults fired so far, for test assertions. */
  fired: FiredFault[] = [];

  add(rule: FaultRule): void {
    this.#rules.push({ rule, skip: rule.skip ?? 0, left: rule.times ?? 1 });
  }

  clear(): void {
    this.#rules = [];
  }

  /** The rule that fires for this request, if any (consumes its budget). */
  take(t: FaultTarget): FaultRule | null {
    for (const r of this.#rules) {
      const op = r.rule.op ?? "any";
      if (op !== "any" && op !== t.op) continue;
      if (r.rule.objectPrefix !== undefined && !(t.object ?? "").startsWith(r.rule.objectPrefix)) continue;
      if (r.left <= 0) continue;
      if (r.skip > 0) {
        r.skip--;
        continue;
      }
      r.left--;
      this.fired.push({ op: t.op, object: t.object, kind: r.rule.kind, status: r.rule.status });
      return r.rule;
    }
    return null;
  }
}
