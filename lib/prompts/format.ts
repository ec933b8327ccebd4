/**
 * Prompt formats as data: a JSON file with `system_prompt`, `user_template` and `assistant_template` (Jinja2)
 * and `grid_encoder` (an encoder spec, see ./encoders.ts) — the seed's
 * `prompt_format_output-from-examples-v0.json` is one. Optional: `name`, and `assistant_output` (the value of
 * `{{ output }}` in the assistant template; default "```grid", where the model starts writing its answer).
 * Templates see `train_samples` (list of `{input, output}` texts), `test_input` (text) and `output`.
 *
 * @example
 * ```ts
 * import { loadPromptFormat } from "./format.ts";
 * const fmt = await loadPromptFormat(null); // the built-in default
 * console.log(fmt.name, fmt.encoder.spec);
 * ```
 *
 * @module
 */
import { parseJsonText } from "../arc/json_text.ts";
import { ActshardError } from "../errors.ts";
import { DEFAULT_PROMPT_FORMAT } from "./default_format.ts";
import { type GridEncoder, parseGridEncoder } from "./encoders.ts";
import { type CompiledTemplate, compileJinja } from "./jinja.ts";

/** A prompt format file's content. */
export interface PromptFormatData {
  /** A name for logs and the run's config (default: the file name). */
  name?: string;
  /** The system message of the chat. */
  system_prompt: string;
  /** Jinja2 template of the user turn (sees `train_samples` and `test_input`). */
  user_template: string;
  /** Jinja2 template of the assistant turn's start (sees `output`). */
  assistant_template: string;
  /** Grid encoder spec, e.g. `GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))`. */
  grid_encoder: string;
  /** The value of `{{ output }}` (default "```grid"). */
  assistant_output?: string;
}

/** A loaded, checked prompt format. */
export interface PromptFormat {
  /** The format's name (`data.name`, else its source). */
  name: string;
  /** The file it came from, or "built-in". */
  source: string;
  /** The file's content as read. */
  data: PromptFormatData;
  /** The parsed `grid_encoder`. */
  encoder: GridEncoder;
  /** The compiled `user_template`. */
  user: CompiledTemplate;
  /** The compiled `assistant_template`. */
  assistant: CompiledTemplate;
  /** Value of `{{ output }}` in the assistant template. */
  assistantOutput: string;
}

const REQUIRED = ["system_prompt", "user_template", "assistant_template", "grid_encoder"] as const;

/**
 * Load a format file (`null` = the built-in default, identical to the seed's format).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { loadPromptFormat } from "./format.ts";
 * const fmt = await loadPromptFormat(null);
 * assert(fmt.source === "built-in");
 * console.log(fmt.encoder.toText([[1, 2], [3, 4]])); // the grid as the seed's prompts write it
 * ```
 */
export async function loadPromptFormat(path: string | null): Promise<PromptFormat> {
  if (path === null) return compilePromptFormat(DEFAULT_PROMPT_FORMAT, "built-in");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("prompt format file not found", { where: path, hint: "check --prompt_format" });
    }
    throw e;
  }
  return compilePromptFormat(parseJsonText(text, path), path);
}

/** Check and compile format data; errors name `source`. */
export function compilePromptFormat(raw: unknown, source: string): PromptFormat {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ActshardError("prompt format must be a JSON object", { where: source });
  }
  const d = raw as Record<string, unknown>;
  for (const k of REQUIRED) {
    if (typeof d[k] !== "string") {
      throw new ActshardError(`prompt format: "${k}" is ${k in d ? "not a string" : "missing"}`, {
        where: source,
        hint: `a format has ${REQUIRED.join(", ")}`,
      });
    }
  }
  const data = d as unknown as PromptFormatData;
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof ActshardError) {
        throw new ActshardError(`prompt format: ${e.message}`, { where: source, hint: e.hint });
      }
      throw e;
    }
  };
  return {
    name: typeof data.name === "string" ? data.name : source,
    source,
    data,
    encoder: wrap(() => parseGridEncoder(data.grid_encoder)),
    user: wrap(() => compileJinja(data.user_template, "user_template")),
    assistant: wrap(() => compileJinja(data.assistant_template, "assistant_template")),
    assistantOutput: typeof data.assistant_output === "string" ? data.assistant_output : "```grid",
  };
}
