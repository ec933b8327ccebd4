/**
 * `deno task bench bf16`: f32 → bf16 weight conversion for `--backend pjrt --compute_dtype bfloat16` — the
 * whole-tensor typed-array loop the runner uses vs the per-element `floatToBf16Bits` it used before (one
 * allocation per call), on 20M elements, extrapolated to the 0.5B model's ~494M.
 */
import { floatToBf16Bits } from "../lib/model/safetensors.ts";
import { toBf16Words } from "../lib/backend/pjrt/runner.ts";

/** Prints ms for both conversions and the extrapolation. */
export function run(): Promise<void> {
  const n = 20_000_000;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
  let t = performance.now();
  const perElement = new Uint16Array(n);
  for (let i = 0; i < n; i++) perElement[i] = floatToBf16Bits(x[i]);
  const before = performance.now() - t;
  t = performance.now();
  const whole = toBf16Words(x);
  const after = performance.now() - t;
  let diff = 0;
  for (let i = 0; i < n; i++) if (perElement[i] !== whole[i]) diff++;
  const at494M = (ms: number) => (ms / n * 494e6 / 1000).toFixed(1);
  console.log(
    `bf16 weights: per element ${before.toFixed(0)} ms, whole tensor ${
      after.toFixed(0)
    } ms for ${n} values ` +
      `(x${(before / after).toFixed(0)}, ${diff} words differ); 0.5B model: ${at494M(before)} s -> ${
        at494M(after)
      } s`,
  );
  return Promise.resolve();
}

if (import.meta.main) await run();
