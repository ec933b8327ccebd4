/**
 * Byte-level BPE tokenizer (Qwen2 / Qwen2.5, GPT-2 family), exact to HF `tokenizers` on the reference vectors.
 * Encoding: split out added tokens (→ their ids) → NFC → pre-tokenizer regex → UTF-8 bytes in the byte-level
 * alphabet → ranked merges (cached per piece) → vocab ids. No BOS is added unless the tokenizer config asks for
 * one (Qwen's does not).
 *
 * @example
 * ```ts
 * import { Tokenizer } from "./bpe.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000 }); // copies the real Qwen tokenizer files
 * const tok = await Tokenizer.fromModelDir(dir);
 * const ids = tok.encode("<|im_start|>user\nHello world<|im_end|>");
 * console.log(Array.from(ids)); // [151644, 872, 198, 9707, 1879, 151645]
 * console.log(tok.decode(ids)); // the same text
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { ActshardError } from "../errors.ts";
import { fromByteLevel, toByteLevel } from "./byte_level.ts";
import { readTokenizerSpec, type TokenizerSpec } from "./load.ts";
import { compileHfRegex, splitPieces } from "./pretokenize.ts";

const CACHE_LIMIT = 200_000;

/**
 * A byte-level BPE tokenizer built from a model directory or a {@link TokenizerSpec}.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { Tokenizer } from "./bpe.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000 });
 * const tok = await Tokenizer.fromModelDir(dir);
 * assert.deepStrictEqual(Array.from(tok.encode("Hello world")), [9707, 1879]);
 * assert(tok.decode(tok.encode("Hello world")) === "Hello world");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Tokenizer {
  /** Id of the padding token (the config's pad token, else EOS). */
  readonly padId: number;
  /** Id of the end-of-sequence token (-1 when the tokenizer has none). */
  readonly eosId: number;
  /** Id of the beginning-of-sequence token, or null (Qwen has none). */
  readonly bosId: number | null;
  /** One more than the largest token id (vocab plus added tokens). */
  readonly vocabSize: number;
  /** The model's Jinja chat template from `tokenizer_config.json`, or null (→ ChatML). */
  readonly chatTemplate: string | null;

  readonly #vocab: Map<string, number>;
  readonly #ranks: Map<string, number>;
  readonly #idToToken: string[];
  readonly #special: Map<string, number>;
  readonly #specialIds: Set<number>;
  readonly #specialRe: RegExp | null;
  readonly #pieceRe: RegExp;
  readonly #nfc: boolean;
  readonly #addPrefixSpace: boolean;
  readonly #ignoreMerges: boolean;
  readonly #addBos: boolean;
  #cache = new Map<string, number[]>();

  /** Build from parsed tokenizer files (see {@link readTokenizerSpec}). */
  constructor(spec: TokenizerSpec) {
    this.#vocab = spec.vocab;
    this.#ranks = new Map(spec.merges.map((m, i) => [m, i]));
    this.#special = new Map(spec.added.map((t) => [t.content, t.id]));
    this.#specialIds = new Set(spec.added.map((t) => t.id));
    const contents = spec.added.map((t) => t.content).filter((c) => c.length > 0);
    // Longest first, so that a token that is a prefix of another never wins.
    contents.sort((a, b) => b.length - a.length);
    this.#specialRe = contents.length
      ? new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "gu")
      : null;
    this.#pieceRe = compileHfRegex(spec.pattern);
    this.#nfc = spec.nfc;
    this.#addPrefixSpace = spec.addPrefixSpace;
    this.#ignoreMerges = spec.ignoreMerges;
    let maxId = -1;
    for (const id of spec.vocab.values()) if (id > maxId) maxId = id;
    for (const t of spec.added) if (t.id > maxId) maxId = t.id;
    this.vocabSize = maxId + 1;
    this.#idToToken = new Array<string>(this.vocabSize);
    for (const [t, id] of spec.vocab) this.#idToToken[id] = t;
    for (const t of spec.added) this.#idToToken[t.id] = t.content;
    const idOf = (t: string | null) => (t === null ? undefined : this.#special.get(t) ?? this.#vocab.get(t));
    this.eosId = idOf(spec.eosToken) ?? this.#special.get("<|endoftext|>") ?? -1;
    this.padId = idOf(spec.padToken) ?? this.eosId;
    this.bosId = idOf(spec.bosToken) ?? null;
    this.#addBos = spec.addBos && this.bosId !== null;
    this.chatTemplate = spec.chatTemplate;
  }

  /** Load `tokenizer.json`, or `vocab.json` + `merges.txt` (+ added tokens / config), from `dir`. */
  static async fromModelDir(dir: string): Promise<Tokenizer> {
    return new Tokenizer(await readTokenizerSpec(dir));
  }

  /** Token ids of `text`; added/special tokens written in the text map to their ids. */
  encode(text: string): Int32Array {
    const out: number[] = [];
    if (this.#addBos) out.push(this.bosId as number);
    const re = this.#specialRe;
    if (re === null) this.#encodeOrdinary(text, out);
    else {
      let last = 0;
      re.lastIndex = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        if (m.index > last) this.#encodeOrdinary(text.slice(last, m.index), out);
        out.push(this.#special.get(m[0]) as number);
        last = m.index + m[0].length;
      }
      if (last < text.length) this.#encodeOrdinary(text.slice(last), out);
    }
    return Int32Array.from(out);
  }

  /** Text of `ids` (invalid UTF-8 → U+FFFD, as HF's `errors="replace"`). Unknown ids are an error. */
  decode(ids: ArrayLike<number>): string {
    let text = "";
    const bytes: number[] = [];
    const flush = () => {
      if (bytes.length) text += new TextDecoder().decode(new Uint8Array(bytes));
      bytes.length = 0;
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const tok = this.#idToToken[id];
      if (tok === undefined) {
        throw new ActshardError(`token id ${id} is not in the vocabulary`, { kind: "data" });
      }
      if (this.#specialIds.has(id)) {
        flush();
        text += tok;
      } else fromByteLevel(tok, bytes);
    }
    flush();
    return text;
  }

  /** Id of a token string (vocab or added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#special.get(token) ?? this.#vocab.get(token);
  }

  #encodeOrdinary(text: string, out: number[]): void {
    if (this.#nfc) text = text.normalize("NFC");
    if (this.#addPrefixSpace && !text.startsWith(" ")) text = " " + text;
    for (const piece of splitPieces(text, this.#pieceRe)) {
      const cached = this.#cache.get(piece);
      if (cached !== undefined) {
        for (const id of cached) out.push(id);
        continue;
      }
      const ids = this.#bpe(toByteLevel(piece));
      if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
      this.#cache.set(piece, ids);
      for (const id of ids) out.push(id);
    }
  }

  /** Merge the characters of one byte-level word by rank, lowest rank first (leftmost on ties). */
  #bpe(word: string): number[] {
    const whole = this.#vocab.get(word);
    if (whole !== undefined && (word.length === 1 || this.#ignoreMerges)) return [whole];
    let parts = Array.from(word);
    while (parts.length > 1) {
      let best = Infinity;
      let first = "";
      let second = "";
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.#ranks.get(parts[i] + " " + parts[i + 1]);
        if (r !== undefined && r < best) {
          best = r;
          first = parts[i];
          second = parts[i + 1];
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (i < parts.length - 1 && parts[i] === first && parts[i + 1] === second) {
          next.push(first + second);
          i++;
        } else next.push(parts[i]);
      }
      parts = next;
    }
    return parts.map((p) => {
      const id = this.#vocab.get(p);
      if (id === undefined) {
        throw new ActshardError(`BPE produced a token that is not in the vocabulary: ${JSON.stringify(p)}`, {
          kind: "data",
          hint: "vocab.json and merges.txt do not belong together",
        });
      }
      return id;
    });
  }
}
