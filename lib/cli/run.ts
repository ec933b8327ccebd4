/**
 * The CLI edge: every script's `main` runs inside {@link runCli}, which turns any thrown error into exactly one
 * line on stderr and a non-zero exit code. Scripts contain no logic of their own beyond flag parsing.
 *
 * @example
 * ```ts
 * import { runCli } from "./run.ts";
 * if (import.meta.main) await runCli("read", async (args) => { console.log(args.length); });
 * ```
 */
import { ActshardError, errorLine } from "../errors.ts";
import { osErrorLine } from "./os_errors.ts";
import { clearNotedFlags, notedFlags } from "./paths.ts";

/**
 * Run `main(args)`; on error print `<tool>: <one line>` and exit 1 (2 for usage errors). A raw OS error about a
 * path or port flag the script parsed is named by that flag, with the fix (os_errors.ts).
 */
export async function runCli(
  tool: string,
  main: (args: string[]) => Promise<number | void>,
  args: string[] = Deno.args,
): Promise<void> {
  let code = 0;
  clearNotedFlags();
  try {
    const r = await main(args);
    code = typeof r === "number" ? r : 0;
  } catch (e) {
    console.error(`${tool}: ${osErrorLine(e, notedFlags()) ?? errorLine(e)}`);
    if (Deno.env.get("ACTSHARD_DEBUG") && e instanceof Error) console.error(e.stack);
    code = e instanceof ActshardError ? e.exitCode() : 1;
  }
  Deno.exit(code);
}
