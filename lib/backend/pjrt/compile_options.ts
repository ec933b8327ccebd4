/**
 * Serialized `xla.CompileOptionsProto` bytes for `PJRT_Client_Compile`, written by hand (a few varints) so no
 * protobuf library is needed. Only `executable_build_options` (field 3) is set:
 * `{device_ordinal (1): -1, num_replicas (4): N, num_partitions (5): 1}`. Empty bytes would mean
 * num_replicas = 0, which plugins reject.
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

/** Encode {@link CompileOptions} as a serialized `CompileOptionsProto`. */
export function compileOptionsBytes(opts: CompileOptions): Uint8Array {
  if (!(Number.isInteger(opts.numReplicas) && opts.numReplicas >= 1)) {
    throw new RangeError(`numReplicas must be a positive integer, got ${opts.numReplicas}`);
  }
  const build: number[] = [];
  field(1, opts.deviceOrdinal ?? -1, build);
  field(4, opts.numReplicas, build);
  field(5, opts.numPartitions ?? 1, build);
  const out: number[] = [];
  varint(BigInt((3 << 3) | 2), out);
  varint(BigInt(build.length), out);
  return new Uint8Array([...out, ...build]);
}
