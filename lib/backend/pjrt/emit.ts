/**
 * StableHLO emitter: the graph IR (lib/model/ir.ts, docs/ir.md) as MLIR text in generic op syntax, for one
 * concrete (batch, seq) shape. Signature of `@main`:
 *
 *   (ids i32[B,S], lengths i32[B], rope_cos f32[S,D/2], rope_sin f32[S,D/2], weight_0, weight_1, ...)
 *     -> (one f32[B,S,H] per graph output, in graph order)
 *
 * Weights are arguments (uploaded once, resident on every device), not constants. RoPE tables come in as
 * arguments computed on the host in float64 (more exact than f32 sin/cos of f32 angles). With `float32`, every
 * dot_general uses `precision HIGHEST`; with `bfloat16`, matrices are bf16 arguments and dot_generals take bf16
 * operands with f32 results (f32 accumulation); norms, softmax and the residual stream stay f32.
 *
 * @example
 * ```ts
 * import { emitStableHlo } from "./emit.ts";
 * import { buildQwen2Graph } from "../../model/qwen2.ts";
 * import { loadModelConfig } from "../../model/config.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const graph = buildQwen2Graph(await loadModelConfig(dir), [0, 1]);
 * await Deno.remove(dir, { recursive: true });
 * const { text, weights } = emitStableHlo(graph, { batch: 2, seq: 16 });
 * console.log(text.startsWith("module @actshard"), weights.length);
 * ```
 */
import { concreteShape, type Graph, type Node } from "../../model/ir.ts";

/** Element type of the math (not of the residual stream, which is always f32). */
export type ComputeDtype = "float32" | "bfloat16";

/** What one emitted program looks like from the outside. */
export interface EmittedProgram {
  text: string;
  /** Weight arguments, in order after the four fixed arguments. `dtype` is what to upload. */
  weights: { name: string; shape: number[]; dtype: "f32" | "bf16" }[];
  /** Graph output names, in result order. */
  outputs: string[];
  /** Half the head dim (the RoPE table width); 0 when the graph has no rope. */
  ropeHalf: number;
  /** RoPE theta of the graph (the tables depend on it). */
  ropeTheta: number;
}

type ElemType = "f32" | "bf16" | "i32" | "i1";

function ty(shape: number[], e: ElemType): string {
  return `tensor<${shape.map((d) => `${d}x`).join("")}${e}>`;
}

function arr(xs: number[]): string {
  return `array<i64${xs.length ? ": " + xs.join(", ") : ""}>`;
}

function f32Lit(x: number): string {
  if (x === Infinity) return "0x7F800000";
  if (x === -Infinity) return "0xFF800000";
  const s = Math.fround(x).toExponential(9);
  return s.replace(/e([+-])(\d)$/, "e$10$2");
}

/** Builds the text of one function body, one SSA value per line. */
class Body {
  lines: string[] = [];
  #n = 0;
  readonly precision: string;

  constructor(precision: "HIGHEST" | "DEFAULT") {
    this.precision = `[#stablehlo<precision ${precision}>, #stablehlo<precision ${precision}>]`;
  }

  op(name: string, operands: string[], inTypes: string[], outType: string, attrs = "", region = ""): string {
    const v = `%v${this.#n++}`;
    const a = attrs ? ` <{${attrs}}>` : "";
    const r = region ? ` (${region})` : "";
    this.lines.push(
      `    ${v} = "stablehlo.${name}"(${operands.join(", ")})${a}${r} : (${
        inTypes.join(", ")
      }) -> ${outType}`,
    );
    return v;
  }

  constant(x: number, e: ElemType = "f32"): string {
    const lit = e === "i32" ? String(x) : f32Lit(x);
    return this.op("constant", [], [], ty([], e), `value = dense<${lit}> : ${ty([], e)}`);
  }

  /** Scalar `x` broadcast to `shape`. */
  splat(x: number, shape: number[], e: ElemType = "f32"): string {
    return this.broadcast(this.constant(x, e), [], shape, [], e);
  }

  broadcast(v: string, from: number[], to: number[], dims: number[], e: ElemType = "f32"): string {
    return this.op("broadcast_in_dim", [v], [ty(from, e)], ty(to, e), `broadcast_dimensions = ${arr(dims)}`);
  }

