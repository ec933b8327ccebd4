/**
 * actshard's built-in prompt format: the prompt the default model (KathirKs/qwen-2.5-0.5b) was fine-tuned on —
 * arc24's "output-from-examples-v0" as used by the seed — restated here as lines of text so that its wording and
 * every space and newline are visible in review. Tests check it against the seed's format file and the
 * reference prompts; docs/prompts.md explains how to pass another format with `--prompt_format`.
 */
import type { PromptFormatData } from "./format.ts";

const SYSTEM_LINES = [
  // The trailing spaces on the first two lines are part of the trained prompt: keep them.
  "You are a helpful AI assistant. Your job is to solve tasks from the Abstraction and Reasoning Challenge (ARC). ",
  "The user will present you with sample input and output grids for each task. ",
  "Your job will be to understand the transformation between the input and the output and apply it to the " +
  "last input grid given by the user. ",
  "The puzzle-like inputs and outputs present a grid where each square can be one of ten colors. " +
  "A grid can be any height or width between 1x1 and 30x30.",
  "The background of the grid is typically colored with 0.",
  "The tasks from ARC are based on the following priors:",
  "",
  "- Objectness: Objects persist and cannot appear or disappear without reason. " +
  "Objects can interact or not depending on the circumstances.",
  '- Goal-directed: Objects can be animate or inanimate. Some objects are "agents" - ' +
  "they have intentions and they pursue goals.",
  "- Numbers & counting: Objects can be counted or sorted by their shape, appearance, or movement " +
  "using basic mathematics like addition, subtraction, and comparison.",
  "- Basic geometry & topology: Objects can be shapes like rectangles, triangles, and circles which can be " +
  "mirrored, rotated, translated, deformed, combined, repeated, etc. Differences in distances can be detected.",
  "",
  "The transformations between input and output should be based on these priors.",
  "",
];

// Jinja2 with its defaults (no trim_blocks): the newline after each {% ... %} tag is kept, and the template's
// single trailing newline is dropped.
const USER_LINES = [
  "Let's see if you can solve this simple ARC task. These are some input-output grid examples that define the task.",
  "{% for sample in train_samples %}",
  "## Example {{ loop.index }}",
  "",
  "### Input",
  "",
  "{{ sample.input }}",
  "",
  "### Output",
  "",
  "{{ sample.output }}",
  "{% endfor %}",
  "## Test case",
  "",
  "### Input",
  "",
  "{{ test_input }}",
  "",
];

/** The built-in format (what `--prompt_format` defaults to). */
export const DEFAULT_PROMPT_FORMAT: PromptFormatData = {
  name: "actshard-default (arc24 output-from-examples-v0)",
  grid_encoder: "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
  system_prompt: SYSTEM_LINES.join("\n"),
  user_template: USER_LINES.join("\n"),
  assistant_template: "### Output\n\n{{ output }}",
  assistant_output: "```grid",
};
