/**
 * Assertions for tests. JSR (@std/assert) is unreachable here, so these are thin names over `node:assert/strict`
 * plus the numeric comparisons the model tests need.
 */
import assertNode from "node:assert/strict";

export function assert(value: unknown, message?: string): asserts value {
  assertNode.ok(value, message ?? "assertion failed");
}
export function assertEquals<T>(actual: unknown, expected: T, message?: string): asserts actual is T {
  if (message === undefined) assertNode.deepStrictEqual(actual, expected);
  else assertNode.deepStrictEqual(actual, expected, message);
}
export const assertNotEquals = assertNode.notDeepStrictEqual;
export const assertThrows = assertNode.throws;
export const assertRejects = assertNode.rejects;
export const assertMatch = assertNode.match;

/** Max |a-b| / max(|b|, floor) over two arrays of equal length; throws on length mismatch. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let scale = floor;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m / scale;
}

/** Asserts {@link maxRelError}(actual, expected) ≤ tol (relative to the expected array's max magnitude). */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  msg = "",
): void {
  const e = maxRelError(actual, expected);
  if (!(e <= tol)) throw new assertNode.AssertionError({ message: `${msg} max rel error ${e} > ${tol}` });
}
