/**
 * Offline checks of the Kubernetes manifests in deploy/k8s/: each parses as YAML, passes the Kubernetes OpenAPI
 * schema (npm `kubernetes-models`' generated validators: types, enums, required fields), has no unknown field
 * names (the same object checked by TypeScript's excess-property rule against the models' `IJob` type — the
 * "strict" check kubeconform would do), and carries the fields scale-out depends on.
 */
import { assert, assertEquals } from "./_assert.ts";
import { REPO_ROOT } from "./_shared.ts";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { Job } from "kubernetes-models/batch/v1/Job";
import type { IJob } from "kubernetes-models/batch/v1/Job";
import { type ExtractConfig, parseExtractFlags } from "../lib/cli/extract_flags.ts";

const DIR = join(REPO_ROOT, "deploy", "k8s");
const EXTRACT = ["extract-tpu.yaml", "extract-gpu.yaml"];
const ALL = [...EXTRACT, "merge.yaml"];

function loadJob(file: string): IJob {
  const docs = parseAllDocuments(Deno.readTextFileSync(join(DIR, file)));
  assert(Array.isArray(docs) && docs.length === 1, `${file}: expected one YAML document`);
  const doc = docs[0];
  assertEquals(doc.errors.map((e) => e.message), [], `${file}: YAML errors`);
  const obj = doc.toJS() as IJob;
  assertEquals([obj.apiVersion, obj.kind], ["batch/v1", "Job"], file);
  return obj;
}

Deno.test("k8s: manifests pass the Kubernetes schema (kubernetes-models validators)", () => {
  for (const f of ALL) {
    try {
      new Job(loadJob(f)).validate();
    } catch (e) {
      throw new Error(`${f}: ${e instanceof Error ? e.message : e}`);
    }
  }
});

/** `deno check FILE` in the repo (for its node_modules), output piped. */
function denoCheck(file: string): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: ["check", file],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
}

Deno.test("k8s: manifests have no unknown fields (TypeScript excess-property check against IJob)", async () => {
  await Deno.mkdir(join(REPO_ROOT, ".cache"), { recursive: true });
  const dir = await Deno.makeTempDir({ dir: join(REPO_ROOT, ".cache"), prefix: "k8s-check-" });
  try {
    const lines = [`import type { IJob } from "kubernetes-models/batch/v1/Job";`];
    ALL.forEach((f, i) => lines.push(`export const m${i}: IJob = ${JSON.stringify(loadJob(f), null, 1)};`));
    const file = join(dir, "manifests.ts");
    await Deno.writeTextFile(file, lines.join("\n") + "\n");
    const out = await denoCheck(file);
    const msg = new TextDecoder().decode(out.stderr);
    assert(out.success, `type check of the manifests failed:\n${msg}`);
    // The check can fail: an unknown field is caught.
    await Deno.writeTextFile(
      file,
      `import type { IJob } from "kubernetes-models/batch/v1/Job";\nexport const m: IJob = { spec: ` +
        `{ backoffLimitPerIndx: 1, template: {} } };\n`,
    );
    const bad = await denoCheck(file);
    assert(!bad.success && /backoffLimitPerIndx/.test(new TextDecoder().decode(bad.stderr)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: extract Jobs are Indexed, retried per index, and tell each pod the worker count", () => {
  for (const f of EXTRACT) {
    const job = loadJob(f);
    const spec = job.spec!;
    const pod = spec.template.spec!;
    assertEquals(spec.completionMode, "Indexed", f);
    assert(spec.completions! >= 1 && spec.parallelism! >= 1 && spec.parallelism! <= spec.completions!, f);
    assert(spec.backoffLimitPerIndex! >= 1, `${f}: backoffLimitPerIndex`);
    assertEquals(pod.restartPolicy, "Never", `${f}: backoffLimitPerIndex needs restartPolicy Never`);
    // Preemption does not use up retries; usage errors (exit 2) are not retried.
    const rules = spec.podFailurePolicy!.rules;
    assert(
      rules.some((r) =>
        r.action === "Ignore" && r.onPodConditions?.some((c) => c.type === "DisruptionTarget")
      ),
    );
    assert(rules.some((r) => r.action === "FailIndex" && r.onExitCodes?.values.includes(2)));
    const c = pod.containers.find((c) => c.name === "extract")!;
    assert(c, `${f}: container "extract"`);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    assertEquals(
      env.ACTSHARD_NUM_WORKERS,
      String(spec.completions),
      `${f}: ACTSHARD_NUM_WORKERS = completions`,
    );
    assert(
      !("JOB_COMPLETION_INDEX" in env),
      `${f}: JOB_COMPLETION_INDEX is set by Kubernetes, not the manifest`,
    );
    const cmd = [...(c.command ?? []), ...(c.args ?? [])];
    assertEquals(cmd.slice(0, 3), ["deno", "task", "extract"], f);
    assert(cmd.includes("--upload_to_gcs"), `${f}: workers must upload (pod disks are ephemeral)`);
    assert(!cmd.some((a) => /^--(num_workers|worker_index)/.test(a)), `${f}: no per-index arguments`);
    // The arguments are ones extract accepts (names and values), as parsed by extract itself.
    const config = parseExtractFlags(c.args ?? []) as ExtractConfig;
    assertEquals([config.upload_to_gcs, config.backend], [true, "pjrt"], f);
    const limits = c.resources?.limits ?? {};
    const accel = f.includes("tpu") ? "google.com/tpu" : "nvidia.com/gpu";
    assert(Number(limits[accel]) >= 1, `${f}: ${accel} limit`);
    assertEquals(c.resources?.requests?.[accel], limits[accel], `${f}: ${accel} request = limit`);
    if (f.includes("tpu")) {
      assert(pod.nodeSelector?.["cloud.google.com/gke-tpu-accelerator"], `${f}: TPU nodeSelector`);
      assert(pod.nodeSelector?.["cloud.google.com/gke-tpu-topology"], `${f}: TPU topology`);
    }
  }
});

Deno.test("k8s: merge Job merges the workers' prefix in place", () => {
  const job = loadJob("merge.yaml");
  const c = job.spec!.template.spec!.containers[0];
  const script = [...(c.command ?? []), ...(c.args ?? [])].join(" ");
  const m = /deno task shard --merge (\S+) --output (\S+)/.exec(script);
  assert(m, `merge.yaml runs "deno task shard --merge SRC --output DST": ${script}`);
  assertEquals(m[1], m[2], "merge in place: nothing is copied");
  // The merge reads the prefix the extract Jobs write.
  for (const f of EXTRACT) {
    const args = loadJob(f).spec!.template.spec!.containers[0].args!;
    const bucket = args.find((a) => a.startsWith("--gcs_bucket="))!.split("=")[1];
    const prefix = args.find((a) => a.startsWith("--gcs_prefix="))!.split("=")[1];
    assertEquals(m[1], `gs://${bucket}/${prefix}`, f);
  }
});
