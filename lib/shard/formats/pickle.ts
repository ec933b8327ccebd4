/**
 * The pickle shard format (the default, seed-compatible): `{layer:int → [ {task_id, sample_idx, activation,
 * shape, prompt, ...extra} ]}`, pickle protocol 4, `activation` a numpy ndarray. Encoding streams record by
 * record (pickle_writer.ts); decoding goes through the restricted unpickler (pickle_reader.ts), which also reads
 * the seed's own shards (records without `task_id`, other keys carried in `extra`). numpy has no bfloat16, so
 * pickle holds float32 and float16 only.
 *
 * @example
 * ```ts
 * import { PICKLE_FORMAT } from "./pickle.ts";
 * console.log(PICKLE_FORMAT.extension, PICKLE_FORMAT.dtypes.bfloat16); // "pkl" "numpy has no bfloat16"
 * ```
 */
import type { ActivationDType } from "../../types.ts";
import { ActshardError } from "../../errors.ts";
import { decodeOwnedActivation } from "../../util/dtype.ts";
import { type NdArray, unpickleRecords } from "../pickle_reader.ts";
import { PickleShardEncoder } from "../pickle_writer.ts";
import type { DecodedRecord, ShardFormatSpec, ShardItem } from "./spec.ts";

const NUMPY_DTYPES: Record<string, ActivationDType> = { f4: "float32", f2: "float16" };

/** An unpickled numpy array as float32 values (big-endian, float64 and Fortran order converted). */
function ndToFloat32(a: NdArray, where: string): { values: Float32Array; dtype: ActivationDType } {
  const dtype = NUMPY_DTYPES[a.descr];
  if (!dtype && a.descr !== "f8") {
    throw new ActshardError(`unsupported numpy dtype "${a.descr}" in activation`, { where, kind: "data" });
  }
  let data = a.data;
  const width = a.descr === "f8" ? 8 : a.descr === "f4" ? 4 : 2;
  if (a.byteorder === ">") {
    data = data.slice();
    for (let i = 0; i < data.length; i += width) data.subarray(i, i + width).reverse();
  }
  const n = a.shape.reduce((x, y) => x * y, 1);
  if (data.length !== n * width) {
    throw new ActshardError(`activation has ${data.length} bytes for shape (${a.shape})`, {
      where,
      kind: "data",
    });
  }
  let values: Float32Array;
  if (a.descr === "f8") {
    const c = data.slice();
    values = Float32Array.from(new Float64Array(c.buffer, 0, n));
  } else {
    // The unpickler gives every bytes object a buffer of its own: the first record on it takes it as is.
    values = decodeOwnedActivation(data, dtype);
  }
  if (a.fortran && a.shape.length === 2) {
    const [r, c] = a.shape;
    const t = new Float32Array(n);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[i * c + j] = values[j * r + i];
    values = t;
  }
  return { values, dtype: dtype ?? "float32" };
}

/** Record keys with a field of their own; any other key is carried in `extra`. */
const KNOWN = new Set(["task_id", "sample_idx", "activation", "shape", "prompt", "layer"]);

async function* decodePickle(stream: ReadableStream<Uint8Array>, where: string): AsyncGenerator<ShardItem> {
  for await (const { layer, record } of unpickleRecords(stream, where)) {
    const sample_idx = Number(record.sample_idx ?? -1);
    const task_id = typeof record.task_id === "string" ? record.task_id : "";
    yield {
      layer,
      task_id,
      sample_idx,
      record(): DecodedRecord {
        const { values, dtype } = ndToFloat32(record.activation as NdArray, where);
        const shape = (record.activation as NdArray).shape;
        const extra: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(record)) if (!KNOWN.has(k)) extra[k] = v;
        return {
          task_id,
          sample_idx,
          layer,
          activation: values,
          shape: [shape[0], shape[1] ?? 1],
          prompt: typeof record.prompt === "string" ? record.prompt : "",
          ...(Object.keys(extra).length ? { extra } : {}),
          dtype,
        };
      },
    };
  }
}

/** The pickle format's registry entry. */
export const PICKLE_FORMAT: ShardFormatSpec = {
  name: "pickle",
  extension: "pkl",
  dtypes: { float32: true, float16: true, bfloat16: "numpy has no bfloat16" },
  scratchShards: 0,
  encoder(ctx) {
    const enc = new PickleShardEncoder(ctx.dtype);
    return {
      begin: () => ctx.out(enc.begin()),
      async record(r, stored, handOver) {
        const [head, data, tail] = enc.record(r, stored);
        await ctx.out(head);
        // The array bytes are ours to give up when handed over, or when they are not the activation's own.
        await ctx.out(data, handOver === true || data.buffer !== r.activation.buffer);
        await ctx.out(tail);
      },
      finish: () => ctx.out(enc.end()),
      abort: () => Promise.resolve(),
    };
  },
  decode: decodePickle,
};
