/**
 * Test support: a small evaluator for the StableHLO subset that lib/backend/pjrt/emit.ts produces (generic op
 * syntax, one `@main`). It parses the text independently of the emitter and computes in f32 storage with f64
 * accumulation, so CI can check the emitted programs numerically against the reference interpreter without a
 * PJRT plugin. Unsupported syntax or ops throw — the evaluator never guesses.
 *
 * Supported ops: constant (scalar), iota, broadcast_in_dim, reshape, transpose, slice, concatenate, add,
 * subtract, multiply, divide, maximum, and, logistic, exponential, rsqrt, convert (f32/bf16/i32), compare,
 * select, reduce (add/maximum), dot_general, gather (row lookup: offset_dims [2], collapsed [0]).
 */

/** A tensor value. bf16 values are stored in a Float32Array (already rounded); i1 as 0/1 in a Uint8Array. */
export interface HloTensor {
  shape: number[];
  elem: "f32" | "bf16" | "i32" | "i1";
  data: Float32Array | Int32Array | Uint8Array;
}

interface Stmt {
  result: string;
  op: string;
  operands: string[];
  attrs: string;
  region: string;
  inTypes: string[];
  outType: string;
}

/** A parsed `@main`. */
export interface HloProgram {
  params: { name: string; type: string }[];
  stmts: Stmt[];
  returns: string[];
}

function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = "";
  for (const ch of s) {
    if ("<([{".includes(ch)) depth++;
    if (">)]}".includes(ch)) depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** Parse `tensor<2x3xf32>` into shape and element type. */
export function parseType(t: string): { shape: number[]; elem: HloTensor["elem"] } {
  const m = /^tensor<(.*)>$/.exec(t.trim());
  if (!m) throw new Error(`evaluator: not a tensor type: ${t}`);
  const parts = m[1].split("x");
  const elem = parts.pop()!;
  if (!["f32", "bf16", "i32", "i1"].includes(elem)) throw new Error(`evaluator: element type ${elem}`);
  return { shape: parts.map(Number), elem: elem as HloTensor["elem"] };
}

/** Parse the emitted module text. */
export function parseProgram(text: string): HloProgram {
  const head = /func\.func public @main\(([^)]*)\)\s*->\s*\(([^)]*)\)\s*\{/.exec(text);
  if (!head) throw new Error("evaluator: no `func.func public @main(...) -> (...)`");
  const params = splitTop(head[1]).map((p) => {
    const [name, type] = p.split(/:\s*/, 2);
    return { name: name.trim(), type: type.trim() };
  });
  const lines = text.slice(head.index + head[0].length).split("\n");
  const stmts: Stmt[] = [];
  let returns: string[] = [];
  let buf = "";
  let depth = 0;
  for (const line of lines) {
    const t = line.trim();
    if (!buf && t.startsWith("return ")) {
      returns = t.slice(7, t.indexOf(" : ")).split(",").map((x) => x.trim());
      break;
    }
    if (!t) continue;
    buf += (buf ? "\n" : "") + t;
    for (const ch of t) {
      if (ch === "{" || ch === "(") depth++;
      if (ch === "}" || ch === ")") depth--;
    }
    if (depth === 0) {
      stmts.push(parseStmt(buf));
      buf = "";
    }
  }
  if (!returns.length) throw new Error("evaluator: no return");
  return { params, stmts, returns };
}

function parseStmt(s: string): Stmt {
  const m = /^(%[\w]+) = "stablehlo\.(\w+)"\(([^)]*)\)/.exec(s);
  if (!m) throw new Error(`evaluator: cannot parse: ${s.slice(0, 120)}`);
  let rest = s.slice(m[0].length);
  let attrs = "", region = "";
  if (rest.startsWith(" <{")) {
    let depth = 0, i = 1;
    for (; i < rest.length; i++) {
      if (rest[i] === "{") depth++;
      if (rest[i] === "}" && --depth === 0) break;
    }
    attrs = rest.slice(3, i);
    rest = rest.slice(i + 2);
  }
  if (rest.startsWith(" ({")) {
    const end = rest.lastIndexOf("})");
    region = rest.slice(3, end);
    rest = rest.slice(end + 2);
  }
  const sig = /^ : \((.*)\) -> (.+)$/.exec(rest);
  if (!sig) throw new Error(`evaluator: bad signature: ${rest.slice(0, 120)}`);
  return {
    result: m[1],
    op: m[2],
    operands: m[3].split(",").map((x) => x.trim()).filter(Boolean),
    attrs,
    region,
    inTypes: splitTop(sig[1]),
    outType: sig[2].trim(),
  };
}

