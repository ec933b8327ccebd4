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
import { BINDING_API_VERSION, ERROR_CODE_NAMES } from "./api.ts";

/**
 * A `PJRT_Error` returned by a plugin call (or delivered through an event).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { PjrtError } from "./mod.ts";
 * const e = new PjrtError("Client_Compile", 3, "unexpected token\nat line 2");
 * assert(e.message === "PJRT Client_Compile failed: INVALID_ARGUMENT: unexpected token");
 * assert(e.codeName === "INVALID_ARGUMENT" && e.pjrtMessage.endsWith("line 2"));
 * ```
 */
export class PjrtError extends Error {
  /** absl status code (1..16). */
  readonly code: number;
  /** e.g. "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The plugin's own message. */
  readonly pjrtMessage: string;
  /** The PJRT function that failed, e.g. "Client_Compile". */
  readonly call: string;

  /** The error of PJRT function `call`: absl status `code` and the plugin's `message`. */
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

/**
 * A plugin refused an Args struct as too small: it was built from a newer `pjrt_c_api.h` in which the struct
 * grew, and this binding does not know the new fields. One line names both API versions and both sizes.
 *
 * @example Usage
 * ```ts
 * import { PjrtStructSizeError } from "./mod.ts";
 * const xla = "Unexpected PJRT_ExecuteOptions size: expected 80, got 64";
 * const e = new PjrtStructSizeError("LoadedExecutable_Execute", 3, xla, PjrtStructSizeError.parse(xla)!, { major: 0, minor: 99 });
 * console.log(e.message); // the PJRT plugin (C API 0.99) needs a PJRT_ExecuteOptions of 80 bytes; this binding …
 * ```
 */
export class PjrtStructSizeError extends PjrtError {
  /** e.g. "PJRT_ExecuteOptions". */
  readonly struct: string;
  /** The size in bytes the plugin expects. */
  readonly expected: number;
  /** The size in bytes this binding sent. */
  readonly sent: number;
  /** The plugin's C API version. */
  readonly pluginVersion: { major: number; minor: number };

  /** The error for a refused struct, from the plugin's message as {@link PjrtStructSizeError.parse} read it. */
  constructor(
    call: string,
    code: number,
    message: string,
    parsed: { struct: string; expected: number; sent: number },
    pluginVersion: { major: number; minor: number },
  ) {
    super(call, code, message);
    this.name = "PjrtStructSizeError";
    this.struct = parsed.struct;
    this.expected = parsed.expected;
    this.sent = parsed.sent;
    this.pluginVersion = pluginVersion;
    const b = BINDING_API_VERSION;
    this.message =
      `the PJRT plugin (C API ${pluginVersion.major}.${pluginVersion.minor}) needs a ${parsed.struct} ` +
      `of ${parsed.expected} bytes; this binding (C API ${b.major}.${b.minor}) sends ${parsed.sent} (PJRT ${call})`;
  }

  /** Parse XLA's "Unexpected PJRT_X size: expected N, got M" message; null when it is not one. */
  static parse(message: string): { struct: string; expected: number; sent: number } | null {
    const m = /Unexpected (PJRT_\w+) size: expected (?:at least )?(\d+), got (\d+)/.exec(message);
    return m ? { struct: m[1], expected: Number(m[2]), sent: Number(m[3]) } : null;
  }
}

/** Why a plugin could not be loaded. */
export type PjrtLoadProblem = "open" | "symbol" | "version" | "table";

/**
 * A plugin that cannot be opened or speaks an ABI this binding does not.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { PjrtApi, PjrtLoadError } from "./mod.ts";
 * try {
 *   PjrtApi.open("/no/such/plugin.so");
 * } catch (e) {
 *   assert(e instanceof PjrtLoadError && e.problem === "open" && e.path === "/no/such/plugin.so");
 * }
 * ```
 */
export class PjrtLoadError extends Error {
  /** What went wrong: `open` (dlopen), `symbol` (no GetPjrtApi), `version` (major), `table` (too small). */
  readonly problem: PjrtLoadProblem;
  /** The plugin path that failed to load. */
  readonly path: string;

  /** A load failure of kind `problem` for the plugin at `path`. */
  constructor(problem: PjrtLoadProblem, path: string, message: string) {
    super(message);
    this.name = "PjrtLoadError";
    this.problem = problem;
    this.path = path;
  }
}
