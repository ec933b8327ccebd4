/**
 * The PJRT {@link ReplicaRunner}: weights uploaded once to every device and kept resident, one executable per
 * (per-replica batch, sequence bucket) compiled with `num_replicas = devices`, RoPE tables cached per bucket,
 * inputs uploaded per call, outputs copied back and released.
 *
 * @example
 * ```ts
 * import { PjrtRunner } from "./runner.ts";
 * // const runner = await PjrtRunner.create(client, devices, graph, weights, "float32");
 * // const outs = await runner.run({ batch: 2, seq: 16 }, inputs);
 * ```
 */
import { ActshardError } from "../../errors.ts";
import type { Graph } from "../../model/ir.ts";
import { encodeActivation } from "../../util/dtype.ts";
import type {
  AttributeValue,
  PjrtBuffer,
  PjrtClient,
  PjrtDevice,
  PjrtExecutable,
} from "../../../native/pjrt/mod.ts";
import { PjrtError } from "../../../native/pjrt/mod.ts";
import { compileOptionsBytes } from "./compile_options.ts";
import { type ComputeDtype, emitStableHlo, type EmittedProgram, ropeTables } from "./emit.ts";
import type { ReplicaInput, ReplicaRunner } from "./parallel.ts";

/** Loads a weight as f32. */
export type WeightSource = (name: string, shape: number[]) => Promise<Float32Array>;

/**
 * A whole tensor as bf16 words (round to nearest even, NaN kept NaN with its sign) — the one f32→bf16
 * implementation the shard writer uses too, a typed-array loop over the f32 bits (the per-element
 * `floatToBf16Bits` allocated per call: ~494M calls for the 0.5B model).
 */
export function toBf16Words(x: Float32Array): Uint16Array {
  const bytes = encodeActivation(x, "bfloat16");
  return new Uint16Array(bytes.buffer, bytes.byteOffset, x.length);
}

/**
 * Await every upload; if any failed, destroy the ones that succeeded (they would otherwise stay on the device
 * until `client.close()`) and throw the first error.
 */
async function uploadAll(uploads: Promise<PjrtBuffer>[]): Promise<PjrtBuffer[]> {
  const settled = await Promise.allSettled(uploads);
  const failed = settled.find((r) => r.status === "rejected");
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<PjrtBuffer>).value);
  for (const r of settled) if (r.status === "fulfilled") r.value.destroy();
  throw failed.reason;
}

/**
 * One line for a failed `Client_Compile`. XLA reports a module it cannot parse with "Failed to parse using
 * StableHLO vX" after the MLIR diagnostic; that case says so, with the StableHLO versions the plugin reads.
 */
export function compileProblem(
  e: PjrtError,
  shape: string,
  attrs: Record<string, AttributeValue>,
): ActshardError {
  const first = e.pjrtMessage.split("\n")[0];
  const v = (x: AttributeValue | undefined) => Array.isArray(x) ? x.join(".") : String(x ?? "?");
  const reads = attrs.stablehlo_current_version
    ? `; the plugin reads StableHLO ${v(attrs.stablehlo_minimum_version)}..${
      v(attrs.stablehlo_current_version)
    }`
    : "";
  const parse = /Failed to parse using StableHLO/.test(e.pjrtMessage);
  return new ActshardError(
    parse
      ? `the PJRT plugin cannot parse the emitted StableHLO program (${shape}): ${first}${reads}`
      : `the PJRT plugin rejected the StableHLO program (${shape}): ${e.codeName}: ${first}`,
    { kind: "internal", cause: e, hint: "rerun with ACTSHARD_DEBUG=1; --backend onnx avoids PJRT" },
  );
}

/** Runs emitted programs on PJRT devices, one replica per device. */
export class PjrtRunner implements ReplicaRunner {
  readonly replicas: number;
  readonly client: PjrtClient;
  readonly devices: readonly PjrtDevice[];
  readonly graph: Graph;
  readonly computeDtype: ComputeDtype;
  /** Compiled shapes, e.g. "2x16"; exposed for tests and progress lines. */
  readonly compiled = new Map<string, { exe: PjrtExecutable; program: EmittedProgram }>();
  /** `PJRT_Plugin_Attributes` (StableHLO versions), for compile error lines. */
  readonly pluginAttributes: Record<string, AttributeValue>;
  #weights: PjrtBuffer[][];
  /** RoPE tables per bucket, as promises: concurrent first calls of one bucket share one upload. */
  #rope = new Map<number, Promise<PjrtBuffer[][]>>();
  #inFlight = 0;
  /** Most `run` calls in flight at once so far (2 when forwards overlap; `ACTSHARD_PJRT_OVERLAP=0` keeps 1). */
  maxInFlight = 0;

  private constructor(
    client: PjrtClient,
    devices: readonly PjrtDevice[],
    graph: Graph,
    computeDtype: ComputeDtype,
    weights: PjrtBuffer[][],
    pluginAttributes: Record<string, AttributeValue>,
  ) {
    this.client = client;
    this.devices = devices;
    this.replicas = devices.length;
    this.graph = graph;
    this.computeDtype = computeDtype;
    this.#weights = weights;
    this.pluginAttributes = pluginAttributes;
  }