function ints(attrs: string, key: string): number[] {
  const m = new RegExp(`${key} = (?:array<i64(?:: ([-\\d, ]*))?>|\\[([-\\d, ]*)\\])`).exec(attrs);
  if (!m) throw new Error(`evaluator: attribute ${key} missing in {${attrs}}`);
  const body = m[1] ?? m[2] ?? "";
  return body.trim() ? body.split(",").map((x) => Number(x.trim())) : [];
}

function intAttr(attrs: string, key: string): number {
  const m = new RegExp(`${key} = (-?\\d+) : i64`).exec(attrs);
  if (!m) throw new Error(`evaluator: attribute ${key} missing`);
  return Number(m[1]);
}

function strides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** Round to bfloat16 (nearest even), returned as a number. */
export function roundBf16(x: number): number {
  F32[0] = x;
  if (Number.isNaN(x)) return x;
  const u = U32[0];
  U32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return F32[0];
}

function alloc(shape: number[], elem: HloTensor["elem"]): HloTensor {
  const n = size(shape);
  const data = elem === "i32" ? new Int32Array(n) : elem === "i1" ? new Uint8Array(n) : new Float32Array(n);
  return { shape, elem, data };
}

/** Offsets (in elements) of every multi-index over `dims` of a tensor with `st` strides, row-major. */
function groupOffsets(shape: number[], st: number[], dims: number[]): Int32Array {
  const n = dims.reduce((a, d) => a * shape[d], 1);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i, off = 0;
    for (let k = dims.length - 1; k >= 0; k--) {
      const d = dims[k];
      off += (rem % shape[d]) * st[d];
      rem = Math.floor(rem / shape[d]);
    }
    out[i] = off;
  }
  return out;
}

