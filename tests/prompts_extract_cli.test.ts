import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { writeTinyTokenizer } from "./_tokenizer_fixture.ts";
import { join, resolve } from "node:path";
import { userCwd } from "../lib/cli/paths.ts";
import { type ExtractConfig, parseExtractFlags, parseLayers } from "../lib/cli/extract_flags.ts";
import { extractMain } from "../scripts/extract.ts";
import { ActshardError } from "../lib/errors.ts";
import { DEFAULT_PROMPT_FORMAT } from "../lib/prompts/default_format.ts";

const cfg = (args: string[]) => parseExtractFlags(args) as ExtractConfig;

Deno.test("extract flags: the seed's names and defaults, plus ours", () => {
  const d = cfg([]);
  assertEquals(d.model_path, "KathirKs/qwen-2.5-0.5b");
  // Paths resolve where the user stands (INIT_CWD under deno task), printed and recorded absolute.
  assertEquals(d.dataset_path, resolve(userCwd(), "test_data_small.json"));
  assertEquals(d.output_dir, resolve(userCwd(), "activations_arc"));
  assertEquals(d.layers_to_extract, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]);
  assertEquals([d.batch_size, d.predictions_per_task, d.random_seed, d.max_seq_length], [8, 8, 42, 2048]);
  assertEquals([d.shard_size_gb, d.compress_shards, d.codec, d.format, d.dtype], [
    1,
    true,
    "gzip",
    "pickle",
    "float32",
  ]);
  assertEquals([d.n_tasks, d.gcs_prefix, d.augment, d.prompt_format, d.backend], [
    null,
    "activations",
    "default",
    null,
    "onnx",
  ]);
  assertEquals(cfg(["--layers_to_extract", "20", "21", "22", "23"]).layers_to_extract, [20, 21, 22, 23]);
  assertEquals(cfg(["--layers_to_extract", "20,21"]).layers_to_extract, [20, 21]);
  assertEquals(cfg(["--layers_to_extract=10-12,20"]).layers_to_extract, [10, 11, 12, 20]);
  assertEquals(parseLayers("3 1 3"), [1, 3]);
  // A typo'd huge range fails at once with one usage line instead of expanding a billion-element set.
  assertThrows(() => parseLayers("0-999999999"), /out of range/);
  assertEquals(cfg(["--no_compress_shards"]).codec, "none");
  assertEquals(cfg(["--no_compress_shards", "--codec", "zstd"]).codec, "zstd");
  assertEquals(cfg(["--n_tasks", "0"]).n_tasks, null); // the seed: 0 = all
  assertEquals(cfg(["--upload_to_gcs", "--gcs_bucket", "b", "--gcs_prefix", "/x/y/"]).gcs_prefix, "x/y");
  assertEquals(cfg(["--format", "safetensors", "--dtype", "bfloat16"]).dtype, "bfloat16");
  assertEquals(cfg(["--num_workers", "4", "--worker_index", "3"]).worker_index, 3);
  assert("help" in parseExtractFlags(["--help"]));
  const usage: string[][] = [
    ["--layers_to_extract", "a"],
    ["--layers_to_extract", "5-3"],
    ["--dtype", "bfloat16"],
    ["--upload_to_gcs"],
    ["--num_workers", "2", "--worker_index", "2"],
    ["--batch_size", "0"],
    ["--codec", "lz4"],
    ["--augment", "some"],
    ["--max_seq_length", "-1"],
    ["--shard_size_gb", "0"],
    ["--bogus"],
  ];
  for (const a of usage) {
    const e = assertThrows(() => parseExtractFlags(a), ActshardError);
    void e;
    try {
      parseExtractFlags(a);
    } catch (err) {
      assertEquals((err as ActshardError).exitCode(), 2, a.join(" "));
    }
  }
});

