/**
 * The tokenizer stage: byte-level BPE (Qwen2 family) loaded from a model directory.
 *
 * @example
 * ```ts
 * import { Tokenizer } from "./mod.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000 });
 * const tok = await Tokenizer.fromModelDir(dir);
 * console.log(tok.encode("hello").length); // 1
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export { Tokenizer } from "./bpe.ts";
export { type AddedToken, readTokenizerSpec, type TokenizerSpec } from "./load.ts";
