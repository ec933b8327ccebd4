/**
 * JSON parsing with errors a user can act on: a syntax error names the file, line and column; and the top-level
 * key order of an object as written in the file (JS objects list integer-like keys first, which would reorder
 * task ids such as "12345678").
 *
 * @example
 * ```ts
 * import { parseJsonText, topLevelKeys } from "./json_text.ts";
 * console.log(parseJsonText('{"b": 1, "2": 2}', "x.json"), topLevelKeys('{"b": 1, "2": 2}')); // {...} ["b", "2"]
 * ```
 */
import { ActshardError } from "../errors.ts";

/** Line and column (1-based) of character offset `pos` in `text`. */
export function lineColumn(text: string, pos: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: pos - start + 1 };
}

/**
 * `JSON.parse(text)`; a syntax error becomes an {@link ActshardError} with `where` = `file:line:column`.
 * `lineOffset` is added to the line (for one line of a JSONL file, pass its line number − 1).
 */
export function parseJsonText(text: string, file: string, lineOffset = 0): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = msg.match(/at position (\d+)/);
    let where = lineOffset ? `${file}:${lineOffset + 1}` : file;
    if (m) {
      const { line, column } = lineColumn(text, Number(m[1]));
      where = `${file}:${line + lineOffset}:${column}`;
    } else if (/Unexpected end of JSON input/.test(msg)) {
      const { line, column } = lineColumn(text, text.length);
      where = `${file}:${line + lineOffset}:${column}`;
    }
    const what = msg.replace(/\s*(in JSON )?at position \d+( \(line \d+ column \d+\))?/, "").replace(
      /\.$/,
      "",
    );
    throw new ActshardError(`invalid JSON: ${what}`, { where, hint: "fix the file's JSON syntax" });
  }
}

/** The keys of the top-level JSON object in `text`, in file order (text must be valid JSON). */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let i = text.indexOf("{") + 1;
  let depth = 0;
  let expectKey = true;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      i++;
      while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      if (depth === 0 && expectKey) {
        keys.push(JSON.parse(text.slice(start, i + 1)));
        expectKey = false;
      }
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (depth === 0) break;
      depth--;
    } else if (c === "," && depth === 0) expectKey = true;
    i++;
  }
  return keys;
}
