/** reusable_buffers.ts: exact sizes only, whole buffers only, and bounded. */
import { assert, assertEquals } from "./_assert.ts";
import { giveBuffer, REUSABLE_BYTES, takeBuffer } from "../lib/util/reusable_buffers.ts";

Deno.test("reusable buffers: a given buffer comes back for its exact size only, once; views, overflow and sizes nobody asked for are not kept", () => {
  const n = 3 * 1024 + 7; // a size nothing else in this process uses
  const a = takeBuffer(n);
  assertEquals(a.length, n);
  giveBuffer(a);
  assert(takeBuffer(n + 1) !== a, "another size gets a new buffer");
  assert(takeBuffer(n) === a, "the same size gets it back");
  assert(takeBuffer(n) !== a, "once");
  giveBuffer(new Uint8Array(new ArrayBuffer(2 * n), 0, n)); // a view: not kept
  assertEquals(takeBuffer(n).buffer.byteLength, n);
  const unasked = 5 * 1024 + 3;
  const u = new Uint8Array(unasked);
  giveBuffer(u); // nobody took a buffer of this size yet: not kept
  assert(takeBuffer(unasked) !== u, "a size nobody asked for is not kept");
  const big = REUSABLE_BYTES / 4 + 1;
  takeBuffer(big); // ask for the size
  const given: Uint8Array[] = Array.from({ length: 5 }, () => new Uint8Array(big));
  for (const g of given) giveBuffer(g);
  const back = Array.from({ length: 5 }, () => takeBuffer(big));
  assertEquals(
    back.map((b) => given.includes(b)).filter(Boolean).length,
    3,
    "only what fits the bound is kept",
  );
});
