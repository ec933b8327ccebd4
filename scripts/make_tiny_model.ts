/**
 * `deno task make-tiny-model --out DIR [--hidden 64 --layers 24 --heads 4 --kv_heads 2 --vocab N ...]`: write a
 * deterministic random-weight Qwen2 checkpoint in Hugging Face layout (see lib/model/tiny.ts). The default has
 * Qwen2.5-0.5B's 24 blocks, so extract's default `--layers_to_extract 10-23` works on it as it is.
 */
import { runCli } from "../lib/cli/run.ts";
import { choiceFlag, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { usageError } from "../lib/errors.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";

/** Default decoder blocks: Qwen2.5-0.5B's count, so extract's default layers (10-23) are all there. */
export const TINY_CLI_LAYERS = 24;

/** The CLI's main, importable for tests. */
export async function main(args: string[]): Promise<number> {
  const r = parseFlags("make-tiny-model", args, {
    out: { type: "string", help: "output directory", metavar: "DIR", path: true },
    hidden: { type: "string", help: "hidden size", default: "64" },
    layers: {
      type: "string",
      help: "decoder layers (24, as Qwen2.5-0.5B: extract's default layers 10-23 exist)",
      default: String(TINY_CLI_LAYERS),
    },
    heads: { type: "string", help: "attention heads", default: "4" },
    kv_heads: { type: "string", help: "key/value heads (GQA)", default: "2" },
    intermediate: { type: "string", help: "MLP size (default 4 * hidden)" },
    vocab: { type: "string", help: "vocabulary size", default: "151936" },
    seed: { type: "string", help: "random seed", default: "0" },
    dtype: { type: "string", help: "stored dtype: F32 or BF16", default: "F32" },
    tie: { type: "boolean", help: "tie input/output embeddings", default: true, negatable: true },
  }, {
    description: "Write a deterministic random-weight Qwen2 checkpoint (HF layout, real Qwen tokenizer).",
  });
  if (r.help) {
    console.log(r.help);
    return 0;
  }
  const v = r.values;
  if (!v.out) {
    throw usageError("--out is required", "give the directory to write the checkpoint into", "--out");
  }
  const n = (name: string) => numberFlag(name, v[name] as string | undefined, { integer: true, min: 1 });
  const hidden = n("hidden")!, heads = n("heads")!, kvHeads = n("kv_heads")!;
  if (hidden % heads !== 0 || (hidden / heads) % 2 !== 0) {
    throw usageError(`--hidden ${hidden} must be a multiple of 2 * --heads ${heads}`, undefined, "--hidden");
  }
  if (heads % kvHeads !== 0) {
    throw usageError(`--heads ${heads} must be a multiple of --kv_heads ${kvHeads}`, undefined, "--kv_heads");
  }
  const dtype = choiceFlag("dtype", v.dtype as string, ["F32", "BF16"] as const);
  await writeTinyModel(v.out as string, {
    hidden,
    heads,
    kvHeads,
    layers: n("layers"),
    intermediate: v.intermediate === undefined ? undefined : n("intermediate"),
    vocab: n("vocab"),
    seed: numberFlag("seed", v.seed as string, { integer: true, min: 0 }),
    dtype,
    tie: v.tie as boolean,
  });
  console.log(
    `wrote ${v.out} (hidden ${hidden}, ${n("layers")} layers, ${heads}/${kvHeads} heads, ${dtype})`,
  );
  return 0;
}

if (import.meta.main) await runCli("make-tiny-model", main);