  binary(name: string, a: string, b: string, shape: number[], e: ElemType = "f32"): string {
    return this.op(name, [a, b], [ty(shape, e), ty(shape, e)], ty(shape, e));
  }

  unary(name: string, a: string, shape: number[], e: ElemType = "f32"): string {
    return this.op(name, [a], [ty(shape, e)], ty(shape, e));
  }

  reduce(v: string, shape: number[], dim: number, kind: "add" | "maximum"): string {
    const init = this.constant(kind === "add" ? 0 : -Infinity);
    const out = shape.filter((_, i) => i !== dim);
    const s = ty([], "f32");
    const region =
      `{\n    ^bb0(%a: ${s}, %b: ${s}):\n      %r = "stablehlo.${kind}"(%a, %b) : (${s}, ${s}) -> ${s}\n` +
      `      "stablehlo.return"(%r) : (${s}) -> ()\n    }`;
    return this.op(
      "reduce",
      [v, init],
      [ty(shape, "f32"), s],
      ty(out, "f32"),
      `dimensions = ${arr([dim])}`,
      region,
    );
  }

  dot(
    a: string,
    aShape: number[],
    aE: ElemType,
    b: string,
    bShape: number[],
    bE: ElemType,
    dims: { lb: number[]; rb: number[]; lc: number[]; rc: number[] },
    outShape: number[],
  ): string {
    const dn =
      `#stablehlo.dot<lhs_batching_dimensions = [${dims.lb}], rhs_batching_dimensions = [${dims.rb}], ` +
      `lhs_contracting_dimensions = [${dims.lc}], rhs_contracting_dimensions = [${dims.rc}]>`;
    return this.op(
      "dot_general",
      [a, b],
      [ty(aShape, aE), ty(bShape, bE)],
      ty(outShape, "f32"),
      `dot_dimension_numbers = ${dn}, precision_config = ${this.precision}`,
    );
  }
}

/** Emit `graph` for a concrete shape. */
export function emitStableHlo(
  graph: Graph,
  shape: { batch: number; seq: number },
  computeDtype: ComputeDtype = "float32",
): EmittedProgram {
  const { batch: B, seq: S } = shape;
  const bf16 = computeDtype === "bfloat16";
  const body = new Body(bf16 ? "DEFAULT" : "HIGHEST");
  const shapes = graph.nodes.map((n) => concreteShape(n.shape, B, S));
  const ropeNode = graph.nodes.find((n) => n.op === "rope");
  const half = ropeNode ? (shapes[ropeNode.id][3] / 2) : 0;
  const theta = ropeNode && ropeNode.op === "rope" ? ropeNode.theta : 0;
  if (graph.nodes.some((n) => n.op === "rope" && n.theta !== theta)) {
    throw new Error("StableHLO emitter: all rope nodes must share one theta");
  }
  const weights: EmittedProgram["weights"] = [];
  const vals: string[] = [];
  const elem: ElemType[] = [];
  const params = [
    `%ids: ${ty([B, S], "i32")}`,
    `%lengths: ${ty([B], "i32")}`,
    `%rope_cos: ${ty([S, Math.max(half, 1)], "f32")}`,
    `%rope_sin: ${ty([S, Math.max(half, 1)], "f32")}`,
  ];
  for (const n of graph.nodes) {
    const sh = shapes[n.id];
    const ins = n.inputs.map((i) => vals[i]);
    const inShape = (k: number) => shapes[n.inputs[k]];
    elem[n.id] = "f32";
    switch (n.op) {
      case "input":
        vals[n.id] = n.name === "ids" ? "%ids" : "%lengths";
        elem[n.id] = "i32";
        break;
      case "weight": {
        const dtype = bf16 && sh.length === 2 ? "bf16" : "f32";
        const arg = `%w${weights.length}`;
        weights.push({ name: n.name, shape: sh, dtype });
        params.push(`${arg}: ${ty(sh, dtype)}`);
        vals[n.id] = arg;
        elem[n.id] = dtype;
        break;
      }
      case "embed":
        vals[n.id] = emitEmbed(body, ins[0], inShape(0), elem[n.inputs[0]], ins[1], sh);
        break;
      case "linear":
        vals[n.id] = emitLinear(body, n, ins, shapes, elem, sh, bf16);
        break;
      case "rmsnorm":
        vals[n.id] = emitRmsNorm(body, ins[0], ins[1], sh, n.eps);
        break;
      case "add":
        vals[n.id] = body.binary("add", ins[0], ins[1], sh);
        break;
      case "mul":
        vals[n.id] = body.binary("multiply", ins[0], ins[1], sh);
        break;
      case "silu":
        vals[n.id] = body.binary("multiply", ins[0], body.unary("logistic", ins[0], sh), sh);
        break;
      case "reshape":
        vals[n.id] = body.op("reshape", [ins[0]], [ty(inShape(0), "f32")], ty(sh, "f32"));
        break;
      case "rope":
        vals[n.id] = emitRope(body, ins[0], sh);
        break;
      case "attention":
        vals[n.id] = emitAttention(body, ins, sh, inShape(1)[2], n.scale);
        break;
      default:
        throw new Error(`StableHLO emitter: unknown op ${(n as Node).op}`);
    }
  }
  const outs = graph.outputs.map((o) => ({ v: vals[o.node], t: ty(shapes[o.node], "f32") }));
  const text = [
    "module @actshard attributes {mhlo.num_partitions = 1 : i32} {",
    `  func.func public @main(${params.join(", ")}) -> (${outs.map((o) => o.t).join(", ")}) {`,
    ...body.lines,
    `    return ${outs.map((o) => o.v).join(", ")} : ${outs.map((o) => o.t).join(", ")}`,
    "  }",
    "}",
    "",
  ].join("\n");
  return { text, weights, outputs: graph.outputs.map((o) => o.name), ropeHalf: half, ropeTheta: theta };
}