function evalStmt(s: Stmt, ins: HloTensor[]): HloTensor {
  const out = parseType(s.outType);
  const r = alloc(out.shape, out.elem);
  const o = r.data;
  const n = o.length;
  const x = ins[0]?.data, y = ins[1]?.data;
  const round = out.elem === "bf16" ? roundBf16 : (v: number) => v;
  switch (s.op) {
    case "constant": {
      const m = /dense<([^>]+)>/.exec(s.attrs);
      if (!m || n !== 1) throw new Error(`evaluator: only scalar constants: ${s.attrs}`);
      const lit = m[1].trim();
      if (lit.startsWith("0x")) {
        U32[0] = parseInt(lit, 16);
        o[0] = F32[0];
      } else o[0] = Number(lit);
      return r;
    }
    case "iota": {
      const d = intAttr(s.attrs, "iota_dimension");
      const st = strides(out.shape);
      for (let i = 0; i < n; i++) o[i] = Math.floor(i / st[d]) % out.shape[d];
      return r;
    }
    case "broadcast_in_dim": {
      const dims = ints(s.attrs, "broadcast_dimensions");
      const src = ins[0], sst = strides(src.shape), ost = strides(out.shape);
      for (let i = 0; i < n; i++) {
        let off = 0;
        dims.forEach((d, k) => {
          const idx = Math.floor(i / ost[d]) % out.shape[d];
          off += (src.shape[k] === 1 ? 0 : idx) * sst[k];
        });
        o[i] = x[off];
      }
      return r;
    }
    case "reshape":
      o.set(x);
      return r;
    case "transpose": {
      const perm = ints(s.attrs, "permutation");
      const sst = strides(ins[0].shape), ost = strides(out.shape);
      for (let i = 0; i < n; i++) {
        let off = 0;
        for (let k = 0; k < perm.length; k++) off += (Math.floor(i / ost[k]) % out.shape[k]) * sst[perm[k]];
        o[i] = x[off];
      }
      return r;
    }
    case "slice": {
      const start = ints(s.attrs, "start_indices"), step = ints(s.attrs, "strides");
      const sst = strides(ins[0].shape), ost = strides(out.shape);
      for (let i = 0; i < n; i++) {
        let off = 0;
        for (let k = 0; k < out.shape.length; k++) {
          off += (start[k] + (Math.floor(i / ost[k]) % out.shape[k]) * step[k]) * sst[k];
        }
        o[i] = x[off];
      }
      return r;
    }
    case "concatenate": {
      const d = intAttr(s.attrs, "dimension");
      const ost = strides(out.shape);
      let base = 0;
      for (const t of ins) {
        const tst = strides(t.shape);
        for (let i = 0; i < t.data.length; i++) {
          let off = 0;
          for (let k = 0; k < t.shape.length; k++) {
            const idx = Math.floor(i / tst[k]) % t.shape[k];
            off += (k === d ? idx + base : idx) * ost[k];
          }
          o[off] = t.data[i];
        }
        base += t.shape[d];
      }
      return r;
    }
    case "add":
      for (let i = 0; i < n; i++) o[i] = round(x[i] + y[i]);
      return r;
    case "subtract":
      for (let i = 0; i < n; i++) o[i] = round(x[i] - y[i]);
      return r;
    case "multiply":
      for (let i = 0; i < n; i++) o[i] = round(x[i] * y[i]);
      return r;
    case "divide":
      for (let i = 0; i < n; i++) o[i] = round(x[i] / y[i]);
      return r;
    case "maximum":
      for (let i = 0; i < n; i++) o[i] = Math.max(x[i], y[i]);
      return r;
    case "and":
      for (let i = 0; i < n; i++) o[i] = x[i] & y[i];
      return r;
    case "logistic":
      for (let i = 0; i < n; i++) o[i] = round(1 / (1 + Math.exp(-x[i])));
      return r;
    case "exponential":
      for (let i = 0; i < n; i++) o[i] = round(Math.exp(x[i]));
      return r;
    case "rsqrt":
      for (let i = 0; i < n; i++) o[i] = round(1 / Math.sqrt(x[i]));
      return r;
    case "convert":
      for (let i = 0; i < n; i++) o[i] = round(x[i]);
      return r;
    case "compare": {
      const dir = /comparison_direction (\w+)/.exec(s.attrs)?.[1];
      const f: Record<string, (a: number, b: number) => boolean> = {
        LT: (a, b) => a < b,
        LE: (a, b) => a <= b,
        GT: (a, b) => a > b,
        GE: (a, b) => a >= b,
        EQ: (a, b) => a === b,
        NE: (a, b) => a !== b,
      };
      if (!dir || !f[dir]) throw new Error(`evaluator: comparison ${dir}`);
      for (let i = 0; i < n; i++) o[i] = f[dir](x[i], y[i]) ? 1 : 0;
      return r;
    }
    case "select": {
      const z = ins[2].data;
      for (let i = 0; i < n; i++) o[i] = x[i] ? y[i] : z[i];
      return r;
    }
    case "reduce": {
      const [d] = ints(s.attrs, "dimensions");
      const kind = /"stablehlo\.(add|maximum)"/.exec(s.region)?.[1];
      if (!kind) throw new Error(`evaluator: reduce body ${s.region}`);
      const src = ins[0], len = src.shape[d], st = strides(src.shape)[d];
      const outer = size(src.shape.slice(0, d));
      const init = ins[1].data[0];
      for (let a = 0; a < outer; a++) {
        for (let b = 0; b < st; b++) {
          let acc = init;
          const base = a * len * st + b;
          for (let k = 0; k < len; k++) {
            const v = x[base + k * st];
            acc = kind === "add" ? acc + v : Math.max(acc, v);
          }
          o[a * st + b] = acc;
        }
      }
      return r;
    }
    case "dot_general": {
      const lb = ints(s.attrs, "lhs_batching_dimensions"), rb = ints(s.attrs, "rhs_batching_dimensions");
      const lc = ints(s.attrs, "lhs_contracting_dimensions"),
        rc = ints(s.attrs, "rhs_contracting_dimensions");
      const [L, R] = ins;
      const lst = strides(L.shape), rst = strides(R.shape);
      const lf = L.shape.map((_, i) => i).filter((i) => !lb.includes(i) && !lc.includes(i));
      const rf = R.shape.map((_, i) => i).filter((i) => !rb.includes(i) && !rc.includes(i));
      const bL = groupOffsets(L.shape, lst, lb), bR = groupOffsets(R.shape, rst, rb);
      const fL = groupOffsets(L.shape, lst, lf), fR = groupOffsets(R.shape, rst, rf);
      const cL = groupOffsets(L.shape, lst, lc), cR = groupOffsets(R.shape, rst, rc);
      let i = 0;
      for (let b = 0; b < bL.length; b++) {
        for (let p = 0; p < fL.length; p++) {
          const lo = bL[b] + fL[p];
          for (let q = 0; q < fR.length; q++) {
            const ro = bR[b] + fR[q];
            let acc = 0;
            for (let c = 0; c < cL.length; c++) acc += x[lo + cL[c]] * y[ro + cR[c]];
            o[i++] = acc;
          }
        }
      }
      return r;
    }
    case "gather": {
      const want =
        "offset_dims = [2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2";
      if (!s.attrs.includes(want)) throw new Error(`evaluator: only row gathers: ${s.attrs}`);
      const [table, ids] = ins;
      const [V, H] = table.shape;
      for (let t = 0; t < ids.data.length; t++) {
        const id = Math.min(Math.max(ids.data[t], 0), V - 1); // gather clamps start indices
        for (let j = 0; j < H; j++) o[t * H + j] = table.data[id * H + j];
      }
      return r;
    }
    default:
      throw new Error(`evaluator: unsupported op stablehlo.${s.op}`);
  }
}

