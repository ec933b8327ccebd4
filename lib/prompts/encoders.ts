/**
 * Grid encoders: how a grid becomes text in a prompt. The family and its names are the seed's (arc24), chosen by
 * the same string syntax, e.g. `GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))` — but the string is
 * parsed by a small grammar here, never evaluated.
 *
 * | name                                   | text of [[1,2],[3,4]]                  |
 * | -------------------------------------- | -------------------------------------- |
 * | `MinimalGridEncoder()`                 | `12\n34`                               |
 * | `GridWithSeparationEncoder('\|')`      | `1\|2\n3\|4`                           |
 * | `GridCodeBlockEncoder(E)`              | ` ```grid\n<E>\n``` `                  |
 * | `GridShapeEncoder(E)`                  | ` ```grid shape: 2x2\n<E>\n``` ` (rows x columns) |
 * | `RowNumberEncoder(E)`                  | `1 12\n2 34`                           |
 * | `RepeatNumberEncoder(n=3)`             | `111222\n333444`                       |
 * | `ReplaceNumberEncoder(E)`              | digits of E's text → `ñòûą…`           |
 *
 * @example
 * ```ts
 * import { parseGridEncoder } from "./encoders.ts";
 * const enc = parseGridEncoder("GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))");
 * console.log(enc.toText([[0, 0], [1, 1]])); // "```grid shape: 2x2\n1 00\n2 11\n```"
 * ```
 */
import type { Grid } from "../arc/grid.ts";
import { ActshardError } from "../errors.ts";

/** Turns a grid into prompt text. */
export interface GridEncoder {
  /** The canonical spec string of this encoder. */
  readonly spec: string;
  /** The grid as prompt text. */
  toText(grid: Grid): string;
}

/** The seed's replacement symbols for colours 0..9. */
export const REPLACE_SYMBOLS = ["ñ", "ò", "÷", "û", "ą", "ć", "ď", "ę", "Ě", "Ğ"] as const;

/** Python's `str.splitlines()` (without keepends): no trailing empty line. */
export function pySplitLines(text: string): string[] {
  // Python's line boundaries include these control characters.
  // deno-lint-ignore no-control-regex
  const lines = text.split(/\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/);
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Python's `str.strip()` (Unicode whitespace). */
export function pyStrip(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/^[\s\x1c-\x1f\x85]+|[\s\x1c-\x1f\x85]+$/gu, "");
}

type Arg = { kind: "encoder"; value: GridEncoder } | { kind: "string"; value: string } | {
  kind: "number";
  value: number;
};

interface EncoderKind {
  /** Positional parameter names, in order; "encoder" | "string" | "number" kinds. */
  params: { name: string; kind: Arg["kind"]; default?: Arg }[];
  build(args: Record<string, Arg>): (grid: Grid) => string;
}

const rowsText = (g: Grid, cell: (x: number) => string, sep: string) =>
  g.map((row) => row.map(cell).join(sep)).join("\n");

const ENCODERS: Record<string, EncoderKind> = {
  MinimalGridEncoder: { params: [], build: () => (g) => rowsText(g, String, "") },
  GridWithSeparationEncoder: {
    params: [{ name: "split_symbol", kind: "string" }],
    build: (a) => (g) => rowsText(g, String, a.split_symbol.value as string),
  },
  GridCodeBlockEncoder: {
    params: [{ name: "base_encoder", kind: "encoder" }],
    build: (a) => {
      const base = a.base_encoder.value as GridEncoder;
      return (g) => "```grid\n" + base.toText(g) + "\n```";
    },
  },
  GridShapeEncoder: {
    params: [{ name: "base_encoder", kind: "encoder" }],
    build: (a) => {
      const base = a.base_encoder.value as GridEncoder;
      return (g) => `\`\`\`grid shape: ${g.length}x${g[0].length}\n${base.toText(g)}\n\`\`\``;
    },
  },
  RowNumberEncoder: {
    params: [{ name: "base_encoder", kind: "encoder" }],
    build: (a) => {
      const base = a.base_encoder.value as GridEncoder;
      return (g) => pyStrip(pySplitLines(base.toText(g)).map((l, i) => `${i + 1} ${l}\n`).join(""));
    },
  },
  RepeatNumberEncoder: {
    params: [{ name: "n", kind: "number", default: { kind: "number", value: 3 } }],
    build: (a) => {
      const n = a.n.value as number;
      if (n < 1) throw new ActshardError(`bad grid encoder: RepeatNumberEncoder(n=${n}) needs n >= 1`);
      return (g) => rowsText(g, (x) => String(x).repeat(n), "");
    },
  },
  ReplaceNumberEncoder: {
    params: [{ name: "base_encoder", kind: "encoder" }],
    build: (a) => {
      const base = a.base_encoder.value as GridEncoder;
      return (g) => base.toText(g).replace(/[0-9]/g, (d) => REPLACE_SYMBOLS[Number(d)]);
    },
  },
};

