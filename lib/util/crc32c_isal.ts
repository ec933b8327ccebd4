/**
 * CRC-32C by Intel's ISA-L (`crc32_iscsi`, hardware CRC and carry-less multiply: ≈ 50 GB/s on one core here,
 * against ≈ 1.8 GB/s for the JS slicing-by-16 in crc32c.ts), loaded through Deno FFI when it is there: Debian
 * and Ubuntu ship it as `libisal2` (`apt-get install libisal2`), Homebrew as `isa-l`. Where it cannot be loaded
 * (no library, no `--allow-ffi`, not Deno) crc32c.ts stays on its JS tables, with the same values.
 *
 * `ACTSHARD_CRC_ENGINE=auto|isal|js` picks (default auto: ISA-L if it loads); `ACTSHARD_ISAL_LIB` names the
 * library file. `isal` where it cannot load is an error, so a benchmark or CI job never measures the wrong one.
 *
 * @example
 * ```ts
 * import { crc32cEngine } from "./crc32c_isal.ts";
 * console.log(crc32cEngine()); // "isal (libisal.so.2)" or "js (…why not isal…)"
 * ```
 */

import { usageError } from "../errors.ts";
import { envGet, libraryCandidates } from "./native_lib.ts";

const SYMBOLS = {
  // uint32_t crc32_iscsi(unsigned char *buffer, int len, uint32_t init_crc): the running CRC's inverted form in
  // and out (init ~0 for a fresh CRC), the convention of Crc32c's internal state.
  crc32_iscsi: { parameters: ["buffer", "i32", "u32"], result: "u32" },
} as const;

/** Largest piece per call (`len` is a C int). */
const MAX_CALL = 1 << 30;

/** A native CRC-32C step: the running CRC's inverted form in and out. */
export type Update = (state: number, data: Uint8Array) => number;

let loaded: { update: Update | null; engine: string } | null = null;

/** Where ISA-L is looked for: `ACTSHARD_ISAL_LIB`, else the platform's usual names. */
export function isalCandidates(os?: string): string[] {
  return libraryCandidates("ACTSHARD_ISAL_LIB", {
    linux: ["libisal.so.2", "libisal.so"],
    darwin: ["libisal.2.dylib", "/opt/homebrew/lib/libisal.2.dylib", "/usr/local/lib/libisal.2.dylib"],
    windows: ["isa-l.dll", "libisal.dll"],
  }, os);
}

/**
 * Choose the engine afresh from the environment (what {@link isalUpdate} does once per thread): `update` null
 * means the JS tables. Throws a usage error for an unknown `ACTSHARD_CRC_ENGINE`, or `isal` where ISA-L cannot
 * load.
 */
export function openCrc32cEngine(): { update: Update | null; engine: string } {
  const choice = envGet("ACTSHARD_CRC_ENGINE") ?? "auto";
  if (!["auto", "isal", "js"].includes(choice)) {
    throw usageError(
      `ACTSHARD_CRC_ENGINE=${choice} is not a CRC-32C engine`,
      "set it to auto (default), isal or js, or unset it",
    );
  }
  if (choice === "js") return { update: null, engine: "js (ACTSHARD_CRC_ENGINE=js)" };
  const why: string[] = [];
  if (typeof globalThis.Deno?.dlopen !== "function") why.push("no Deno FFI");
  else {
    for (const path of isalCandidates()) {
      try {
        const lib = Deno.dlopen(path, SYMBOLS);
        const f = lib.symbols.crc32_iscsi;
        const update: Update = (state, data) => {
          for (let o = 0; o < data.length; o += MAX_CALL) {
            const piece = data.subarray(o, Math.min(data.length, o + MAX_CALL));
            state = f(piece, piece.length, state);
          }
          return state;
        };
        // Check the library against the standard check value before trusting it with every shard.
        const check = new TextEncoder().encode("123456789".repeat(32)); // past the small-buffer threshold
        if ((~update(0xffffffff, check) >>> 0) !== 0xa52eefe3) {
          lib.close();
          why.push(`${path}: crc32_iscsi gave a wrong CRC-32C`);
          continue;
        }
        return { update, engine: `isal (${path})` };
      } catch (e) {
        if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
          why.splice(0, why.length, "no FFI permission (--allow-ffi)");
          break;
        }
        why.push(`${path}: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      }
    }
  }
  const reason = why.join("; ") || "no ISA-L candidate";
  if (choice === "isal") {
    throw usageError(
      `ACTSHARD_CRC_ENGINE=isal but ISA-L cannot be loaded (${reason})`,
      "install libisal2 (apt-get install libisal2), set ACTSHARD_ISAL_LIB to the library file, or unset " +
        "ACTSHARD_CRC_ENGINE",
    );
  }
  return { update: null, engine: `js (${reason})` };
}

/**
 * The native update, or null where crc32c.ts should use its JS tables: `update(state, data)` takes and returns
 * the running CRC's inverted form. Loaded once per thread, on first use.
 */
export function isalUpdate(): Update | null {
  return (loaded ??= openCrc32cEngine()).update;
}

/** Which CRC-32C engine this thread uses, and why: `"isal (path)"` or `"js (reason)"`. */
export function crc32cEngine(): string {
  return (loaded ??= openCrc32cEngine()).engine;
}

/**
 * One line for a stage's log where CRC-32C runs on the JS tables because ISA-L did not load (what it costs, what
 * to do), or null where ISA-L is in use or `ACTSHARD_CRC_ENGINE=js` chose the tables. `engine`: default this
 * thread's ({@link crc32cEngine}).
 *
 * @example
 * ```ts
 * import { crc32cEngineNote } from "./crc32c_isal.ts";
 * console.log(crc32cEngineNote("isal (libisal.so.2)")); // null
 * console.log(crc32cEngineNote("js (libisal.so.2: cannot open shared object file)")); // "CRC-32C on JS tables …"
 * ```
 */
export function crc32cEngineNote(engine: string = crc32cEngine()): string | null {
  if (!engine.startsWith("js (") || engine === "js (ACTSHARD_CRC_ENGINE=js)") return null;
  const why = engine.slice(4, -1).split("; ")[0];
  return `CRC-32C on JS tables, ISA-L not loaded (${why}): ≈ 0.8 CPU-s more per GB of shards; ` +
    "install libisal2 (apt-get install libisal2; Homebrew: isa-l) or set ACTSHARD_ISAL_LIB to the library file";
}