function emitEmbed(
  b: Body,
  table: string,
  tShape: number[],
  tE: ElemType,
  ids: string,
  out: number[],
): string {
  const [, H] = tShape;
  const dn = "#stablehlo.gather<offset_dims = [2], collapsed_slice_dims = [0], start_index_map = [0], " +
    "index_vector_dim = 2>";
  const g = b.op(
    "gather",
    [table, ids],
    [ty(tShape, tE), ty(out.slice(0, 2), "i32")],
    ty(out, tE),
    `dimension_numbers = ${dn}, indices_are_sorted = false, slice_sizes = ${arr([1, H])}`,
  );
  return tE === "f32" ? g : b.op("convert", [g], [ty(out, tE)], ty(out, "f32"));
}

function emitLinear(
  b: Body,
  n: Node,
  ins: string[],
  shapes: number[][],
  elem: ElemType[],
  out: number[],
  bf16: boolean,
): string {
  const xShape = shapes[n.inputs[0]], wShape = shapes[n.inputs[1]];
  const wE = elem[n.inputs[1]];
  let x = ins[0];
  let xE: ElemType = "f32";
  if (bf16 && wE === "bf16") {
    x = b.op("convert", [x], [ty(xShape, "f32")], ty(xShape, "bf16"));
    xE = "bf16";
  }
  const r = xShape.length;
  let y = b.dot(x, xShape, xE, ins[1], wShape, wE, { lb: [], rb: [], lc: [r - 1], rc: [1] }, out);
  if (ins[2]) y = b.binary("add", y, b.broadcast(ins[2], [out.at(-1)!], out, [r - 1]), out);
  return y;
}

function emitRmsNorm(b: Body, x: string, w: string, sh: number[], eps: number): string {
  const r = sh.length, H = sh[r - 1];
  const rows = sh.slice(0, -1);
  const keep = rows.map((_, i) => i);
  const ss = b.reduce(b.binary("multiply", x, x, sh), sh, r - 1, "add");
  const mean = b.binary("multiply", ss, b.splat(1 / H, rows), rows);
  const inv = b.unary("rsqrt", b.binary("add", mean, b.splat(eps, rows), rows), rows);
  const y = b.binary("multiply", x, b.broadcast(inv, rows, sh, keep), sh);
  return b.binary("multiply", y, b.broadcast(w, [H], sh, [r - 1]), sh);
}

