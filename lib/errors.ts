/**
 * Errors are values with context. Every failure a user can cause (bad flag, bad file, bad data, unreachable
 * bucket) is raised as an {@link ActshardError}: `what` went wrong, `where` (a path, task id, shard name, flag),
 * and `hint` (what to do). The CLI edge ({@link ../lib/cli/run.ts}) turns it into one line and an exit code;
 * nothing else prints stack traces.
 *
 * @example
 * ```ts
 * import { ActshardError } from "./errors.ts";
 * const e = new ActshardError("metadata.json is not valid JSON", {
 *   where: "out/metadata.json", hint: "restore it or rerun with --overwrite",
 * });
 * console.log(e.line()); // metadata.json is not valid JSON (out/metadata.json): restore it or rerun with --overwrite
 * ```
 *
 * @module
 */
/** What kind of failure an {@link ActshardError} is: `usage` exits 2, the rest exit 1. */
export type ErrorKind = "usage" | "input" | "data" | "io" | "remote" | "internal";

/** Options describing an {@link ActshardError}. */
export interface ErrorContext {
  /** The file, task, shard, flag or URL the error is about. */
  where?: string;
  /** What the user should do about it. */
  hint?: string;
  /** `usage` exits 2 (bad flag/value), everything else exits 1. */
  kind?: ErrorKind;
  /** The underlying error, kept for `--verbose` debugging. */
  cause?: unknown;
}

/**
 * A user-facing error that renders as a single line.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { ActshardError } from "./errors.ts";
 * const e = new ActshardError("shard not found", { where: "out/shard_0001.pkl.gz", hint: "rerun extract" });
 * assert(e.line() === "shard not found (out/shard_0001.pkl.gz): rerun extract");
 * assert(e.exitCode() === 1);
 * ```
 */
export class ActshardError extends Error {
  /** The file, task, shard, flag or URL the error is about. */
  readonly where?: string;
  /** What the user should do about it. */
  readonly hint?: string;
  /** Decides the exit code: `usage` → 2, everything else → 1. */
  readonly kind: ErrorKind;

  /** An error with `message` and its context (`where`, `hint`, `kind` — default `input` —, `cause`). */
  constructor(message: string, ctx: ErrorContext = {}) {
    super(message, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = "ActshardError";
    this.where = ctx.where;
    this.hint = ctx.hint;
    this.kind = ctx.kind ?? "input";
  }

  /** `message (where): hint` on one line. */
  line(): string {
    let s = this.message.replace(/\s*\n\s*/g, " ");
    // Name the place unless the message already does ("unknown flag --x (--x)" reads as a stutter).
    if (this.where && !s.includes(this.where)) s += ` (${this.where})`;
    if (this.hint) s += `: ${this.hint}`;
    return s;
  }

  /** Process exit code for this error. */
  exitCode(): number {
    return this.kind === "usage" ? 2 : 1;
  }
}

/** Shorthand for a usage error (exit code 2). */
export function usageError(message: string, hint?: string, where?: string): ActshardError {
  return new ActshardError(message, { kind: "usage", hint, where });
}

/** True for "no space left on device" (ENOSPC) and disk-quota (EDQUOT) errors from the filesystem. */
export function isDiskFull(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  return code === "ENOSPC" || code === "EDQUOT" || /No space left on device|os error 28\b/.test(e.message);
}

/**
 * Render any thrown value as one line (never a stack trace).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { ActshardError, errorLine } from "./errors.ts";
 * assert(errorLine(new ActshardError("bad flag", { where: "--batch_size" })) === "bad flag (--batch_size)");
 * console.log(errorLine(new Deno.errors.NotFound("open 'x.json'"))); // file not found: open 'x.json'
 * ```
 */
export function errorLine(e: unknown): string {
  if (e instanceof ActshardError) return e.line();
  if (e instanceof Deno.errors.NotFound) return `file not found: ${firstLine(e.message)}`;
  if (e instanceof Deno.errors.PermissionDenied) return `permission denied: ${firstLine(e.message)}`;
  if (e instanceof Deno.errors.NotADirectory) return `not a directory: ${firstLine(e.message)}`;
  if (e instanceof Deno.errors.IsADirectory) {
    return `is a directory, expected a file: ${firstLine(e.message)}`;
  }
  if (e instanceof Deno.errors.AlreadyExists) return `already exists: ${firstLine(e.message)}`;
  if (isDiskFull(e)) return `disk full: ${firstLine((e as Error).message)}: free space there and rerun`;
  if (e instanceof Error) return `${e.name === "Error" ? "error" : e.name}: ${firstLine(e.message)}`;
  return `error: ${firstLine(String(e))}`;
}

function firstLine(s: string): string {
  return s.split("\n").map((l) => l.trim()).filter(Boolean)[0] ?? s;
}
