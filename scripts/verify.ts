/**
 * `deno task verify DIR [--json] [--deep]`: re-hash every shard against metadata.json, decode every record,
 * check counts, shapes, dtype, NaN/Inf and sample coverage. Exit 0 only when clean.
 */
import { runCli } from "../lib/cli/run.ts";
import { GCS_HELP, parseFlags } from "../lib/cli/flags.ts";
import { usageError } from "../lib/errors.ts";
import { openStore } from "../lib/storage/open.ts";
import { verifyDataset, type VerifyReport } from "../lib/shard/verify.ts";

/** Run verify; returns the exit code (0 clean, 1 problems). */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("verify", args, {
    json: { type: "boolean", help: "print the report as JSON" },
    deep: { type: "boolean", help: "always download, re-hash and decode (even when the store has crc32c)" },
  }, {
    positionals: "DIR|gs://BUCKET/PREFIX",
    positionalPaths: true,
    description: "Check a dataset's shards against its metadata.json.",
    epilog: GCS_HELP,
  });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  if (f.positionals.length !== 1) {
    throw usageError("give exactly one dataset: a directory or gs://BUCKET/PREFIX", "deno task verify DIR");
  }
  const report = await verifyDataset(await openStore(f.positionals[0]), { deep: f.values.deep as boolean });
  if (f.values.json) console.log(JSON.stringify(report, null, 2));
  else console.log(formatReport(report));
  return report.ok ? 0 : 1;
}

/** Human-readable report. */
export function formatReport(r: VerifyReport): string {
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
  const errors = r.issues.filter((i) => i.level === "error").length;
  lines.push(r.ok ? "OK" : `FAILED: ${errors} error${errors === 1 ? "" : "s"}`);
  return lines.join("\n");
}

if (import.meta.main) await runCli("verify", main);
