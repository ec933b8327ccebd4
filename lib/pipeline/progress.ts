/**
 * Progress for the extract job. On a terminal: one live line redrawn in place (bar, prompts done/total,
 * tokens/s, bytes written — the open shard's included —, shards committed, ETA). Otherwise (logs, CI, `kubectl
 * logs`): a plain line every `intervalMs`. Before the first batch finishes, the line says what the run is doing
 * (a {@link Progress.phase}: "loading the model", "converting BF16 weights", "building the onnxruntime
 * session", "first batch"), not "0% ETA ?". The ETA is by tokens (prompts differ in length by 10×, so a
 * prompt-count ETA swings); sizes switch from MB to GB above 1 GiB. `--verbose` adds per-shard blocks in the
 * seed's style ("Saving shard 42: shard_0042.pkl.gz (~2048.5 MB)", the saved size, per-layer counts, upload
 * lines).
 *
 * @example
 * ```ts
 * import { Progress } from "./progress.ts";
 * const p = new Progress({ total: 100, tty: false, intervalMs: 0, write: console.log });
 * p.update({ prompts: 10, tokens: 5000, bytes: 1 << 20 });
 * p.finish();
 * ```
 */

/** What has been done so far (cumulative, this process only counts what it computed itself). */
export interface ProgressCounts {
  /** Prompts whose records reached the writer (including those found durable at resume). */
  prompts: number;
  /** Tokens run through the model by this process. */
  tokens: number;
  /** Bytes written to shard files by this process (committed shards plus the open one). */
  bytes: number;
  /** Shards committed by this process. */
  shards: number;
}

/** Options for {@link Progress}. */
export interface ProgressOptions {
  /** Prompts in the run (this worker's). */
  total: number;
  /** Prompts already durable when the run started (resume). */
  already?: number;
  /** Tokens this process will run through the model (the ETA is by tokens when given). */
  totalTokens?: number;
  /** Live bar (true) or periodic lines (false). Default: stderr is a terminal. */
  tty?: boolean;
  /** Minimum milliseconds between plain lines (default 10 000) or bar redraws (default 200). */
  intervalMs?: number;
  /** Where plain lines go (default: stderr). */
  write?: (line: string) => void;
  /** Clock (tests). */
  now?: () => number;
}

const enc = new TextEncoder();

function stderrLine(line: string): void {
  Deno.stderr.writeSync(enc.encode(line + "\n"));
}

/** Human duration: "42s", "3m05s", "2h07m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Bytes as MB with one decimal (the seed's unit). */
export function formatMB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** Bytes as MB below 1 GiB, as GB (two decimals) from there: "812.4 MB", "1.23 GB". */
export function formatSize(bytes: number): string {
  return bytes < 1024 ** 3 ? formatMB(bytes) : `${(bytes / 1024 ** 3).toFixed(2)} GB`;
}

/** A live progress display; call {@link update} often, it rate-limits itself. */
export class Progress {
  readonly total: number;
  readonly tty: boolean;
  #already: number;
  #totalTokens: number | undefined;
  #phase: string | null = null;
  #phaseStart = 0;
  #interval: number;
  #write: (line: string) => void;
  #now: () => number;
  #start: number;
  #last: number;
  #counts: ProgressCounts = { prompts: 0, tokens: 0, bytes: 0, shards: 0 };
  #barShown = false;
  #ticker: ReturnType<typeof setInterval> | undefined;

