/**
 * The ONNX emitter: graph IR → ONNX `ModelProto` bytes (opset 17, standard ops only, so `onnx.checker` accepts
 * it). Weights are external data (`location`/`offset`/`length` into a file next to the model, e.g. the
 * checkpoint's own safetensors); batch and sequence are dynamic (`batch`, `seq`); each IR output is a graph
 * output. Patterns are written the way onnxruntime's optimizer recognises them (RMSNorm → SimplifiedLayerNorm,
 * MatMul + Add → Gemm-like fused kernels).
 *
 * @example
 * ```ts
 * import { emitOnnx } from "./emit.ts";
 * import { buildQwen2Graph } from "../../model/qwen2.ts";
 * import { loadModelConfig } from "../../model/config.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const graph = buildQwen2Graph(await loadModelConfig(dir), [0, 1]);
 * const bytes = emitOnnx(graph, (name) => ({ location: "model.safetensors", offset: 1024, length: 4096 }));
 * await Deno.writeFile(`${dir}/model.onnx`, bytes); // weights stay external: only the graph is in these bytes
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import onnxProto from "onnx-proto";
import type { AttentionNode, Dim, Graph, Node, RopeNode } from "../../model/ir.ts";

const { onnx } = onnxProto;
type NodeProto = InstanceType<typeof onnx.NodeProto>;
type TensorProto = InstanceType<typeof onnx.TensorProto>;

/** Where a weight's f32 little-endian bytes are, relative to the model file's directory. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT32 = onnx.TensorProto.DataType.INT32;
const INT64 = onnx.TensorProto.DataType.INT64;

/** Emitter choices. */
export interface EmitOptions {
  /**
   * Use onnxruntime's fused `com.microsoft.GroupQueryAttention` for attention (default false: standard ops
   * only). It is causal only, with every row's total length = seq: exact for real tokens of right-padded rows
   * (a real query i < length sees only keys j <= i < length); padded rows get other (finite) values.
   */
  fusedAttention?: boolean;
}

