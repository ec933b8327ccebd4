/**
 * Chat rendering: messages → one prompt string, with the model's own chat template (from its
 * `tokenizer_config.json`, rendered as transformers does: trim_blocks + lstrip_blocks) or, when it has none,
 * Qwen's ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n`). {@link cutAssistantEnding} then removes the
 * end of the assistant turn, as the seed did, so the prompt ends where the model continues writing.
 *
 * @example
 * ```ts
 * import { ChatRenderer, cutAssistantEnding } from "./chat.ts";
 * const chat = new ChatRenderer(null);
 * const text = chat.render([{ role: "user", content: "hi" }, { role: "assistant", content: "### Output" }]);
 * console.log(JSON.stringify(cutAssistantEnding(text)));
 * // "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n### Output"
 * ```
 */
import { ActshardError } from "../errors.ts";
import { type CompiledTemplate, compileJinja } from "./jinja.ts";

/** One chat message. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Special-token strings passed to a chat template (`bos_token`, `eos_token`, ...). */
export type ChatTokens = Record<string, string | null>;

/** Renders messages with a chat template (null = ChatML). */
export class ChatRenderer {
  readonly #template: CompiledTemplate | null;
  readonly #tokens: ChatTokens;

  constructor(chatTemplate: string | null, tokens: ChatTokens = {}) {
    this.#template = chatTemplate === null
      ? null
      : compileJinja(chatTemplate, "chat_template", { chat: true });
    this.#tokens = tokens;
  }

  /** The full conversation text (no generation prompt). */
  render(messages: ChatMessage[]): string {
    if (this.#template === null) {
      return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("");
    }
    return this.#template.render({ ...this.#tokens, messages, add_generation_prompt: false });
  }
}

/** End-of-turn markers the seed knew, in its order of preference (Llama 3, Qwen, Phi-3). */
const TURN_ENDS = ["<|eot_id|>", "<|im_end|>", "<|end|>"];

/** Cut the text from the last end-of-turn marker on (the seed's `remove_assistant_ending`). */
export function cutAssistantEnding(text: string): string {
  for (const end of TURN_ENDS) {
    const i = text.lastIndexOf(end);
    if (i >= 0) return text.slice(0, i);
  }
  throw new ActshardError("the chat template's output has no end-of-turn marker to cut", {
    hint: `expected one of ${TURN_ENDS.join(" ")}`,
  });
}
