/**
 * A small graph IR for decoder-only transformers: the model is written once against it (lib/model/qwen2.ts) and
 * every backend is an emitter (ONNX, StableHLO) or the reference interpreter. Op semantics are specified in
 * docs/ir.md; each op here carries only what an emitter needs (typed attributes, static shapes with the two
 * symbolic dims `"batch"` and `"seq"`).
 *
 * Nodes are appended in topological order (an input always has a smaller id than its user), so emitters walk
 * `graph.nodes` once, front to back.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "./ir.ts";
 * const g = new GraphBuilder();
 * const ids = g.input("ids");
 * const table = g.weight("embed", [100, 8]);
 * const h = g.embed(table, ids);             // ["batch", "seq", 8]
 * g.output("h", g.silu(h));
 * const graph = g.finish();
 * console.log(graph.nodes.length);            // 5
 * ```
 */

/** A dimension: a static size, or one of the two symbolic dims bound at run time. */
export type Dim = number | "batch" | "seq";
/** A tensor shape. */
export type Shape = Dim[];
/** Element types: activations and weights are f32; token ids and lengths are i32. */
export type DType = "f32" | "i32";

/** Fields every node has. `id` is its index in `Graph.nodes`; `inputs` are ids of earlier nodes. */
interface NodeBase {
  id: number;
  inputs: number[];
  shape: Shape;
  dtype: DType;
}

/** Graph inputs: `ids` i32 `[batch, seq]` (right-padded token ids), `lengths` i32 `[batch]` (real lengths). */
export interface InputNode extends NodeBase {
  op: "input";
  name: "ids" | "lengths";
}
/** A named checkpoint tensor (f32 after loading, whatever its stored dtype). */
export interface WeightNode extends NodeBase {
  op: "weight";
  name: string;
}
/** `out[b,s,:] = table[ids[b,s], :]`. inputs: [table `[V,H]`, ids `[batch,seq]`]. */
export interface EmbedNode extends NodeBase {
  op: "embed";
}
/** `out = x · wᵀ (+ bias)`, w `[out,in]` as stored by PyTorch. inputs: [x `[...,in]`, w, bias?]. */
export interface LinearNode extends NodeBase {
  op: "linear";
}
/** `out = x / sqrt(mean(x², last axis) + eps) * w`, variance in fp32 (or wider). inputs: [x, w `[H]`]. */
export interface RmsNormNode extends NodeBase {
  op: "rmsnorm";
  eps: number;
}
/** Elementwise `a + b`, same shapes. */
export interface AddNode extends NodeBase {
  op: "add";
}
/** Elementwise `a * b`, same shapes. */
export interface MulNode extends NodeBase {
  op: "mul";
}
/** Elementwise `x * sigmoid(x)`. */
export interface SiluNode extends NodeBase {
  op: "silu";
}
/** Row-major reshape to `shape` (symbolic dims keep their value). inputs: [x]. */
export interface ReshapeNode extends NodeBase {
  op: "reshape";
}
/**
 * Rotary position embedding (HF "rotate half" layout) on x `[batch, seq, heads, D]`, position of token s = s
 * (batches are right-padded). inputs: [x].
 */
export interface RopeNode extends NodeBase {
  op: "rope";
  theta: number;
}
/**
 * Causal grouped-query attention with a key-length mask. inputs: [q `[batch,seq,Hq,D]`, k `[batch,seq,Hkv,D]`,
 * v `[batch,seq,Hkv,D]`, lengths `[batch]`]; out `[batch,seq,Hq,D]`. Query head h reads kv head
 * `floor(h / (Hq/Hkv))`; key j is visible to query i iff `j <= i && j < lengths[b]`; scale `1/sqrt(D)`.
 */
export interface AttentionNode extends NodeBase {
  op: "attention";
  scale: number;
}

/** Every node kind. */
export type Node =
  | InputNode
  | WeightNode
  | EmbedNode
  | LinearNode
  | RmsNormNode
  | AddNode
  | MulNode
  | SiluNode
  | ReshapeNode
  | RopeNode
  | AttentionNode;

/** The op names, for exhaustive switches. */
export type OpName = Node["op"];

/** A named graph output (e.g. `layer_3`) and the node that produces it. */
export interface GraphOutput {
  name: string;
  node: number;
}

/** A finished graph: nodes in topological order, named outputs, and the weights it reads. */
export interface Graph {
  nodes: Node[];
  outputs: GraphOutput[];
}

/** A handle to a node while building. */
export interface Value {
  readonly id: number;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** Builds a {@link Graph}, checking shapes as it goes (a shape error is a bug in the model definition). */
export class GraphBuilder {
  #nodes: Node[] = [];
  #outputs: GraphOutput[] = [];
  #weights = new Map<string, number>();
  #inputs = new Map<string, number>();

  #add<N extends Node>(n: Omit<N, "id">): Value {
    const node = { ...n, id: this.#nodes.length } as unknown as N;
    this.#nodes.push(node);
    return node;
  }

  /** The `ids` (i32 `[batch, seq]`) or `lengths` (i32 `[batch]`) input; repeated calls return the same node. */
  input(name: "ids" | "lengths"): Value {
    const have = this.#inputs.get(name);
    if (have !== undefined) return this.#nodes[have];
    const shape: Shape = name === "ids" ? ["batch", "seq"] : ["batch"];
    const v = this.#add<InputNode>({ op: "input", name, inputs: [], shape, dtype: "i32" });
    this.#inputs.set(name, v.id);
    return v;
  }