function emitRope(b: Body, x: string, sh: number[]): string {
  const [B, S, NH, D] = sh;
  const half = D / 2;
  const hs = [B, S, NH, half];
  const slice = (start: number) =>
    b.op(
      "slice",
      [x],
      [ty(sh, "f32")],
      ty(hs, "f32"),
      `start_indices = ${arr([0, 0, 0, start])}, limit_indices = ${arr([B, S, NH, start + half])}, ` +
        `strides = ${arr([1, 1, 1, 1])}`,
    );
  const x1 = slice(0), x2 = slice(half);
  const c = b.broadcast("%rope_cos", [S, half], hs, [1, 3]);
  const s = b.broadcast("%rope_sin", [S, half], hs, [1, 3]);
  const o1 = b.binary("subtract", b.binary("multiply", x1, c, hs), b.binary("multiply", x2, s, hs), hs);
  const o2 = b.binary("add", b.binary("multiply", x2, c, hs), b.binary("multiply", x1, s, hs), hs);
  return b.op("concatenate", [o1, o2], [ty(hs, "f32"), ty(hs, "f32")], ty(sh, "f32"), "dimension = 3 : i64");
}

function emitAttention(b: Body, ins: string[], sh: number[], NKV: number, scale: number): string {
  const [q, k, v, lengths] = ins;
  const [B, S, NQ, D] = sh;
  const G = NQ / NKV;
  const kvShape = [B, S, NKV, D];
  const q5Shape = [B, S, NKV, G, D];
  const q5 = b.op("reshape", [q], [ty(sh, "f32")], ty(q5Shape, "f32"));
  const sc = [B, NKV, S, G, S]; // [batch, kv head, query, group, key]
  let scores = b.dot(q5, q5Shape, "f32", k, kvShape, "f32", { lb: [0, 2], rb: [0, 2], lc: [4], rc: [3] }, sc);
  scores = b.binary("multiply", scores, b.splat(scale, sc), sc);
  // Mask: key j visible to query i iff j <= i and j < lengths[b].
  const iq = b.op("iota", [], [], ty(sc, "i32"), "iota_dimension = 2 : i64");
  const jk = b.op("iota", [], [], ty(sc, "i32"), "iota_dimension = 4 : i64");
  const len = b.broadcast(lengths, [B], sc, [0], "i32");
  const cmp = (x: string, y: string, dir: string) =>
    b.op(
      "compare",
      [x, y],
      [ty(sc, "i32"), ty(sc, "i32")],
      ty(sc, "i1"),
      `comparison_direction = #stablehlo<comparison_direction ${dir}>`,
    );
  const visible = b.binary("and", cmp(jk, iq, "LE"), cmp(jk, len, "LT"), sc, "i1");
  const sel = (t: string, f: string) =>
    b.op("select", [visible, t, f], [ty(sc, "i1"), ty(sc, "f32"), ty(sc, "f32")], ty(sc, "f32"));
  const masked = sel(scores, b.splat(-1e30, sc));
  const rows = [B, NKV, S, G];
  const mx = b.reduce(masked, sc, 4, "maximum");
  const e = sel(
    b.unary("exponential", b.binary("subtract", masked, b.broadcast(mx, rows, sc, [0, 1, 2, 3]), sc), sc),
    b.splat(0, sc),
  );
  // A row with no visible key sums to 0: its probabilities (and output) stay 0.
  const sum = b.binary("maximum", b.reduce(e, sc, 4, "add"), b.splat(1e-30, rows), rows);
  const p = b.binary("divide", e, b.broadcast(sum, rows, sc, [0, 1, 2, 3]), sc);
  const o5 = [B, NKV, S, G, D];
  const o = b.dot(p, sc, "f32", v, kvShape, "f32", { lb: [0, 1], rb: [0, 2], lc: [4], rc: [1] }, o5);
  const t = b.op(
    "transpose",
    [o],
    [ty(o5, "f32")],
    ty([B, S, NKV, G, D], "f32"),
    `permutation = ${arr([0, 2, 1, 3, 4])}`,
  );
  return b.op("reshape", [t], [ty([B, S, NKV, G, D], "f32")], ty(sh, "f32"));
}

/** Host-side RoPE tables `[seq, half]` (cos, sin of `s · theta^(-2i/D)`, computed in float64). */
export function ropeTables(
  seq: number,
  half: number,
  theta: number,
): { cos: Float32Array; sin: Float32Array } {
  const w = Math.max(half, 1);
  const cos = new Float32Array(seq * w), sin = new Float32Array(seq * w);
  if (half === 0) return { cos, sin };
  const D = 2 * half;
  for (let s = 0; s < seq; s++) {
    for (let i = 0; i < half; i++) {
      const a = s / Math.pow(theta, (2 * i) / D);
      cos[s * w + i] = Math.cos(a);
      sin[s * w + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}
