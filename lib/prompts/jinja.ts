/**
 * Jinja2 rendering on `@huggingface/jinja`. Its `Template` class always enables `trim_blocks` and
 * `lstrip_blocks` (what transformers uses for chat templates), but the seed rendered its prompt templates with
 * plain `jinja2.Template`, whose defaults keep the newline after a block tag. {@link compileJinja} exposes both:
 * `{ chat: false }` (default) = Jinja2 defaults, `{ chat: true }` = transformers' chat-template environment.
 * Both drop a single trailing newline of the template, as Jinja2 does by default.
 *
 * @example
 * ```ts
 * import { compileJinja } from "./jinja.ts";
 * const t = compileJinja("A\n{% for x in xs %}\n- {{ x }}{% endfor %}\n", "example");
 * console.log(JSON.stringify(t.render({ xs: [1, 2] }))); // "A\n\n- 1\n- 2"
 * ```
 */
import { Environment, Interpreter, parse, tokenize } from "@huggingface/jinja";
import { ActshardError } from "../errors.ts";

/** A parsed template. */
export interface CompiledTemplate {
  /** Render with `vars`; a runtime failure throws an {@link ActshardError} naming the template. */
  render(vars: Record<string, unknown>): string;
}

/** Parse `source` (named `name` in errors). Syntax errors throw an {@link ActshardError}. */
export function compileJinja(source: string, name: string, opts: { chat?: boolean } = {}): CompiledTemplate {
  let program: ReturnType<typeof parse>;
  try {
    const chat = opts.chat === true;
    program = parse(tokenize(source, { trim_blocks: chat, lstrip_blocks: chat }));
  } catch (e) {
    throw new ActshardError(`template ${name} does not parse: ${firstLine(e)}`, {
      hint: "check its Jinja2 syntax",
    });
  }
  return {
    render(vars: Record<string, unknown>): string {
      const env = new Environment();
      for (const [k, v] of Object.entries(GLOBALS)) env.set(k, v);
      for (const [k, v] of Object.entries(vars)) env.set(k, v);
      try {
        const out = new Interpreter(env).run(program).value;
        return typeof out === "string" ? out : String(out);
      } catch (e) {
        throw new ActshardError(`template ${name} failed to render: ${firstLine(e)}`);
      }
    },
  };
}

const GLOBALS: Record<string, unknown> = {
  true: true,
  false: false,
  none: null,
  True: true,
  False: false,
  None: null,
  raise_exception: (msg: unknown) => {
    throw new Error(String(msg));
  },
  range: (start: number, stop?: number, step = 1) => {
    const [a, b] = stop === undefined ? [0, start] : [start, stop];
    const out: number[] = [];
    for (let i = a; step > 0 ? i < b : i > b; i += step) out.push(i);
    return out;
  },
};

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}
