import { assert, assertEquals } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { join } from "node:path";
import { Tokenizer } from "../lib/tokenizer/bpe.ts";
import { QWEN2_PATTERN } from "../lib/tokenizer/pretokenize.ts";

const QWEN_DIR = () => sharedPath("data", "qwen2-tokenizer");

interface Case {
  input: string;
  ids: number[];
}
const cases = async (): Promise<Case[]> =>
  JSON.parse(await Deno.readTextFile(join(QWEN_DIR(), "qwen2_test_vectors.json"))).cases;

function checkAll(tok: Tokenizer, all: Case[]): void {
  let failed = 0;
  for (const c of all) {
    const got = Array.from(tok.encode(c.input));
    if (JSON.stringify(got) !== JSON.stringify(c.ids)) {
      failed++;
      console.error(`mismatch for ${JSON.stringify(c.input)}: ${got} != ${c.ids}`);
    }
    assertEquals(tok.decode(got), c.input.normalize("NFC"));
  }
  assertEquals(failed, 0);
}

sharedTest("tokenizer: all 46 Qwen2 test vectors (vocab.json + merges.txt + added tokens)", async () => {
  const all = await cases();
  assertEquals(all.length, 46);
  const tok = await Tokenizer.fromModelDir(QWEN_DIR());
  checkAll(tok, all);
  assertEquals(tok.eosId, 151643);
  assertEquals(tok.padId, 151643);
  assertEquals(tok.bosId, null);
  assertEquals(tok.vocabSize, 151665);
  assertEquals(tok.chatTemplate, null);
  assertEquals(Array.from(tok.encode("<|im_start|>user\n<|im_end|>")), [151644, 872, 198, 151645]);
});

sharedTest("tokenizer: the same vectors through a tokenizer.json built from the shared files", async () => {
  const dir = QWEN_DIR();
  const vocab = JSON.parse(await Deno.readTextFile(join(dir, "vocab.json")));
  const merges = (await Deno.readTextFile(join(dir, "merges.txt"))).split("\n")
    .filter((l) => l && !l.startsWith("#version")).map((l) => l.split(" "));
  const added = Object.entries(JSON.parse(await Deno.readTextFile(join(dir, "added_tokens.json"))))
    .map(([content, id]) => ({ id, content, special: true, normalized: false }));
  const tj = {
    version: "1.0",
    added_tokens: added,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    model: { type: "BPE", vocab, merges, ignore_merges: false },
  };
  await using tmp = await tempDir();
  await Deno.writeTextFile(join(tmp.path, "tokenizer.json"), JSON.stringify(tj));
  const tok = await Tokenizer.fromModelDir(tmp.path);
  checkAll(tok, await cases());
  assertEquals(tok.eosId, 151643); // no config: falls back to <|endoftext|>
});

sharedTest("tokenizer: llama.cpp's ggml-vocab-qwen2 .inp/.out agree", async () => {
  const sep = "\n__ggml_vocab_test__\n";
  const inp = (await Deno.readTextFile(join(QWEN_DIR(), "ggml-vocab-qwen2.gguf.inp"))).split(sep);
  const out = (await Deno.readTextFile(join(QWEN_DIR(), "ggml-vocab-qwen2.gguf.out"))).split("\n");
  const tok = await Tokenizer.fromModelDir(QWEN_DIR());
  let n = 0;
  for (let i = 0; i < inp.length; i++) {
    const text = i === inp.length - 1 ? inp[i].replace(/\n__ggml_vocab_test__\n?$/, "") : inp[i];
    const want = out[i].trim() === "" ? [] : out[i].trim().split(/\s+/).map(Number);
    assertEquals(Array.from(tok.encode(text)), want, `case ${i}: ${JSON.stringify(text)}`);
    n++;
  }
  assert(n >= 40, `only ${n} cases`);
});

sharedTest("tokenizer: reference prompts' input_ids", async () => {
  const tok = await Tokenizer.fromModelDir(QWEN_DIR());
  for (
    const f of [
      sharedPath("data", "arc", "reference_prompts_training_first20.json"),
      sharedPath("data", "seed", "reference_prompts_test_data_small.json"),
    ]
  ) {
    for (const p of JSON.parse(await Deno.readTextFile(f)).prompts) {
      assertEquals(Array.from(tok.encode(p.prompt)), p.input_ids, `${p.task_id}/${p.test_index}`);
      assertEquals(tok.decode(p.input_ids), p.prompt);
    }
  }
});