/**
 * Run `@main` on `args` (in parameter order; shapes and element types are checked); returns the results.
 *
 * @example
 * ```ts
 * import { evaluateStableHlo } from "./stablehlo_eval.ts";
 * declare const text: string; // a StableHLO module, e.g. emitStableHlo(graph, shape).text
 * const [out] = evaluateStableHlo(text, [{ shape: [2], elem: "f32", data: new Float32Array([1, 2]) }]);
 * ```
 */
export function evaluateStableHlo(text: string | HloProgram, args: HloTensor[]): HloTensor[] {
  const prog = typeof text === "string" ? parseProgram(text) : text;
  if (args.length !== prog.params.length) {
    throw new Error(`evaluator: ${args.length} arguments for ${prog.params.length} parameters`);
  }
  const env = new Map<string, HloTensor>();
  prog.params.forEach((p, i) => {
    const t = parseType(p.type);
    const a = args[i];
    if (t.elem !== a.elem || t.shape.join() !== a.shape.join() || a.data.length !== size(t.shape)) {
      throw new Error(`evaluator: argument ${p.name} is ${a.elem}[${a.shape}], expected ${p.type}`);
    }
    env.set(p.name, a);
  });
  for (const s of prog.stmts) {
    const ins = s.operands.map((name) => {
      const v = env.get(name);
      if (!v) throw new Error(`evaluator: ${name} used before definition`);
      return v;
    });
    ins.forEach((v, i) => {
      const t = parseType(s.inTypes[i]);
      if (t.shape.join() !== v.shape.join() || t.elem !== v.elem) {
        throw new Error(
          `evaluator: ${s.result} operand ${i} is ${v.elem}[${v.shape}], typed ${s.inTypes[i]}`,
        );
      }
    });
    env.set(s.result, evalStmt(s, ins));
  }
  return prog.returns.map((n) => env.get(n)!);
}
