/**
 * Compiled programs. {@link PjrtExecutable.execute} takes one argument list per device (the executable's
 * replicas, in device order), launches them in one `PJRT_LoadedExecutable_Execute`, awaits every device's
 * completion event, and returns one output list per device. Arguments stay retained until then.
 *
 * @example
 * ```ts
 * import type { PjrtExecutable } from "./executable.ts";
 * import type { PjrtBuffer } from "./buffer.ts";
 * async function runOnTwo(exe: PjrtExecutable, a: PjrtBuffer, b: PjrtBuffer) {
 *   const [outA, outB] = await exe.execute([[a], [b]]); // replica 0 gets a, replica 1 gets b
 *   return [outA, outB];
 * }
 * ```
 */
import { ARGS } from "./api.ts";
import type { PjrtBuffer } from "./buffer.ts";
import { addr, type PjrtApi, type Ptr, Struct } from "./ffi.ts";

/**
 * A `PJRT_LoadedExecutable*`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { PjrtApi, PjrtClient } from "./mod.ts";
 * import { compileOptionsBytes } from "../../lib/backend/pjrt/compile_options.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * const client = PjrtClient.create(api);
 * const identity = `module @m {
 *   func.func public @main(%arg0: tensor<2xf32>) -> (tensor<2xf32>) {
 *     return %arg0 : tensor<2xf32>
 *   }
 * }`;
 * const exe = client.compile(identity, compileOptionsBytes({ numReplicas: 1 }));
 * const x = await client.bufferFromHost(new Float32Array([1, 2]), [2], "f32", client.devices[0]);
 * const [[y]] = await exe.execute([[x]]); // one argument list per device
 * assert.deepStrictEqual(Array.from(new Float32Array((await y.toHost()).buffer)), [1, 2]);
 * await client.close(); // destroys x, y and exe too
 * api.close();
 * ```
 */
export class PjrtExecutable {
  /** The plugin the executable belongs to. */
  readonly api: PjrtApi;
  /** Results per device. */
  readonly numOutputs: number;
  #handle: Ptr;
  #makeBuffer: (h: Ptr) => PjrtBuffer;
  #onDestroyed: (e: PjrtExecutable) => void;
  #running = 0;
  #destroyRequested = false;

  /** Adopt a raw `PJRT_LoadedExecutable*` ({@link PjrtClient.compile} does this). */
  constructor(
    api: PjrtApi,
    handle: Ptr,
    makeBuffer: (h: Ptr) => PjrtBuffer,
    onDestroyed: (e: PjrtExecutable) => void,
  ) {
    this.api = api;
    this.#handle = handle;
    this.#makeBuffer = makeBuffer;
    this.#onDestroyed = onDestroyed;
    api.live.executables++;
    this.numOutputs = this.#queryNumOutputs();
  }

  #queryNumOutputs(): number {
    const G = ARGS.LoadedExecutable_GetExecutable;
    const g = new Struct(G.size).setPtr(G.loaded, this.#handle);
    this.api.call("LoadedExecutable_GetExecutable", g);
    const exe = g.ptrAt(G.executable);
    try {
      const n = new Struct(ARGS.Executable_NumOutputs.size).setPtr(
        ARGS.Executable_NumOutputs.executable,
        exe,
      );
      this.api.call("Executable_NumOutputs", n);
      return n.u64At(ARGS.Executable_NumOutputs.numOutputs);
    } finally {
      const d = new Struct(ARGS.Executable_Destroy.size).setPtr(ARGS.Executable_Destroy.executable, exe);
      this.api.call("Executable_Destroy", d);
    }
  }

  /**
   * Run with `argLists[d]` on device d (one list per replica, all of the same length). Resolves when every
   * device has finished; the outputs are new buffers owned by the caller (destroy them, or close the client).
   */
  async execute(argLists: PjrtBuffer[][]): Promise<PjrtBuffer[][]> {
    if (this.#handle === null || this.#destroyRequested) {
      throw new Error("PJRT executable used after destroy()");
    }
    const nDev = argLists.length;
    const nArgs = nDev ? argLists[0].length : 0;
    if (argLists.some((l) => l.length !== nArgs)) throw new Error("execute: argument lists differ in length");
    const nOut = this.numOutputs;
    const releases = argLists.flat().map((b) => b.retain());
    this.#running++;
    // [device][arg] and [device][output] as C arrays of pointers to pointer arrays; all kept referenced below.
    const inner = argLists.map((l) => BigUint64Array.from(l, (b) => addr(b.handle)));
    const outer = BigUint64Array.from(inner, (a) => a.length ? addr(Deno.UnsafePointer.of(a)) : 0n);
    const outInner = argLists.map(() => new BigUint64Array(Math.max(nOut, 1)));
    const outOuter = BigUint64Array.from(outInner, (a) => addr(Deno.UnsafePointer.of(a)));
    const events = new BigUint64Array(Math.max(nDev, 1));
    const options = new Struct(ARGS.ExecuteOptions.size);
    const E = ARGS.LoadedExecutable_Execute;
    const a = new Struct(E.size)
      .setPtr(E.executable, this.#handle)
      .setPtr(E.options, Deno.UnsafePointer.of(options.bytes as BufferSource))
      .setPtr(E.argumentLists, nDev ? Deno.UnsafePointer.of(outer) : null)
      .setU64(E.numDevices, nDev)
      .setU64(E.numArgs, nArgs)
      .setPtr(E.outputLists, Deno.UnsafePointer.of(outOuter))
      .setPtr(E.deviceCompleteEvents, Deno.UnsafePointer.of(events));
    try {
      this.api.call("LoadedExecutable_Execute", a);
    } catch (e) {
      releases.forEach((r) => r());
      this.#finish();
      throw e;
    }
    const outputs = outInner.map((l) =>
      Array.from({ length: nOut }, (_, i) => this.#makeBuffer(Deno.UnsafePointer.create(l[i])))
    );
    const keep = [inner, outer, outInner, outOuter, options, a];
    const waits = Array.from(events, (ev) => this.api.adoptEvent(ev ? Deno.UnsafePointer.create(ev) : null))
      .slice(0, nDev)
      .map((ev) => this.api.awaitEvent("LoadedExecutable_Execute", ev, keep));
    const settled = await Promise.allSettled(waits);
    releases.forEach((r) => r());
    this.#finish();
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) {
      outputs.flat().forEach((b) => b.destroy());
      throw (failed as PromiseRejectedResult).reason;
    }
    return outputs;
  }

  #finish(): void {
    if (--this.#running === 0 && this.#destroyRequested) this.#destroyNow();
  }

  /** Destroy now, or when running executions finish. Idempotent. */
  destroy(): void {
    if (this.#destroyRequested || this.#handle === null) return;
    this.#destroyRequested = true;
    if (this.#running === 0) this.#destroyNow();
  }

  #destroyNow(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    this.api.live.executables--;
    const d = new Struct(ARGS.Executable_Destroy.size).setPtr(ARGS.Executable_Destroy.executable, h);
    try {
      this.api.call("LoadedExecutable_Destroy", d);
    } finally {
      this.#onDestroyed(this); // after the C destroy (the client may go next)
    }
  }
}
