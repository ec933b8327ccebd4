/**
 * The numpy objects the restricted unpickler (pickle_reader.ts) may build: the allow-list of globals, and the
 * inert stand-ins that `_reconstruct`, `numpy.dtype` and BUILD produce. Nothing here executes anything.
 *
 * @example
 * ```ts
 * import { callNumpy, resolveGlobal } from "./pickle_numpy.ts";
 * const nd = resolveGlobal("numpy", "ndarray", "x.pkl");
 * const a = callNumpy(resolveGlobal("numpy.core.multiarray", "_reconstruct", "x.pkl"), [nd, [0], "b"], "x.pkl");
 * // a is an empty NdArray until BUILD (buildNumpy) gives it shape, dtype and bytes
 * ```
 */
import { ActshardError } from "../errors.ts";

/** A numpy array as found in a pickle. */
export class NdArray {
  shape: number[] = [];
  /** numpy type code without byte order, e.g. "f4", "f2". */
  descr = "";
  byteorder = "<";
  fortran = false;
  data: Uint8Array = new Uint8Array(0);
}

/** A `numpy.dtype(...)` call's result: type code and byte order. */
export class DType {
  constructor(public descr: string) {}
  byteorder = "=";
}

/** A resolved (allowed) global, by dotted name. */
export class Global {
  constructor(public name: string) {}
}

/** The only globals a shard may name. */
export const ALLOWED: ReadonlySet<string> = new Set([
  "numpy.core.multiarray._reconstruct",
  "numpy._core.multiarray._reconstruct",
  "numpy.ndarray",
  "numpy.dtype",
  "_codecs.encode",
]);

function fail(where: string, msg: string): never {
  throw new ActshardError(msg, {
    where,
    kind: "data",
    hint: "the shard is corrupt or not an activation shard",
  });
}

/** A global the pickle names: only {@link ALLOWED} ones resolve; anything else is refused before use. */
export function resolveGlobal(module: string, name: string, where: string): Global {
  const full = `${module}.${name}`;
  if (!ALLOWED.has(full)) {
    throw new ActshardError(`refusing to unpickle global "${full}": only numpy array globals are allowed`, {
      where,
      kind: "data",
      hint: "this file is not an activation shard (or is malicious); nothing was executed",
    });
  }
  return new Global(full);
}

/** REDUCE: `fn(*args)` for the allowed globals, building inert values only. */
export function callNumpy(fn: unknown, args: unknown, where: string): unknown {
  if (!(fn instanceof Global) || !Array.isArray(args)) fail(where, "pickle REDUCE on a non-callable");
  if (fn.name.endsWith("._reconstruct")) {
    if (!(args[0] instanceof Global) || args[0].name !== "numpy.ndarray") {
      fail(where, "_reconstruct of a non-ndarray");
    }
    return new NdArray();
  }
  if (fn.name === "numpy.dtype") return new DType(String(args[0]));
  if (fn.name === "_codecs.encode") {
    if (typeof args[0] !== "string" || !/^latin-?1$/.test(String(args[1] ?? ""))) {
      fail(where, "_codecs.encode with unexpected arguments");
    }
    const s = args[0];
    const b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
    return b;
  }
  fail(where, `cannot call ${fn.name}`);
}

/** BUILD: set an ndarray's or dtype's state. */
export function buildNumpy(obj: unknown, state: unknown, where: string): void {
  if (obj instanceof DType && Array.isArray(state)) {
    obj.byteorder = String(state[1]);
    return;
  }
  if (obj instanceof NdArray && Array.isArray(state)) {
    const [, shape, dt, fortran, data] = state;
    if (!(dt instanceof DType) || !Array.isArray(shape)) fail(where, "bad ndarray state");
    obj.shape = shape.map(Number);
    const m = dt.descr.match(/^([<>|=]?)(\w+)$/);
    obj.descr = m ? m[2] : dt.descr;
    obj.byteorder = m && m[1] ? m[1] : dt.byteorder;
    obj.fortran = fortran === true;
    if (!(data instanceof Uint8Array)) fail(where, "ndarray data is not bytes");
    obj.data = data;
    return;
  }
  fail(where, "pickle BUILD on an unsupported object");
}
