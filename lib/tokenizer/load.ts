/**
 * Reading a tokenizer from a model directory: HF `tokenizer.json` (fast-tokenizer format), or the slow format
 * `vocab.json` + `merges.txt` with special tokens from `added_tokens.json` / `tokenizer_config.json`. The result
 * is a plain {@link TokenizerSpec}; {@link ../tokenizer/bpe.ts} builds the encoder from it.
 *
 * @example
 * ```ts
 * import { readTokenizerSpec } from "./load.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000 }); // with the real Qwen tokenizer files
 * const spec = await readTokenizerSpec(dir);
 * console.log(spec.vocab.size, spec.added.length); // 151643 and the added tokens
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";
import { GPT2_PATTERN, QWEN2_PATTERN } from "./pretokenize.ts";

/** One added (special) token: matched verbatim in text before BPE. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/** Everything needed to build a byte-level BPE tokenizer. */
export interface TokenizerSpec {
  vocab: Map<string, number>;
  /** Merges in rank order, as "left right". */
  merges: string[];
  added: AddedToken[];
  /** Pre-tokenizer split pattern in HF (Oniguruma) syntax. */
  pattern: string;
  addPrefixSpace: boolean;
  nfc: boolean;
  ignoreMerges: boolean;
  eosToken: string | null;
  padToken: string | null;
  bosToken: string | null;
  addBos: boolean;
  chatTemplate: string | null;
}

type Json = Record<string, unknown>;

async function readJson(path: string): Promise<Json | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ActshardError(`not valid JSON: ${(e as Error).message}`, { where: path });
  }
}

function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return null;
}

function chatTemplateOf(cfg: Json | null): string | null {
  const t = cfg?.chat_template;
  if (typeof t === "string") return t;
  // Newer configs may store a list of named templates; take "default".
  if (Array.isArray(t)) {
    const d = t.find((x) => x && (x as Json).name === "default") ?? t[0];
    return typeof (d as Json)?.template === "string" ? (d as Json).template as string : null;
  }
  return null;
}

/** Read the tokenizer files of `dir`. Throws an {@link ActshardError} naming the directory if none are usable. */
export async function readTokenizerSpec(dir: string): Promise<TokenizerSpec> {
  const cfg = await readJson(join(dir, "tokenizer_config.json"));
  const fast = await readJson(join(dir, "tokenizer.json"));
  const spec = fast ? fromTokenizerJson(fast, dir) : await fromVocabMerges(dir, cfg);
  if (cfg) {
    const decoder = cfg.added_tokens_decoder as Record<string, Json> | undefined;
    const have = new Set(spec.added.map((t) => t.id));
    for (const [id, t] of Object.entries(decoder ?? {})) {
      if (!have.has(Number(id)) && typeof t.content === "string") {
        spec.added.push({ id: Number(id), content: t.content, special: t.special !== false });
      }
    }
    spec.eosToken = tokenContent(cfg.eos_token) ?? spec.eosToken;
    spec.padToken = tokenContent(cfg.pad_token) ?? spec.padToken;
    spec.bosToken = tokenContent(cfg.bos_token);
    spec.addBos = cfg.add_bos_token === true && spec.bosToken !== null;
    spec.chatTemplate = chatTemplateOf(cfg);
  }
  return spec;
}

function emptySpec(): TokenizerSpec {
  return {
    vocab: new Map(),
    merges: [],
    added: [],
    pattern: QWEN2_PATTERN,
    addPrefixSpace: false,
    nfc: true,
    ignoreMerges: false,
    eosToken: null,
    padToken: null,
    bosToken: null,
    addBos: false,
    chatTemplate: null,
  };
}

function fromTokenizerJson(tj: Json, dir: string): TokenizerSpec {
  const where = join(dir, "tokenizer.json");
  const model = tj.model as Json | undefined;
  if (!model || model.type !== "BPE") {
    throw new ActshardError(`tokenizer model type ${JSON.stringify(model?.type)} is not supported`, {
      where,
      hint: "actshard supports byte-level BPE tokenizers (Qwen2, GPT-2 style)",
    });
  }
  const spec = emptySpec();
  spec.vocab = new Map(Object.entries(model.vocab as Record<string, number>));
  spec.merges = (model.merges as (string | string[])[]).map((m) => (typeof m === "string" ? m : m.join(" ")));
  spec.ignoreMerges = model.ignore_merges === true;
  for (const t of (tj.added_tokens as Json[] | undefined) ?? []) {
    spec.added.push({ id: t.id as number, content: t.content as string, special: t.special !== false });
  }
  const norm = tj.normalizer as Json | null;
  spec.nfc = norm === null || norm === undefined ? false : JSON.stringify(norm).includes('"NFC"');
  const pre = tj.pre_tokenizer as Json | null;
  const steps = pre?.type === "Sequence" ? (pre.pretokenizers as Json[]) : pre ? [pre] : [];
  let pattern: string | null = null;
  for (const s of steps) {
    if (s.type === "Split") {
      const p = s.pattern as Json;
      pattern = typeof p.Regex === "string" ? p.Regex : escapeRegex(String(p.String));
    } else if (s.type === "ByteLevel") {
      spec.addPrefixSpace = s.add_prefix_space === true;
      if (s.use_regex !== false && pattern === null) pattern = GPT2_PATTERN;
    } else {
      throw new ActshardError(`pre-tokenizer ${JSON.stringify(s.type)} is not supported`, { where });
    }
  }
  spec.pattern = pattern ?? QWEN2_PATTERN;
  return spec;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function fromVocabMerges(dir: string, _cfg: Json | null): Promise<TokenizerSpec> {
  const vocab = await readJson(join(dir, "vocab.json"));
  let mergesText: string | null = null;
  try {
    mergesText = await Deno.readTextFile(join(dir, "merges.txt"));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!vocab || mergesText === null) {
    throw new ActshardError("no tokenizer found", {
      where: dir,
      hint: "the model directory needs tokenizer.json, or vocab.json + merges.txt",
    });
  }
  const spec = emptySpec();
  spec.vocab = new Map(Object.entries(vocab as Record<string, number>));
  for (const line of mergesText.split("\n")) {
    const l = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (l === "" || l.startsWith("#version")) continue;
    spec.merges.push(l);
  }
  const added = await readJson(join(dir, "added_tokens.json"));
  for (const [content, id] of Object.entries((added ?? {}) as Record<string, number>)) {
    spec.added.push({ id, content, special: true });
  }
  return spec;
}
