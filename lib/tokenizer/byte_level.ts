/**
 * GPT-2 style byte-level alphabet: every byte 0..255 is given a printable Unicode character so that BPE works on
 * strings without whitespace or control characters (space → "Ġ", newline → "Ċ"). Printable Latin-1 bytes map
 * to themselves; the rest map to U+0100 upwards in byte order, exactly as HF's `bytes_to_unicode()`.
 *
 * @example
 * ```ts
 * import { BYTE_TO_CHAR } from "./byte_level.ts";
 * console.log(BYTE_TO_CHAR[32], BYTE_TO_CHAR[10]); // "Ġ" "Ċ"
 * ```
 */

function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = isPrintable.has(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  }
  return out;
}

/** byte → its character in the byte-level alphabet. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** character code of the byte-level alphabet → byte (-1 for characters outside it). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const t = new Int16Array(512).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => (t[c.charCodeAt(0)] = b));
  return t;
})();

const encoder = new TextEncoder();

/** UTF-8 encode `text` and spell its bytes in the byte-level alphabet. */
export function toByteLevel(text: string): string {
  // ASCII fast path: most ARC prompt pieces are ASCII.
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  let s = "";
  if (ascii) {
    for (let i = 0; i < text.length; i++) s += BYTE_TO_CHAR[text.charCodeAt(i)];
    return s;
  }
  for (const b of encoder.encode(text)) s += BYTE_TO_CHAR[b];
  return s;
}

/** Bytes of a token spelled in the byte-level alphabet (characters outside it are UTF-8 encoded as is). */
export function fromByteLevel(token: string, out: number[]): void {
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const b = c < 512 ? CHAR_TO_BYTE[c] : -1;
    if (b >= 0) out.push(b);
    else for (const x of encoder.encode(token[i])) out.push(x);
  }
}
