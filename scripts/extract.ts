/**
 * `deno task extract`: the seed's `extract_activations_arc.py` flags (see `--help`). `--dry_run` builds the
 * prompts and token ids only (`--dump_prompts FILE` writes them as JSONL) and loads no weights; otherwise the
 * pipeline in lib/pipeline/extract.ts runs.
 */
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { runCli } from "../lib/cli/run.ts";
import { dryRun, formatPlanCounts } from "../lib/pipeline/dry_run.ts";
import { killPointHooks } from "../lib/pipeline/kill_point.ts";
import { crc32cEngineNote } from "../lib/util/crc32c_isal.ts";

/** Run extract with `args`; returns the exit code. */
export async function extractMain(args: string[]): Promise<number> {
  const config = parseExtractFlags(args);
  if ("help" in config) {
    console.log(config.help);
    return 0;
  }
  if (config.dry_run) {
    const s = await dryRun(config);
    console.log(
      `dry run: ${formatPlanCounts(s, config.max_seq_length)}` +
        (s.dumpPath ? `; prompts written to ${s.dumpPath}` : ""),
    );
    return 0;
  }
  // Loaded only for a real run (a dry run needs no onnxruntime); a literal specifier, so it is type-checked.
  const { runExtract } = await import("../lib/pipeline/extract.ts");
  // Crash tests' kill points (ACTSHARD_TEST_KILL_AT) are observers wired here, at the edge; unset, none.
  await runExtract(config, killPointHooks());
  // After the run, not before it: a refused or failed run stays one line.
  const note = crc32cEngineNote();
  if (note) console.error(`extract: note: ${note}`);
  return 0;
}

if (import.meta.main) await runCli("extract", extractMain);
