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
    // V8's messages do not always carry a position; find it with a small validator (error path only).
    const found = jsonSyntaxError(text);
    const pos = found?.pos ?? text.length;
    const { line, column } = lineColumn(text, pos);
    const what = found?.what ?? (e as Error).message.split("\n")[0];
    throw new ActshardError(`invalid JSON: ${what}`, {
      where: `${file}:${line + lineOffset}:${column}`,
      hint: "fix the file's JSON syntax",
    });
  }
}

/** Offset and description of the first JSON syntax error in `text`, or null if it is valid JSON. */
export function jsonSyntaxError(text: string): { pos: number; what: string } | null {
  let i = 0;
  class Bad {
    constructor(readonly pos: number, readonly what: string) {}
  }
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const fail = (what: string): never => {
    throw new Bad(
      i,
      i >= text.length ? `unexpected end of input (${what})` : `${what}, found ${JSON.stringify(text[i])}`,
    );
  };
  const lit = (w: string) => {
    if (text.startsWith(w, i)) i += w.length;
    else fail("expected a value");
  };
  const str = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text.charCodeAt(i) < 0x20) fail("control character in string");
      if (text[i] === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail("bad \\u escape");
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "")) fail("bad escape");
      }
      i++;
    }
    if (i >= text.length) fail("unterminated string");
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        str();
        ws();
        if (text[i] !== ":") fail('expected ":"');
        i++;
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return;
        } else fail('expected "," or "}"');
      }
    } else if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return;
        } else fail('expected "," or "]"');
      }
    } else if (c === '"') str();
    else if (c === "t") lit("true");
    else if (c === "f") lit("false");
    else if (c === "n") lit("null");
    else {
      const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
      if (!m) fail("expected a value");
      i += m![0].length;
    }
  };
  try {
    value();
    ws();
    if (i < text.length) fail("unexpected text after the JSON value");
    return null;
  } catch (e) {
    if (e instanceof Bad) return { pos: e.pos, what: e.what };
    throw e;
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
