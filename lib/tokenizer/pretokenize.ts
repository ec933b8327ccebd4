/**
 * Pre-tokenization: the regex split that byte-level BPE tokenizers apply before merging. HF `tokenizer.json`
 * stores the pattern in Oniguruma/Rust syntax; {@link compileHfRegex} turns it into an equivalent JS regex
 * (`u` flag; `\s`/`\S` become `\p{White_Space}`/`\P{White_Space}`, because JS's `\s` differs from Unicode
 * White_Space: it includes U+FEFF and lacks U+0085). `(?i:...)` modifiers are native in V8 ≥ 12.5.
 *
 * @example
 * ```ts
 * import { compileHfRegex, QWEN2_PATTERN, splitPieces } from "./pretokenize.ts";
 * console.log(splitPieces("Hello 123", compileHfRegex(QWEN2_PATTERN))); // ["Hello", " ", "1", "2", "3"]
 * ```
 */
import { ActshardError } from "../errors.ts";

/** The Qwen2 / Qwen2.5 pre-tokenizer pattern (digits split one per piece). */
export const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** The GPT-2 pattern (used by `ByteLevel` with `use_regex: true`). */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** Translate an HF (Oniguruma) regex to a global, unicode JS RegExp. */
export function compileHfRegex(pattern: string): RegExp {
  let js = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1];
      if (n === "s") js += "\\p{White_Space}";
      else if (n === "S") js += "\\P{White_Space}";
      else js += c + n;
      i++;
    } else js += c;
  }
  try {
    return new RegExp(js, "gu");
  } catch (e) {
    throw new ActshardError(`pre-tokenizer regex is not supported: ${(e as Error).message}`, {
      where: pattern,
      hint: "actshard supports byte-level BPE tokenizers with JS-compatible split patterns",
    });
  }
}

/** Split `text` into pieces: every match, and every gap between matches (HF `Split` with `Isolated`). */
export function splitPieces(text: string, re: RegExp): string[] {
  const out: string[] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
