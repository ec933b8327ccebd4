/**
 * Typed errors of the PJRT binding. {@link PjrtError} carries a `PJRT_Error`'s code and message (the C object is
 * destroyed before the JS error is thrown); {@link PjrtLoadError} says why a plugin could not be used at all.
 *
 * @example
 * ```ts
 * import { PjrtError } from "./errors.ts";
 * function describe(e: unknown): string {
 *   return e instanceof PjrtError ? `${e.call}: ${e.codeName}: ${e.pjrtMessage}` : String(e);
 * }
 * ```
 */
import { ERROR_CODE_NAMES } from "./api.ts";

/** A `PJRT_Error` returned by a plugin call (or delivered through an event). */
export class PjrtError extends Error {
  /** absl status code (1..16). */
  readonly code: number;
  /** e.g. "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The plugin's own message. */
  readonly pjrtMessage: string;
  /** The PJRT function that failed, e.g. "Client_Compile". */
  readonly call: string;

  constructor(call: string, code: number, message: string) {
    const codeName = ERROR_CODE_NAMES[code] ?? `code ${code}`;
    super(`PJRT ${call} failed: ${codeName}: ${message.split("\n")[0]}`);
    this.name = "PjrtError";
    this.code = code;
    this.codeName = codeName;
    this.pjrtMessage = message;
    this.call = call;
  }
}

/** Why a plugin could not be loaded. */
export type PjrtLoadProblem = "open" | "symbol" | "version" | "table";

/** A plugin that cannot be opened or speaks an ABI this binding does not. */
export class PjrtLoadError extends Error {
  readonly problem: PjrtLoadProblem;
  readonly path: string;

  constructor(problem: PjrtLoadProblem, path: string, message: string) {
    super(message);
    this.name = "PjrtLoadError";
    this.problem = problem;
    this.path = path;
  }
}