/** Emit `graph` as an ONNX model; `weightRef(name)` says where each weight's f32 bytes are. */
export function emitOnnx(
  graph: Graph,
  weightRef: (name: string) => ExternalRef,
  opts: EmitOptions = {},
): Uint8Array {
  const e = new Emitter();
  const name = (id: number) => `n${id}`;
  const inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  for (const n of graph.nodes) {
    const out = name(n.id);
    const ins = n.inputs.map(name);
    switch (n.op) {
      case "input":
        inputs.push(valueInfo(n.name, INT32, n.shape));
        e.node("Identity", [n.name], [out]);
        if (n.name === "ids") e.ids = n.name;
        else e.lengths = n.name;
        break;
      case "weight": {
        const ref = weightRef(n.name);
        e.initializers.push(
          onnx.TensorProto.create({
            name: out,
            dims: n.shape as number[],
            dataType: FLOAT,
            dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
            externalData: [
              { key: "location", value: ref.location },
              { key: "offset", value: String(ref.offset) },
              { key: "length", value: String(ref.length) },
            ],
          }),
        );
        break;
      }
      case "embed":
        e.node("Gather", ins, [out], { axis: 0 });
        break;
      case "linear": {
        const wt = e.node("Transpose", [ins[1]], [e.tmp()], { perm: [1, 0] });
        if (ins.length === 2) e.node("MatMul", [ins[0], wt], [out]);
        else e.node("Add", [e.node("MatMul", [ins[0], wt], [e.tmp()]), ins[2]], [out]);
        break;
      }
      case "rmsnorm": {
        const sq = e.node("Pow", [ins[0], e.constF32([2])], [e.tmp()]);
        const mean = e.node("ReduceMean", [sq], [e.tmp()], { axes: [-1], keepdims: 1 });
        const std = e.node("Sqrt", [e.node("Add", [mean, e.constF32([n.eps])], [e.tmp()])], [e.tmp()]);
        e.node("Mul", [e.node("Div", [ins[0], std], [e.tmp()]), ins[1]], [out]);
        break;
      }
      case "add":
        e.node("Add", ins, [out]);
        break;
      case "mul":
        e.node("Mul", ins, [out]);
        break;
      case "silu":
        e.node("Mul", [ins[0], e.node("Sigmoid", ins, [e.tmp()])], [out]);
        break;
      case "reshape": {
        const from = graph.nodes[n.inputs[0]].shape;
        e.node("Reshape", [ins[0], e.constI64(reshapeTarget(from, n.shape))], [out]);
        break;
      }
      case "rope":
        emitRope(e, n, ins[0], out);
        break;
      case "attention":
        if (opts.fusedAttention) emitFusedAttention(e, n, graph.nodes[n.inputs[1]], ins, out);
        else emitAttention(e, n, graph.nodes[n.inputs[1]], ins, out);
        break;
      default:
        throw new Error(`onnx emitter: unhandled op ${(n as Node).op}`);
    }
  }
  const outputs = graph.outputs.map((o) => {
    e.node("Identity", [name(o.node)], [o.name]);
    return valueInfo(o.name, FLOAT, graph.nodes[o.node].shape);
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "actshard",
    opsetImport: opts.fusedAttention
      ? [{ domain: "", version: 17 }, { domain: "com.microsoft", version: 1 }]
      : [{ domain: "", version: 17 }],
    graph: onnx.GraphProto.create({
      name: "qwen2",
      node: e.nodes,
      initializer: e.initializers,
      input: inputs,
      output: outputs,
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Reshape target for ONNX: symbolic dims at the same index as in the input become 0 ("copy"). */
function reshapeTarget(from: Dim[], to: Dim[]): number[] {
  let inferred = false;
  return to.map((d, i) => {
    if (typeof d === "number") return d;
    if (from[i] === d) return 0;
    if (inferred) throw new Error(`onnx emitter: cannot express reshape ${from} -> ${to}`);
    inferred = true;
    return -1;
  });
}

/** HF rotate-half RoPE; the cos/sin tables `[seq, 1, D/2]` are built once per (theta, D). */
function emitRope(e: Emitter, n: RopeNode, x: string, out: string): void {
  const D = n.shape[3] as number, half = D / 2;
  const key = `rope:${n.theta}:${D}`;
  let tables = e.cache.get(key) as [string, string] | undefined;
  if (!tables) {
    const inv = new Float32Array(half);
    for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(n.theta, (2 * i) / D);
    const pos = e.node("Cast", [e.positions()], [e.tmp()], { to: FLOAT });
    const ang = e.node("Mul", [
      e.node("Unsqueeze", [pos, e.constI64([1])], [e.tmp()]),
      e.constF32(inv, [1, half]),
    ], [
      e.tmp(),
    ]);
    const ang3 = e.node("Unsqueeze", [ang, e.constI64([1])], [e.tmp()]); // [seq, 1, D/2]
    tables = [e.node("Cos", [ang3], [e.tmp()]), e.node("Sin", [ang3], [e.tmp()])];
    e.cache.set(key, tables);
  }
  const [cos, sin] = tables;
  const x1 = e.tmp(), x2 = e.tmp();
  e.node("Split", [x, e.constI64([half, half])], [x1, x2], { axis: -1 });
  const a = e.node("Sub", [e.mul(x1, cos), e.mul(x2, sin)], [e.tmp()]);
  const b = e.node("Add", [e.mul(x2, cos), e.mul(x1, sin)], [e.tmp()]);
  e.node("Concat", [a, b], [out], { axis: -1 });
}

/**
 * Causal GQA without repeating k/v: q is viewed as `[b, Hkv, group, s, D]` and k/v as `[b, Hkv, 1, s, D]`, so one
 * broadcasting MatMul serves every query head of a kv group.
 */
function emitAttention(e: Emitter, n: AttentionNode, kNode: Node, ins: string[], out: string): void {
  const [q, k, v] = ins;
  const Hq = n.shape[2] as number, D = n.shape[3] as number, Hkv = kNode.shape[2] as number, g = Hq / Hkv;
  const qs = e.node("Mul", [q, e.constF32([n.scale])], [e.tmp()]);
  const q5 = e.node("Transpose", [e.node("Reshape", [qs, e.constI64([0, 0, Hkv, g, D])], [e.tmp()])], [
    e.tmp(),
  ], {
    perm: [0, 2, 3, 1, 4],
  });
  const kT = e.node("Transpose", [k], [e.tmp()], { perm: [0, 2, 3, 1] }); // [b, Hkv, D, s]
  const k5 = e.node("Unsqueeze", [kT, e.constI64([2])], [e.tmp()]);
  const scores = e.node("MatMul", [q5, k5], [e.tmp()]); // [b, Hkv, g, s, s]
  const masked = e.node("Where", [e.attentionMask(), scores, e.constF32([-1e30])], [e.tmp()]);
  const p = e.node("Softmax", [masked], [e.tmp()], { axis: -1 });
  const vT = e.node("Transpose", [v], [e.tmp()], { perm: [0, 2, 1, 3] }); // [b, Hkv, s, D]
  const v5 = e.node("Unsqueeze", [vT, e.constI64([2])], [e.tmp()]);
  const o5 = e.node("MatMul", [p, v5], [e.tmp()]); // [b, Hkv, g, s, D]
  const oT = e.node("Transpose", [o5], [e.tmp()], { perm: [0, 3, 1, 2, 4] }); // [b, s, Hkv, g, D]
  e.node("Reshape", [oT, e.constI64([0, 0, Hq, D])], [out]);
}

/** onnxruntime's GroupQueryAttention (CPU kernel), causal over the full padded length. */
function emitFusedAttention(e: Emitter, n: AttentionNode, kNode: Node, ins: string[], out: string): void {
  const [q, k, v] = ins;
  const Hq = n.shape[2] as number, D = n.shape[3] as number, Hkv = kNode.shape[2] as number;
  const flat = (x: string, h: number) => e.node("Reshape", [x, e.constI64([0, 0, h * D])], [e.tmp()]);
  let lens = e.cache.get("gqa-lens") as [string, string] | undefined;
  if (!lens) {
    const shape = e.node("Shape", [e.ids], [e.tmp()]);
    const b = e.node("Gather", [shape, e.constI64([0])], [e.tmp()], { axis: 0 }); // [1]
    const s = e.node("Gather", [shape, e.scalarI64(1)], [e.tmp()], { axis: 0 }); // scalar
    const s32 = e.node("Cast", [s], [e.tmp()], { to: INT32 });
    const sm1 = e.node("Sub", [s32, e.node("Cast", [e.scalarI64(1)], [e.tmp()], { to: INT32 })], [e.tmp()]);
    lens = [e.node("Expand", [sm1, b], [e.tmp()]), s32];
    e.cache.set("gqa-lens", lens);
  }
  const o = e.tmp();
  e.nodes.push(onnx.NodeProto.create({
    opType: "GroupQueryAttention",
    domain: "com.microsoft",
    input: [flat(q, Hq), flat(k, Hkv), flat(v, Hkv), "", "", lens[0], lens[1]],
    output: [o, e.tmp(), e.tmp()],
    attribute: [
      { name: "num_heads", type: onnx.AttributeProto.AttributeType.INT, i: Hq },
      { name: "kv_num_heads", type: onnx.AttributeProto.AttributeType.INT, i: Hkv },
      { name: "scale", type: onnx.AttributeProto.AttributeType.FLOAT, f: n.scale },
    ],
  }));
  e.node("Reshape", [o, e.constI64([0, 0, Hq, D])], [out]);
}

type Attr = number | number[];

class Emitter {
  nodes: NodeProto[] = [];
  initializers: TensorProto[] = [];
  cache = new Map<string, unknown>();
  ids = "ids";
  lengths = "lengths";
  #n = 0;

  tmp(): string {
    return `t${this.#n++}`;
  }

  /** Append a node; returns its first output's name. */
  node(op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): string {
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
        : { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
    );
    this.nodes.push(onnx.NodeProto.create({ opType: op, input: inputs, output: outputs, attribute }));
    return outputs[0];
  }

  mul(a: string, b: string): string {
    return this.node("Mul", [a, b], [this.tmp()]);
  }

  constF32(values: ArrayLike<number>, dims: number[] = [values.length]): string {
    const key = `f32:${dims}:${Array.from(values)}`;
    const have = this.cache.get(key) as string | undefined;
    if (have) return have;
    const name = this.tmp();
    this.initializers.push(
      onnx.TensorProto.create({ name, dims, dataType: FLOAT, floatData: Array.from(values) }),
    );
    this.cache.set(key, name);
    return name;
  }

  constI64(values: number[]): string {
    const key = `i64:${values}`;
    const have = this.cache.get(key) as string | undefined;
    if (have) return have;
    const name = this.tmp();
    this.initializers.push(
      onnx.TensorProto.create({ name, dims: [values.length], dataType: INT64, int64Data: values }),
    );
    this.cache.set(key, name);
    return name;
  }

  /** `0..seq-1` as int64 `[seq]`, from the ids input's shape. */
  positions(): string {
    let p = this.cache.get("positions") as string | undefined;
    if (!p) {
      const seq = this.node("Gather", [this.node("Shape", [this.ids], [this.tmp()]), this.constI64([1])], [
        this.tmp(),
      ], { axis: 0 });
      const seqScalar = this.node("Squeeze", [seq, this.constI64([0])], [this.tmp()]);
      p = this.node("Range", [this.scalarI64(0), seqScalar, this.scalarI64(1)], [this.tmp()]);
      this.cache.set("positions", p);
    }
    return p;
  }

  scalarI64(v: number): string {
    const key = `si64:${v}`;
    const have = this.cache.get(key) as string | undefined;
    if (have) return have;
    const name = this.tmp();
    this.initializers.push(onnx.TensorProto.create({ name, dims: [], dataType: INT64, int64Data: [v] }));
    this.cache.set(key, name);
    return name;
  }

  /** Bool `[batch, 1, 1, seq, seq]`: key j visible to query i iff `j <= i && j < lengths[b]`. */
  attentionMask(): string {
    let m = this.cache.get("mask") as string | undefined;
    if (!m) {
      const pos = this.positions();
      const i = this.node("Unsqueeze", [pos, this.constI64([1])], [this.tmp()]); // [s, 1]
      const j = this.node("Unsqueeze", [pos, this.constI64([0])], [this.tmp()]); // [1, s]
      const causal = this.node("LessOrEqual", [j, i], [this.tmp()]); // [s, s]
      const len = this.node("Cast", [this.lengths], [this.tmp()], { to: INT64 });
      const len5 = this.node("Unsqueeze", [len, this.constI64([1, 2, 3, 4])], [this.tmp()]); // [b,1,1,1,1]
      const keyOk = this.node("Less", [j, len5], [this.tmp()]); // [b,1,1,1,s]
      m = this.node("And", [causal, keyOk], [this.tmp()]);
      this.cache.set("mask", m);
    }
    return m;
  }
}

function valueInfo(name: string, elemType: number, shape: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }) },
      },
    },
  });
}
