/**
 * Serialized `xla.CompileOptionsProto` bytes for `PJRT_Client_Compile`, written by hand (a few varints) so no
 * protobuf library is needed. Only `executable_build_options` (field 3) is set:
 * `{device_ordinal (1): -1, num_replicas (4): N, num_partitions (5): 1}`, plus, when `deviceIds` are given,
 * `device_assignment (9): {replica_count (1): N, computation_count (2): 1, computation_devices (3):
 * {replica_device_ids (1): ids}}` — replica r runs on device `ids[r]`, as JAX always specifies. Without it the
 * plugin picks its default assignment, which on TPU is not device order, and execution then rejects argument
 * lists placed in device order. Empty bytes would mean num_replicas = 0, which plugins reject.
 *
 * @example
 * ```ts
 * import { compileOptionsBytes } from "./compile_options.ts";
 * compileOptionsBytes({ numReplicas: 1 }); // 1a 0f 08 ff ff ff ff ff ff ff ff ff 01 20 01 28 01
 * ```
 */

/** What the emitted programs need from the compiler. */
export interface CompileOptions {
  /** Replicas = devices the executable runs on (data parallel: one batch slice per replica). */
  numReplicas: number;
  numPartitions?: number;
  /** -1 lets the client choose. */
  deviceOrdinal?: number;
  /** `PJRT_DeviceDescription_Id` of the device each replica runs on (length numReplicas). */
  deviceIds?: number[];
}

function varint(v: bigint, out: number[]): void {
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
}

function field(num: number, v: number | bigint, out: number[]): void {
  varint(BigInt(num << 3), out);
  varint(BigInt(v), out);
}

function bytesField(num: number, bytes: number[], out: number[]): void {
  varint(BigInt((num << 3) | 2), out);
  varint(BigInt(bytes.length), out);
  out.push(...bytes);
}

/** Encode {@link CompileOptions} as a serialized `CompileOptionsProto`. */
export function compileOptionsBytes(opts: CompileOptions): Uint8Array {
  if (!(Number.isInteger(opts.numReplicas) && opts.numReplicas >= 1)) {
    throw new RangeError(`numReplicas must be a positive integer, got ${opts.numReplicas}`);
  }
  const build: number[] = [];
  field(1, opts.deviceOrdinal ?? -1, build);
  field(4, opts.numReplicas, build);
  field(5, opts.numPartitions ?? 1, build);
  if (opts.deviceIds) {
    if (opts.deviceIds.length !== opts.numReplicas || (opts.numPartitions ?? 1) !== 1) {
      throw new RangeError(`deviceIds must list one device per replica, got ${opts.deviceIds.length}`);
    }
    const ids: number[] = [];
    for (const id of opts.deviceIds) varint(BigInt(id), ids);
    const computation: number[] = [];
    bytesField(1, ids, computation);
    const assignment: number[] = [];
    field(1, opts.numReplicas, assignment);
    field(2, 1, assignment);
    bytesField(3, computation, assignment);
    bytesField(9, assignment, build);
  }
  const out: number[] = [];
  varint(BigInt((3 << 3) | 2), out);
  varint(BigInt(build.length), out);
  return new Uint8Array([...out, ...build]);
}
