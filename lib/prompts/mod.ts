/**
 * The prompt stage: grid encoders, prompt formats, chat rendering and the prompt plan.
 *
 * @example
 * ```ts
 * import { loadPromptFormat, parseGridEncoder } from "./mod.ts";
 * console.log((await loadPromptFormat(null)).name, parseGridEncoder("MinimalGridEncoder()").toText([[1]]));
 * ```
 */
export { GRID_ENCODER_NAMES, type GridEncoder, parseGridEncoder } from "./encoders.ts";
export { compilePromptFormat, loadPromptFormat, type PromptFormat, type PromptFormatData } from "./format.ts";
export { type ChatMessage, ChatRenderer, cutAssistantEnding } from "./chat.ts";
export { DEFAULT_PROMPT_FORMAT } from "./default_format.ts";
export {
  buildPromptPlan,
  promptDumpLine,
  type PromptItem,
  promptPlanItems,
  type PromptPlanOptions,
  renderTaskPrompts,
} from "./plan.ts";
