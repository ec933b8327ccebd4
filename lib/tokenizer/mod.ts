/**
 * The tokenizer stage: byte-level BPE (Qwen2 family) loaded from a model directory.
 *
 * @example
 * ```ts
 * import { Tokenizer } from "./mod.ts";
 * const tok = await Tokenizer.fromModelDir("model");
 * console.log(tok.encode("hello").length);
 * ```
 */
export { Tokenizer } from "./bpe.ts";
export { type AddedToken, readTokenizerSpec, type TokenizerSpec } from "./load.ts";