  constructor(opts: ProgressOptions) {
    this.total = opts.total;
    this.#already = opts.already ?? 0;
    this.#totalTokens = opts.totalTokens;
    this.tty = opts.tty ?? safeIsTerminal();
    this.#interval = opts.intervalMs ?? (this.tty ? 200 : 10_000);
    this.#write = opts.write ?? stderrLine;
    this.#now = opts.now ?? (() => performance.now());
    this.#start = this.#now();
    // Plain lines start after one interval; the live bar draws at once.
    this.#last = this.tty ? -Infinity : this.#start;
    this.#counts.prompts = this.#already;
    // A forward of minutes sends no events: redraw on a clock too, so the line (a phase's elapsed time, the
    // ETA) never looks hung. Not with an injected clock (tests drive it); unref'd: it never keeps a process up.
    if (!opts.now) {
      const ticker = setInterval(() => this.update({}), Math.max(1000, this.#interval));
      Deno.unrefTimer(ticker as unknown as number);
      this.#ticker = ticker;
    }
  }

  /** Current counts. */
  get counts(): ProgressCounts {
    return { ...this.#counts };
  }

  /** Record new totals and redraw if the interval has passed. */
  update(c: Partial<ProgressCounts>): void {
    Object.assign(this.#counts, c);
    const t = this.#now();
    if (t - this.#last < this.#interval) return;
    this.#last = t;
    this.#draw();
  }

  /**
   * Say what the run is doing before its first results (loading, converting, compiling, the first batch):
   * shown instead of rates and ETA until tokens arrive, drawn at once (a plain line when not a terminal).
   * `null` ends the phase display.
   */
  phase(text: string | null): void {
    this.#phase = text;
    this.#phaseStart = this.#now();
    if (text === null) return;
    this.#last = this.#phaseStart;
    this.#draw();
  }

  /** Start the clock of rates and ETA (call when the first batch is sent: loading time is not compute). */
  startCompute(): void {
    this.#start = this.#now();
  }

  /** Print a line above the live bar (verbose per-shard lines) without garbling it. */
  log(line: string): void {
    if (this.tty && this.#barShown) Deno.stderr.writeSync(enc.encode("\r\x1b[2K"));
    this.#write(line);
    if (this.tty && this.#barShown) this.#draw();
  }

  /**
   * The status text (without bar), e.g. "120/400 prompts · 5321 tok/s · 812.4 MB · 3 shards · ETA 3m05s", or
   * before any tokens "0/400 prompts · loading the model… 12s".
   */
  status(): string {
    const { prompts, tokens, bytes, shards } = this.#counts;
    const now = this.#now();
    const head = `${prompts}/${this.total} prompts`;
    if (this.#phase !== null && tokens === 0) {
      return `${head} · ${this.#phase}… ${formatDuration((now - this.#phaseStart) / 1000)}`;
    }
    const secs = Math.max(1e-3, (now - this.#start) / 1000);
    const left = this.total - prompts;
    let eta: number;
    if (this.#totalTokens !== undefined && this.#totalTokens > 0) {
      eta = tokens > 0 ? (secs / tokens) * Math.max(0, this.#totalTokens - tokens) : NaN;
    } else {
      const doneHere = prompts - this.#already;
      eta = doneHere > 0 ? (secs / doneHere) * left : NaN;
    }
    return `${head} · ${Math.round(tokens / secs)} tok/s · ${formatSize(bytes)} · ` +
      `${shards} shard${shards === 1 ? "" : "s"} · ` +
      (left <= 0 ? `done in ${formatDuration(secs)}` : `ETA ${formatDuration(eta)}`);
  }

  /** Final redraw and newline. */
  finish(): void {
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.#draw();
    if (this.tty && this.#barShown) Deno.stderr.writeSync(enc.encode("\n"));
    this.#barShown = false;
  }

  #draw(): void {
    if (!this.tty) {
      this.#write(`extract: ${this.status()}`);
      return;
    }
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, this.#counts.prompts / this.total) : 1;
    const fill = Math.round(frac * width);
    const bar = "█".repeat(fill) + "░".repeat(width - fill);
    Deno.stderr.writeSync(enc.encode(`\r\x1b[2K${bar} ${(frac * 100).toFixed(0)}% ${this.status()}`));
    this.#barShown = true;
  }
}

function safeIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** The seed-style verbose block for one committed shard. */
export function shardLines(s: {
  filename: string;
  shard_id: number;
  buffer_bytes: number;
  file_bytes: number;
  samples_per_layer: Record<string, number>;
}): string[] {
  const rule = "=".repeat(70);
  const lines = [
    rule,
    `Saving shard ${s.shard_id}: ${s.filename} (~${(s.buffer_bytes / (1024 * 1024)).toFixed(1)} MB)`,
    rule,
    `  ✓ Saved locally: ${(s.file_bytes / (1024 * 1024)).toFixed(1)} MB`,
  ];
  for (const [layer, n] of Object.entries(s.samples_per_layer)) {
    lines.push(`    Layer ${layer}: ${n} samples`);
  }
  return lines;
}