Deno.test("extract flags: --output_dir gs://… is a usage error (it became a local directory named gs:)", () => {
  const e = (() => {
    try {
      parseExtractFlags(["--output_dir", "gs://b/p"]);
    } catch (err) {
      return err;
    }
  })();
  assert(e instanceof ActshardError, "expected a usage error");
  assertEquals(e.exitCode(), 2);
  assertEquals(e.message, "--output_dir is a local directory, not gs://");
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/extract.ts", ...args],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

const GOOD = { train: [{ input: [[1, 2]], output: [[2, 1]] }], test: [{ input: [[3, 4]] }] };

Deno.test("extract CLI: bad input fails with one line naming the task, file and line", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "model");
  await writeTinyTokenizer(model);
  const write = async (name: string, text: string) => {
    await Deno.writeTextFile(join(tmp.path, name), text);
    return join(tmp.path, name);
  };
  const ragged = await write(
    "ragged.json",
    JSON.stringify({ ok: GOOD, t_ragged: { ...GOOD, test: [{ input: [[1], [2, 3]] }] } }),
  );
  const syntax = await write("syntax.json", `{"ok": ${JSON.stringify(GOOD)},\n "b": {"train": [,]}}`);
  const badFormat = await write(
    "fmt.json",
    JSON.stringify({ ...DEFAULT_PROMPT_FORMAT, grid_encoder: "Nope()" }),
  );
  const renderFail = await write(
    "fmt2.json",
    JSON.stringify({ ...DEFAULT_PROMPT_FORMAT, user_template: "{{ raise_exception('boom') }}" }),
  );
  const good = await write("good.json", JSON.stringify({ t1: GOOD }));
  const dry = ["--dry_run", "--model_path", model];
  const cases: [string[], number, RegExp][] = [
    [
      [...dry, "--dataset_path", ragged],
      1,
      /^extract: task t_ragged: test\[0\]\.input is ragged.*ragged\.json/,
    ],
    [[...dry, "--dataset_path", syntax], 1, /^extract: invalid JSON: .*syntax\.json:2:\d+/],
    [[...dry, "--dataset_path", good, "--prompt_format", badFormat], 1, /unknown encoder Nope.*fmt\.json/],
    [
      [...dry, "--dataset_path", good, "--prompt_format", renderFail],
      1,
      /^extract: task t1: .*failed to render: boom/,
    ],
    [["--dry_run", "--model_path", "Org/not-a-dir", "--dataset_path", good], 2, /local model directory/],
    [["--bogus_flag"], 2, /^extract: unknown flag --bogus_flag/],
  ];
  for (const [args, code, re] of cases) {
    const r = await cli(args);
    assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assert(re.test(lines[0]), lines[0]);
  }
  const help = await cli(["--help"]);
  assertEquals(help.code, 0);
  assert(help.stdout.includes("--layers_to_extract") && help.stdout.includes("--dump_prompts"));
});

Deno.test("extract --dry_run: augmented dumps are identical across runs with one seed", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "model");
  await writeTinyTokenizer(model);
  const ds = join(tmp.path, "d.json");
  await Deno.writeTextFile(
    ds,
    JSON.stringify({ a: GOOD, b: { ...GOOD, test: [GOOD.test[0], { input: [[0]] }] } }),
  );
  const run = async (out: string, seed: string) => {
    const args = [
      "--dry_run",
      "--model_path",
      model,
      "--dataset_path",
      ds,
      "--dump_prompts",
      out,
      "--random_seed",
      seed,
    ];
    assertEquals(await extractMain(args), 0);
    return await Deno.readTextFile(out);
  };
  const one = await run(join(tmp.path, "1.jsonl"), "42");
  const two = await run(join(tmp.path, "2.jsonl"), "42");
  assertEquals(one, two);
  assert(one !== await run(join(tmp.path, "3.jsonl"), "7"));
  const lines = one.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(lines.length, 8 + 16);
  assertEquals(Object.keys(lines[0]), [
    "task_id",
    "test_index",
    "sample_idx",
    "augmentation",
    "prompt",
    "input_ids",
  ]);
  assert(Array.isArray(lines[0].input_ids) && lines[0].input_ids.every(Number.isInteger));
});