  /** A checkpoint tensor of the given shape; repeated calls with one name return the same node. */
  weight(name: string, shape: number[]): Value {
    const have = this.#weights.get(name);
    if (have !== undefined) {
      const n = this.#nodes[have];
      if (!sameShape(n.shape, shape)) {
        throw new Error(`weight ${name} used with shapes ${n.shape} and ${shape}`);
      }
      return n;
    }
    const v = this.#add<WeightNode>({ op: "weight", name, inputs: [], shape: [...shape], dtype: "f32" });
    this.#weights.set(name, v.id);
    return v;
  }

  /** Token embedding lookup. */
  embed(table: Value, ids: Value): Value {
    check(table.shape.length === 2 && ids.dtype === "i32", "embed: table [V,H] and i32 ids");
    return this.#add<EmbedNode>({
      op: "embed",
      inputs: [table.id, ids.id],
      shape: [...ids.shape, table.shape[1]],
      dtype: "f32",
    });
  }

  /** `x · wᵀ + bias`. */
  linear(x: Value, w: Value, bias?: Value): Value {
    const [outF, inF] = w.shape;
    check(w.shape.length === 2 && x.shape.at(-1) === inF, `linear: x ${x.shape} vs w ${w.shape}`);
    if (bias) check(bias.shape.length === 1 && bias.shape[0] === outF, `linear: bias ${bias.shape}`);
    return this.#add<LinearNode>({
      op: "linear",
      inputs: bias ? [x.id, w.id, bias.id] : [x.id, w.id],
      shape: [...x.shape.slice(0, -1), outF],
      dtype: "f32",
    });
  }

  /** RMSNorm over the last axis. */
  rmsnorm(x: Value, w: Value, eps: number): Value {
    check(w.shape.length === 1 && w.shape[0] === x.shape.at(-1), `rmsnorm: x ${x.shape} vs w ${w.shape}`);
    return this.#add<RmsNormNode>({ op: "rmsnorm", eps, inputs: [x.id, w.id], shape: x.shape, dtype: "f32" });
  }

  /** Elementwise sum. */
  add(a: Value, b: Value): Value {
    check(sameShape(a.shape, b.shape), `add: ${a.shape} vs ${b.shape}`);
    return this.#add<AddNode>({ op: "add", inputs: [a.id, b.id], shape: a.shape, dtype: "f32" });
  }

  /** Elementwise product. */
  mul(a: Value, b: Value): Value {
    check(sameShape(a.shape, b.shape), `mul: ${a.shape} vs ${b.shape}`);
    return this.#add<MulNode>({ op: "mul", inputs: [a.id, b.id], shape: a.shape, dtype: "f32" });
  }

  /** SiLU. */
  silu(x: Value): Value {
    return this.#add<SiluNode>({ op: "silu", inputs: [x.id], shape: x.shape, dtype: "f32" });
  }

  /** Reshape; the symbolic dims must appear in the same order in both shapes, static parts must agree. */
  reshape(x: Value, shape: Shape): Value {
    const sym = (s: Shape) => s.filter((d) => typeof d === "string").join(",");
    const stat = (s: Shape) => s.reduce<number>((p, d) => p * (typeof d === "number" ? d : 1), 1);
    check(sym(x.shape) === sym(shape) && stat(x.shape) === stat(shape), `reshape: ${x.shape} -> ${shape}`);
    return this.#add<ReshapeNode>({ op: "reshape", inputs: [x.id], shape: [...shape], dtype: "f32" });
  }

  /** Rotary position embedding on `[batch, seq, heads, D]`. */
  rope(x: Value, theta: number): Value {
    const d = x.shape[3];
    check(x.shape.length === 4 && typeof d === "number" && d % 2 === 0, `rope: ${x.shape}`);
    return this.#add<RopeNode>({ op: "rope", theta, inputs: [x.id], shape: x.shape, dtype: "f32" });
  }

  /** Causal GQA attention with a lengths mask. */
  attention(q: Value, k: Value, v: Value, lengths: Value, scale?: number): Value {
    const [, , hq, d] = q.shape;
    const hkv = k.shape[2];
    check(
      q.shape.length === 4 && sameShape(k.shape, v.shape) && k.shape[3] === d && typeof hq === "number" &&
        typeof hkv === "number" && hq % hkv === 0 && lengths.dtype === "i32",
      `attention: q ${q.shape} k ${k.shape} v ${v.shape}`,
    );
    return this.#add<AttentionNode>({
      op: "attention",
      scale: scale ?? 1 / Math.sqrt(d as number),
      inputs: [q.id, k.id, v.id, lengths.id],
      shape: q.shape,
      dtype: "f32",
    });
  }

  /** Mark `x` as the graph output `name`. */
  output(name: string, x: Value): void {
    check(!this.#outputs.some((o) => o.name === name), `output ${name} declared twice`);
    this.#outputs.push({ name, node: x.id });
  }

  /** The finished graph. */
  finish(): Graph {
    return { nodes: [...this.#nodes], outputs: [...this.#outputs] };
  }
}

/** The weight nodes of a graph (what a backend must load). */
export function graphWeights(g: Graph): WeightNode[] {
  return g.nodes.filter((n): n is WeightNode => n.op === "weight");
}

/** Resolve a shape against concrete batch/seq sizes. */
export function concreteShape(shape: Shape, batch: number, seq: number): number[] {
  return shape.map((d) => d === "batch" ? batch : d === "seq" ? seq : d);
}

/** Number of elements of a concrete shape. */
export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function check(ok: boolean, msg: string): void {
  if (!ok) throw new Error(`graph IR: ${msg}`);
}