/** Names accepted by {@link parseGridEncoder}. */
export const GRID_ENCODER_NAMES: readonly string[] = Object.keys(ENCODERS);

/** Parse an encoder spec such as `GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))`. */
export function parseGridEncoder(spec: string): GridEncoder {
  const p = new SpecParser(spec);
  const enc = p.encoder();
  p.skipSpace();
  if (!p.done()) p.fail("unexpected text after the encoder");
  return enc;
}

class SpecParser {
  #i = 0;
  constructor(readonly src: string) {}

  done(): boolean {
    return this.#i >= this.src.length;
  }

  fail(what: string): never {
    throw new ActshardError(`bad grid encoder "${this.src}": ${what} at character ${this.#i + 1}`, {
      hint: `known encoders: ${GRID_ENCODER_NAMES.join(", ")}`,
    });
  }

  skipSpace(): void {
    while (!this.done() && /\s/.test(this.src[this.#i])) this.#i++;
  }

  #ident(): string {
    this.skipSpace();
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.src.slice(this.#i));
    if (!m) this.fail("expected a name");
    this.#i += m[0].length;
    return m[0];
  }

  #expect(c: string): void {
    this.skipSpace();
    if (this.src[this.#i] !== c) this.fail(`expected "${c}"`);
    this.#i++;
  }

  encoder(): GridEncoder {
    const start = this.#i;
    const name = this.#ident();
    const kind = ENCODERS[name];
    if (!kind) {
      this.#i = start;
      this.skipSpace();
      this.fail(`unknown encoder ${name}`);
    }
    this.#expect("(");
    const args: Record<string, Arg> = {};
    let pos = 0;
    this.skipSpace();
    while (this.src[this.#i] !== ")") {
      if (this.done()) this.fail('expected ")"');
      let param = kind.params[pos];
      const save = this.#i;
      const kw = /^([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)/.exec(this.src.slice(this.#i));
      if (kw && !ENCODERS[kw[1]]) {
        param = kind.params.find((p) => p.name === kw[1]) as typeof param;
        if (!param) this.fail(`${name} has no parameter ${kw[1]}`);
        this.#i += kw[0].length;
      } else if (!param) this.fail(`${name} takes ${kind.params.length} argument(s)`);
      else pos++;
      const arg = this.#arg();
      if (arg.kind !== param.kind) {
        this.#i = save;
        this.fail(`${name}(${param.name}) needs a ${param.kind}, got a ${arg.kind}`);
      }
      args[param.name] = arg;
      this.skipSpace();
      if (this.src[this.#i] === ",") {
        this.#i++;
        this.skipSpace();
      } else if (this.src[this.#i] !== ")") this.fail('expected "," or ")"');
    }
    this.#i++;
    for (const p of kind.params) {
      if (!args[p.name]) {
        if (p.default) args[p.name] = p.default;
        else this.fail(`${name} needs its ${p.name} argument`);
      }
    }
    const toText = kind.build(args);
    const shown = kind.params.map((p) => {
      const a = args[p.name];
      return a.kind === "encoder"
        ? a.value.spec
        : a.kind === "string"
        ? pyRepr(a.value)
        : `${p.name}=${a.value}`;
    });
    return { spec: `${name}(${shown.join(", ")})`, toText };
  }

  #arg(): Arg {
    this.skipSpace();
    const c = this.src[this.#i];
    if (c === "'" || c === '"') return { kind: "string", value: this.#string(c) };
    const num = /^-?\d+/.exec(this.src.slice(this.#i));
    if (num) {
      this.#i += num[0].length;
      return { kind: "number", value: Number(num[0]) };
    }
    return { kind: "encoder", value: this.encoder() };
  }

  #string(quote: string): string {
    this.#i++;
    let s = "";
    const esc: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", "'": "'", '"': '"' };
    while (this.src[this.#i] !== quote) {
      if (this.done()) this.fail("unterminated string");
      const ch = this.src[this.#i++];
      if (ch === "\\") {
        const e = this.src[this.#i++];
        if (!(e in esc)) this.fail(`unsupported escape \\${e}`);
        s += esc[e];
      } else s += ch;
    }
    this.#i++;
    return s;
  }
}

function pyRepr(s: string): string {
  return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n").replace(/\t/g, "\\t") +
    "'";
}
