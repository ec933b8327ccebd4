/**
 * Where PJRT plugins live: `--pjrt_plugin PATH`, then `PJRT_PLUGIN_LIBRARY_PATH`, `TPU_LIBRARY_PATH`, then
 * the usual Python install locations (`libtpu/libtpu.so` from the `libtpu` wheel,
 * `jax_plugins/xla_cuda13|12/xla_cuda_plugin.so` from `jax-cuda13|12-pjrt`). Not found → one
 * {@link ActshardError} listing every place it looked.
 *
 * @example
 * ```ts
 * import { findPjrtPlugin } from "./discover.ts";
 * try { console.log(findPjrtPlugin()); } catch (e) { console.log(String(e)); }
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../../errors.ts";

const PLUGIN_FILES = [
  "libtpu/libtpu.so",
  "jax_plugins/xla_cuda13/xla_cuda_plugin.so",
  "jax_plugins/xla_cuda12/xla_cuda_plugin.so",
];

function isFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

function subdirs(dir: string, re: RegExp): string[] {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isDirectory && re.test(e.name)).map((e) =>
      join(dir, e.name)
    )
      .sort().reverse();
  } catch {
    return [];
  }
}

/** Python package directories worth searching (existing ones only), most specific first. */
export function pythonPackageDirs(env: { get(k: string): string | undefined } = Deno.env): string[] {
  const dirs: string[] = [];
  for (const p of (env.get("PYTHONPATH") ?? "").split(":").filter(Boolean)) dirs.push(p);
  const prefixes = [env.get("VIRTUAL_ENV"), env.get("CONDA_PREFIX"), "/usr/local", "/usr", "/opt/conda"];
  const home = env.get("HOME");
  if (home) prefixes.push(join(home, ".local"), ...subdirs(join(home, ".pyenv", "versions"), /^\d/));
  for (const pre of prefixes.filter((p): p is string => !!p)) {
    for (const lib of [join(pre, "lib"), join(pre, "lib64")]) {
      for (const py of subdirs(lib, /^python3/)) {
        dirs.push(join(py, "site-packages"), join(py, "dist-packages"));
      }
    }
  }
  dirs.push("/usr/lib/python3/dist-packages");
  return [...new Set(dirs)].filter((d) => subdirs(d, /./).length > 0 || isFile(d));
}

/** Every path tried, in order (for the not-found message and `--help`). */
export function pjrtPluginCandidates(env: { get(k: string): string | undefined } = Deno.env): string[] {
  const c: string[] = [];
  for (const k of ["PJRT_PLUGIN_LIBRARY_PATH", "TPU_LIBRARY_PATH"]) {
    const v = env.get(k);
    if (v) c.push(v);
  }
  for (const d of pythonPackageDirs(env)) for (const f of PLUGIN_FILES) c.push(join(d, f));
  return c;
}

/**
 * The plugin to load. An explicit path must exist; otherwise the first existing candidate wins.
 * Throws an ActshardError naming every place it looked.
 */
export function findPjrtPlugin(
  explicit?: string | null,
  env: { get(k: string): string | undefined } = Deno.env,
): string {
  if (explicit) {
    if (isFile(explicit)) return explicit;
    throw new ActshardError(`PJRT plugin not found: ${explicit}`, {
      where: "--pjrt_plugin",
      hint: "pass the path of libtpu.so or xla_cuda_plugin.so",
    });
  }
  const tried = pjrtPluginCandidates(env);
  const hit = tried.find(isFile);
  if (hit) return hit;
  const looked = [
    "--pjrt_plugin",
    "$PJRT_PLUGIN_LIBRARY_PATH",
    "$TPU_LIBRARY_PATH",
    ...new Set(tried.map((p) => p.replace(/\/(libtpu|jax_plugins)\/.*$/, "/{libtpu,jax_plugins/xla_cuda*}"))),
  ];
  throw new ActshardError(`no PJRT plugin found (looked in: ${looked.join(", ")})`, {
    hint:
      "pip install libtpu (TPU) or jax-cuda13-pjrt (GPU), or pass --pjrt_plugin PATH; --backend onnx runs on CPU",
  });
}

/**
 * The CUDA plugin's needs: the `nvidia-*` wheels' libraries next to it (preloaded so the plugin's own
 * dlopen calls find them by soname) and `XLA_FLAGS=--xla_gpu_cuda_data_dir` (ptxas, libdevice) when the
 * `nvidia/cuda_nvcc` wheel is there. Returns what it did, for a verbose line; never throws.
 */
export function prepareCudaPlugin(pluginPath: string): string[] {
  const m = /^(.*)\/jax_plugins\/xla_cuda\d+\/[^/]+$/.exec(pluginPath);
  if (!m) return [];
  const site = m[1];
  const notes: string[] = [];
  const nvidia = join(site, "nvidia");
  const libs = subdirs(nvidia, /./).flatMap((d) => {
    try {
      return [...Deno.readDirSync(join(d, "lib"))].filter((e) => /\.so(\.\d+)*$/.test(e.name)).map((e) =>
        join(d, "lib", e.name)
      );
    } catch {
      return [];
    }
  });
  // Dependencies between the wheels are unknown here: retry the failures until a pass loads nothing new.
  let pending = libs, loaded = 0;
  for (let pass = 0; pass < 6 && pending.length; pass++) {
    const failed: string[] = [];
    for (const lib of pending) {
      try {
        Deno.dlopen(lib, {});
        loaded++;
      } catch {
        failed.push(lib);
      }
    }
    if (failed.length === pending.length) break;
    pending = failed;
  }
  if (libs.length) notes.push(`preloaded ${loaded}/${libs.length} CUDA libraries from ${nvidia}`);
  const nvcc = join(nvidia, "cuda_nvcc");
  const flags = Deno.env.get("XLA_FLAGS") ?? "";
  if (!flags.includes("--xla_gpu_cuda_data_dir") && subdirs(nvcc, /^(bin|nvvm)$/).length) {
    Deno.env.set("XLA_FLAGS", `${flags} --xla_gpu_cuda_data_dir=${nvcc}`.trim());
    notes.push(`XLA_FLAGS=${Deno.env.get("XLA_FLAGS")}`);
  }
  return notes;
}
