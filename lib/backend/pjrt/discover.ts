/**
 * Where PJRT plugins live: `--pjrt_plugin PATH`, then `PJRT_PLUGIN_LIBRARY_PATH`, `TPU_LIBRARY_PATH` (each must
 * name an existing file), then the usual Python install locations: accelerators first
 * (`libtpu/libtpu.so` from the `libtpu` wheel — only on a host with TPU hardware —,
 * `jax_plugins/xla_cuda13|12/xla_cuda_plugin.so` from `jax-cuda13|12-pjrt`), then XLA CPU plugins
 * (`lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so`, `xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so`). Not found → one
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
import { isFileSync as isFile } from "../../util/is_file.ts";

/** What a plugin runs on. */
export type PluginKind = "tpu" | "cuda" | "cpu" | "other";

/** Plugin files under a Python package directory, in preference order, with their kind. */
export const PLUGIN_FILES: readonly { file: string; kind: PluginKind }[] = [
  { file: "libtpu/libtpu.so", kind: "tpu" },
  { file: "jax_plugins/xla_cuda13/xla_cuda_plugin.so", kind: "cuda" },
  { file: "jax_plugins/xla_cuda12/xla_cuda_plugin.so", kind: "cuda" },
  // XLA CPU plugins: the newest PJRT C API first (0.115, then 0.81; docs/pjrt.md)
  { file: "lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so", kind: "cpu" },
  { file: "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so", kind: "cpu" },
];

/** The kind of plugin at `path`, from its file name. */
export function pluginKind(path: string): PluginKind {
  const hit = PLUGIN_FILES.find((p) => path.endsWith(`/${p.file}`));
  if (hit) return hit.kind;
  const base = path.slice(path.lastIndexOf("/") + 1);
  if (/^libtpu/.test(base)) return "tpu";
  if (/cuda/.test(base)) return "cuda";
  if (/cpu/.test(base)) return "cpu";
  return "other";
}

/** Google's PCI vendor id: TPU chips show up under /sys/bus/pci/devices with it (JAX checks the same). */
export const GOOGLE_PCI_VENDOR = "0x1ae0";

/** Whether this host has TPU hardware: a PCI device with vendor {@link GOOGLE_PCI_VENDOR}. */
export function tpuHardwarePresent(pciDevices = "/sys/bus/pci/devices"): boolean {
  try {
    for (const e of Deno.readDirSync(pciDevices)) {
      try {
        if (Deno.readTextFileSync(join(pciDevices, e.name, "vendor")).trim() === GOOGLE_PCI_VENDOR) {
          return true;
        }
      } catch { /* a device without a readable vendor file */ }
    }
  } catch { /* no sysfs (not Linux, or a sandbox) */ }
  return false;
}

/** Options of {@link findPjrtPlugin}. */
export interface FindPluginOptions {
  /** Only plugins of these kinds are searched for (explicit paths are taken as given). Default: all. */
  kinds?: readonly PluginKind[];
  /** Where PCI devices are listed (tests). */
  pciDevices?: string;
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
  // The prefixes of the interpreters on PATH too (a venv's or conda's bin/), where pip put the wheels.
  const fromPath = (env.get("PATH") ?? "").split(":").filter((p) => /\/bin\/?$/.test(p)).map((p) =>
    p.replace(/\/bin\/?$/, "")
  );
  const prefixes = [
    env.get("VIRTUAL_ENV"),
    env.get("CONDA_PREFIX"),
    ...fromPath,
    "/usr/local",
    "/usr",
    "/opt/conda",
  ];
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

/**
 * Every path searched in Python package directories, in order (for the not-found message and `--help`): all
 * of {@link PLUGIN_FILES} whose kind is in `kinds`, libtpu only when the host has TPU hardware.
 */
export function pjrtPluginCandidates(
  env: { get(k: string): string | undefined } = Deno.env,
  opts: FindPluginOptions = {},
): string[] {
  const tpu = tpuHardwarePresent(opts.pciDevices);
  const files = PLUGIN_FILES.filter((p) =>
    (!opts.kinds || opts.kinds.includes(p.kind)) && (p.kind !== "tpu" || tpu)
  );
  const c: string[] = [];
  for (const d of pythonPackageDirs(env)) for (const f of files) c.push(join(d, f.file));
  return c;
}

/**
 * Fail fast, with our own line, when `path` is libtpu and this host has no TPU: libtpu would otherwise retry
 * the cloud metadata server for minutes before failing with "No jellyfish device found".
 */
export function checkTpuHost(path: string, pciDevices?: string): void {
  if (pluginKind(path) !== "tpu" || tpuHardwarePresent(pciDevices)) return;
  throw new ActshardError(
    `no TPU found on this host (no PCI device with Google's vendor id ${GOOGLE_PCI_VENDOR})`,
    {
      where: path,
      hint:
        "run on a TPU VM; on CPU use --backend onnx, or an XLA CPU plugin (pip install lammps-jax-pjrt-cpu)",
    },
  );
}

/**
 * The plugin to load. An explicit path must exist; otherwise the first existing candidate wins.
 * Throws an ActshardError naming every place it looked.
 *
 * @example Usage
 * ```ts
 * import { findPjrtPlugin } from "./discover.ts";
 * try {
 *   console.log(findPjrtPlugin(null, Deno.env, { kinds: ["cpu"] })); // e.g. …/xla_cpu_pjrt.so
 * } catch (e) {
 *   console.log(String(e)); // PJRT plugin not found …, naming every place it looked
 * }
 * ```
 */
export function findPjrtPlugin(
  explicit?: string | null,
  env: { get(k: string): string | undefined } = Deno.env,
  opts: FindPluginOptions = {},
): string {
  if (explicit) {
    if (isFile(explicit)) return explicit;
    throw new ActshardError(`PJRT plugin not found: ${explicit}`, {
      where: "--pjrt_plugin",
      hint: "pass the path of libtpu.so, xla_cuda_plugin.so or an XLA CPU plugin",
    });
  }
  // A variable naming a plugin is a decision: a missing file is an error, not a reason to look elsewhere.
  for (const k of ["PJRT_PLUGIN_LIBRARY_PATH", "TPU_LIBRARY_PATH"]) {
    const v = env.get(k);
    if (!v) continue;
    if (!isFile(v)) {
      throw new ActshardError(`PJRT plugin not found: ${v}`, {
        where: `$${k}`,
        hint: `point ${k} at an existing plugin .so, or unset it to search the usual places`,
      });
    }
    if (!opts.kinds || opts.kinds.includes(pluginKind(v))) return v;
  }
  const tried = pjrtPluginCandidates(env, opts);
  const hit = tried.find(isFile);
  if (hit) return hit;
  const looked = [
    "--pjrt_plugin",
    "$PJRT_PLUGIN_LIBRARY_PATH",
    "$TPU_LIBRARY_PATH",
    ...new Set(
      tried.map((p) =>
        p.replace(
          /\/(libtpu|jax_plugins|lammps_jax_pjrt_cpu|xla_plugins)\/.*$/,
          "/{libtpu,jax_plugins,lammps_jax_pjrt_cpu,xla_plugins}/…",
        )
      ),
    ),
  ];
  throw new ActshardError(`no PJRT plugin found (looked in: ${looked.join(", ")})`, {
    hint: "pip install libtpu (TPU), jax-cuda13-pjrt (GPU) or lammps-jax-pjrt-cpu (XLA CPU), " +
      "or pass --pjrt_plugin PATH; --backend onnx runs on CPU",
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
