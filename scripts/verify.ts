/**
 * `deno task verify DIR|gs://B/P [--deep] [--json] [--allow_incomplete] [--allow_extra]`: re-hash every byte of
 * every shard against metadata.json, decode every record, check counts, shapes, dtype, NaN/Inf and sample
 * coverage. Exit codes: 0 complete and clean; 3 clean but incomplete (in progress, interrupted, no shards, a gs://
 * prefix whose uploads did not all finish) unless --allow_incomplete; 1 corrupt or inconsistent; 2 usage.
 */
import { runCli } from "../lib/cli/run.ts";
import { GCS_HELP, parseFlags } from "../lib/cli/flags.ts";
import { applyGcsNetworkFlags, GCS_NETWORK_FLAGS } from "../lib/cli/gcs_flags.ts";
import { usageError } from "../lib/errors.ts";
import { openStore } from "../lib/storage/open.ts";
import { verifyDataset, type VerifyReport } from "../lib/shard/verify.ts";

/** Exit codes of verify (also listed in --help, README and docs/shard-format.md). */
export const VERIFY_EXIT = { clean: 0, corrupt: 1, usage: 2, incomplete: 3 } as const;

/** Run verify; returns the exit code ({@link VERIFY_EXIT}). */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("verify", args, {
    json: { type: "boolean", help: "print the report as JSON" },
    deep: { type: "boolean", help: "always download, re-hash and decode (even when the store has crc32c)" },
    allow_incomplete: {
      type: "boolean",
      help: "exit 0, not 3, for a clean dataset of a run that did not finish",
    },
    allow_extra: { type: "boolean", help: "shard files metadata.json does not list warn instead of failing" },
    ...GCS_NETWORK_FLAGS,
  }, {
    positionals: "DIR|gs://BUCKET/PREFIX",
    positionalPaths: true,
    description: "Check a dataset's shards against its metadata.json. Exit codes: 0 complete and clean; " +
      "1 corrupt or inconsistent; 2 usage error; 3 clean but incomplete (in progress, interrupted, " +
      "no shards, uploads not all finished) unless --allow_incomplete.",
    epilog: GCS_HELP,
  });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  applyGcsNetworkFlags(f.values);
  if (f.positionals.length !== 1) {
    throw usageError("give exactly one dataset: a directory or gs://BUCKET/PREFIX", "deno task verify DIR");
  }
  const report = await verifyDataset(await openStore(f.positionals[0]), {
    deep: f.values.deep === true,
    allowExtra: f.values.allow_extra === true,
  });
  if (f.values.json) console.log(JSON.stringify(report, null, 2));
  else console.log(formatReport(report, f.values.allow_incomplete === true));
  return exitCode(report, f.values.allow_incomplete === true);
}

/** The exit code for a report: errors → 1; else incomplete → 3 (0 with `allowIncomplete`); else 0. */
export function exitCode(r: VerifyReport, allowIncomplete = false): number {
  if (!r.ok) return VERIFY_EXIT.corrupt;
  if (!r.complete && !allowIncomplete) return VERIFY_EXIT.incomplete;
  return VERIFY_EXIT.clean;
}

/** Human-readable report. */
export function formatReport(r: VerifyReport, allowIncomplete = false): string {
  const lines = [
    `verify ${r.root}: ${r.shards.length} shards, ${r.records} records, ${
      (r.bytes / 2 ** 20).toFixed(1)
    } MiB`,
  ];
  const layers = Object.keys(r.layers);
  if (layers.length) {
    const l0 = r.layers[layers[0]];
    lines.push(
      `  layers ${
        layers.join(",")
      }; ${l0.samples} samples per layer (sample_idx ${l0.sample_idx_min}..${l0.sample_idx_max}); dtype ${
        r.dtypes.join(",")
      }; hidden ${r.hidden.join(",")}`,
    );
  }
  for (const i of r.issues) lines.push(`  ${i.level}: ${i.shard ? `${i.shard}: ` : ""}${i.message}`);
  for (const why of r.incomplete) lines.push(`  incomplete: ${why}`);
  const errors = r.issues.filter((i) => i.level === "error").length;
  if (!r.ok) lines.push(`FAILED: ${errors} error${errors === 1 ? "" : "s"}`);
  else if (!r.complete) {
    lines.push(
      allowIncomplete
        ? "OK, but INCOMPLETE (--allow_incomplete)"
        : "INCOMPLETE: the shards are clean but the run did not finish (exit 3; --allow_incomplete accepts it)",
    );
  } else lines.push("OK");
  return lines.join("\n");
}

if (import.meta.main) await runCli("verify", main);