  /** Upload every weight of `graph` to each device (in the emitter's argument order). */
  static async create(
    client: PjrtClient,
    devices: readonly PjrtDevice[],
    graph: Graph,
    loadWeight: WeightSource,
    computeDtype: ComputeDtype,
    pluginAttributes: Record<string, AttributeValue> = {},
  ): Promise<PjrtRunner> {
    const order = emitStableHlo(graph, { batch: 1, seq: 1 }, computeDtype).weights;
    const perDevice: PjrtBuffer[][] = devices.map(() => []);
    try {
      for (const w of order) {
        const f32 = await loadWeight(w.name, w.shape);
        const host = w.dtype === "bf16" ? toBf16Words(f32) : f32;
        const bufs = await uploadAll(devices.map((d) => client.bufferFromHost(host, w.shape, w.dtype, d)));
        bufs.forEach((b, i) => perDevice[i].push(b));
      }
    } catch (e) {
      perDevice.flat().forEach((b) => b.destroy());
      throw e;
    }
    return new PjrtRunner(client, devices, graph, computeDtype, perDevice, pluginAttributes);
  }

  #executable(batch: number, seq: number): { exe: PjrtExecutable; program: EmittedProgram } {
    const key = `${batch}x${seq}`;
    let hit = this.compiled.get(key);
    if (!hit) {
      const program = emitStableHlo(this.graph, { batch, seq }, this.computeDtype);
      let exe: PjrtExecutable;
      try {
        exe = this.client.compile(
          program.text,
          compileOptionsBytes({ numReplicas: this.replicas, deviceIds: this.devices.map((d) => d.id) }),
        );
      } catch (e) {
        if (!(e instanceof PjrtError)) throw e;
        throw compileProblem(e, key, this.pluginAttributes);
      }
      hit = { exe, program };
      this.compiled.set(key, hit);
    }
    return hit;
  }

  #ropeBuffers(seq: number, program: EmittedProgram): Promise<PjrtBuffer[][]> {
    let bufs = this.#rope.get(seq);
    if (!bufs) {
      const w = Math.max(program.ropeHalf, 1);
      const { cos, sin } = ropeTables(seq, program.ropeHalf, program.ropeTheta);
      bufs = uploadAll(this.devices.flatMap((d) => [
        this.client.bufferFromHost(cos, [seq, w], "f32", d),
        this.client.bufferFromHost(sin, [seq, w], "f32", d),
      ])).then((flat) => this.devices.map((_, r) => flat.slice(2 * r, 2 * r + 2)));
      this.#rope.set(seq, bufs);
      bufs.catch(() => this.#rope.delete(seq)); // a failed upload is tried again by the next call
    }
    return bufs;
  }

  /**
   * One forward on every replica. Safe to call again before the previous call resolved: the calls share the
   * resident weights, the executable and the RoPE tables, and each has its own inputs and outputs — so the
   * device→host copies of one call overlap the upload and execute of the next (the extract loop keeps two in
   * flight: `Backend.concurrentForwards`).
   */
  async run(shape: { batch: number; seq: number }, inputs: ReplicaInput[]): Promise<Float32Array[][]> {
    const { batch: B, seq: S } = shape;
    this.maxInFlight = Math.max(this.maxInFlight, ++this.#inFlight);
    const perCall: PjrtBuffer[] = [];
    try {
      const { exe, program } = this.#executable(B, S);
      const rope = await this.#ropeBuffers(S, program);
      // All devices' uploads settle before anything is thrown, so none finishes after the `finally` below.
      const uploaded = await uploadAll(this.devices.flatMap((d, r) => [
        this.client.bufferFromHost(inputs[r].ids, [B, S], "s32", d),
        this.client.bufferFromHost(inputs[r].lengths, [B], "s32", d),
      ]));
      perCall.push(...uploaded);
      const args = this.devices.map((_, r) => [
        uploaded[2 * r],
        uploaded[2 * r + 1],
        ...rope[r],
        ...this.#weights[r],
      ]);
      const outs = await exe.execute(args);
      perCall.push(...outs.flat());
      return await Promise.all(outs.map((list) =>
        Promise.all(list.map(async (buf, k) => {
          const dims = buf.dims();
          const want = this.#outputDims(k, B, S);
          if (dims.join() !== want.join()) {
            throw new ActshardError(
              `PJRT output ${program.outputs[k]} has shape [${dims}], expected [${want}]`,
              { kind: "internal", hint: "the plugin does not run the emitted program (a test double?)" },
            );
          }
          return new Float32Array((await buf.toHost()).buffer);
        }))
      ));
    } finally {
      this.#inFlight--;
      perCall.forEach((b) => b.destroy());
    }
  }

  #outputDims(k: number, B: number, S: number): number[] {
    const node = this.graph.nodes[this.graph.outputs[k].node];
    return node.shape.map((d) => d === "batch" ? B : d === "seq" ? S : d);
  }

  async close(): Promise<void> {
    for (const { exe } of this.compiled.values()) exe.destroy();
    this.compiled.clear();
    const rope = (await Promise.allSettled(this.#rope.values()))
      .flatMap((r) => r.status === "fulfilled" ? r.value : []);
    for (const l of [...this.#weights, ...rope]) l.forEach((b) => b.destroy());
    this.#rope.clear();
  }
}
