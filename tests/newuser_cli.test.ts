/**
 * A new user's first hour, as subprocess tests of the real CLIs (`deno task -c deno.json …` from another
 * directory, exactly as a user types it): paths resolve where the user stands; raw OS errors become one line
 * naming the flag and the fix; the small walls (mistyped flags, --dump_prompts without --dry_run, the guide's
 * --use_data_parallel, --shard_size_gb 0/-1, read --layer 99, gs:// and credentials in --help, the default tiny
 * model with extract's default layers); the run summary before compute; Ctrl-C. Every case asserts the exit
 * code and the first stderr line.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { join } from "node:path";
import { syntheticArcTasks } from "../lib/arc/synthetic.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { spawnScript } from "./_extract_fixture.ts";
import { type ExtractConfig, parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import { osErrorLine } from "../lib/cli/os_errors.ts";
import { closestFlag } from "../lib/cli/flags.ts";

const dec = new TextDecoder();

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
  /** The first line of stderr (what a user reads). */
  first: string;
}

/** `deno task -q -c REPO/deno.json TASK ARGS` run in `cwd` (deno task sets INIT_CWD to it). */
async function task(
  cwd: string,
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Ran> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "-c", join(REPO_ROOT, "deno.json"), name, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
    // As from a user's shell: no INIT_CWD inherited from the `deno task test` running this (deno task keeps one
    // that is already set), so the child `deno task` sets it to `cwd`.
    clearEnv: true,
    env: { ...withoutInitCwd(), NO_COLOR: "1", ...env },
  }).output();
  const stderr = dec.decode(out.stderr);
  return { code: out.code, stdout: dec.decode(out.stdout), stderr, first: stderr.split("\n")[0] };
}

function withoutInitCwd(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return env;
}

async function tasksFile(path: string, nTasks = 3): Promise<string> {
  await Deno.writeTextFile(path, JSON.stringify(syntheticArcTasks({ nTasks, seed: 4 })));
  return path;
}

Deno.test("new user: relative paths from a subdirectory resolve there; the default tiny model runs extract's default layers", async () => {
  await using tmp = await tempDir();
  const sub = join(tmp.path, "sub");
  await Deno.mkdir(sub);
  await tasksFile(join(tmp.path, "tasks.json"));
  // First a command that writes nothing: if ../ resolved anywhere but tmp, stop before writing outside it.
  const probe = await task(sub, "verify", ["../absent"]);
  assertEquals(probe.first, `verify: directory not found (${join(tmp.path, "absent")}): check the path`);
  // make-tiny-model with its defaults, out ../tiny relative to sub/ (not to the repository).
  const made = await task(sub, "make-tiny-model", ["--out", "../tiny"]);
  assertEquals(made.code, 0, made.stderr);
  assert(made.stdout.includes(`wrote ${join(tmp.path, "tiny")} `), made.stdout);
  assert(made.stdout.includes("24 layers"), made.stdout);
  // extract with the default --layers_to_extract (10-23) on it.
  const run = await task(sub, "extract", [
    ...["--model_path", "../tiny", "--dataset_path", "../tasks.json", "--output_dir", "../out"],
    ...["--predictions_per_task", "1", "--shard_size_gb", "0.01"],
  ]);
  assertEquals(run.code, 0, run.stderr);
  // The summary names the resolved, absolute paths.
  assertEquals(
    run.first,
    `extract: model ${join(tmp.path, "tiny")}: 24 layers, hidden 64; dataset ${join(tmp.path, "tasks.json")}`,
  );
  const meta = JSON.parse(await Deno.readTextFile(join(tmp.path, "out", "metadata.json")));
  assertEquals(meta.status, "complete");
  assertEquals([...new Set(meta.shards.flatMap((s: { layers: number[] }) => s.layers))].length, 14);
  // read and verify take the dataset relative to sub/ too.
  const read = await task(sub, "read", ["../out", "--layer", "99"]);
  assertEquals(read.code, 2, read.stderr);
  assertEquals(
    read.first,
    `read: --layer 99 is not in this dataset (${
      join(tmp.path, "out")
    }): it has layers 10-23; sample_idx 0..2`,
  );
  const verify = await task(sub, "verify", ["../out"]);
  assertEquals(verify.code, 0, verify.stdout + verify.stderr);
  const npy = await task(sub, "read", ["../out", "--layer", "10", "--sample_idx", "1", "--out", "x.npy"]);
  assertEquals(npy.code, 0, npy.stderr);
  assert((await Deno.stat(join(sub, "x.npy"))).size > 128);
});

Deno.test("new user: OS errors are one line naming the flag and the fix", async () => {
  await using tmp = await tempDir();
  const file = join(tmp.path, "afile");
  await Deno.writeTextFile(file, "not a directory");
  const fx = join(tmp.path, "tiny");
  await writeTinyModel(fx, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, vocab: 151936, seed: 1 });
  const data = await tasksFile(join(tmp.path, "tasks.json"), 1);
  const ex = ["--model_path", fx, "--dataset_path", data, "--layers_to_extract", "0", "1"];
  const cases: [string, string[], number, string][] = [
    [
      "extract",
      [...ex, "--output_dir", file],
      1,
      `extract: --output_dir ${file}: ${file} is a file, not a directory: give a directory path (it is created if missing), or move the file away`,
    ],
    [
      "extract",
      [...ex, "--output_dir", join(file, "out")],
      1,
      `extract: --output_dir ${
        join(file, "out")
      }: ${file} is a file, so nothing can be created under it: fix the path, or move that file away`,
    ],
  ];
  for (const [name, args, code, first] of cases) {
    const r = await task(tmp.path, name, args);
    assertEquals(r.code, code, `${name} ${args.join(" ")}: ${r.stderr}`);
    assert(r.first.startsWith(first), `${r.first}\nexpected: ${first}`);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  // read --out into a missing directory / under a file.
  const out = join(tmp.path, "out");
  const ok = await task(tmp.path, "extract", [...ex, "--output_dir", out, "--predictions_per_task", "1"]);
  assertEquals(ok.code, 0, ok.stderr);
  const missing = await task(tmp.path, "read", [out, "--out", join(tmp.path, "no", "x.npy")]);
  assertEquals(missing.code, 1);
  assertEquals(
    missing.first,
    `read: --out ${join(tmp.path, "no", "x.npy")}: ${
      join(tmp.path, "no")
    } does not exist: create that directory first, or fix the path`,
  );
  const under = await task(tmp.path, "read", [out, "--out", join(file, "x.npy")]);
  assertEquals(under.code, 1);
  assertEquals(
    under.first,
    `read: --out ${
      join(file, "x.npy")
    }: ${file} is a file, so nothing can be created under it: fix the path, or move that file away`,
  );
  // The emulator's port taken by another listener.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const emu = await task(tmp.path, "gcs-emulator", ["--port", String(port)]);
  assertEquals(emu.code, 1, emu.stderr);
  assertEquals(
    emu.first,
    `gcs-emulator: --port ${port}: the port is already in use: stop the process holding it, or pick another --port (0 = any free port)`,
  );
});

Deno.test({
  name: "new user: an unwritable --output_dir names the flag (not as root: root writes anywhere)",
  ignore: Deno.uid() === 0,
  fn: async () => {
    await using tmp = await tempDir();
    const ro = join(tmp.path, "ro");
    await Deno.mkdir(ro, { mode: 0o555 });
    const fx = join(tmp.path, "tiny");
    await writeTinyModel(fx, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 1 });
    const data = await tasksFile(join(tmp.path, "tasks.json"), 1);
    const r = await task(tmp.path, "extract", [
      ...["--model_path", fx, "--dataset_path", data, "--layers_to_extract", "0"],
      ...["--output_dir", join(ro, "out")],
    ]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.first, new RegExp(`^extract: --output_dir ${join(ro, "out")}: permission denied on `));
  },
});

Deno.test("new user: small walls are one clear line (exit 2) or simply work", async () => {
  await using tmp = await tempDir();
  const cases: [string, string[], number, string][] = [
    [
      "extract",
      ["--dump_prompts", "p.jsonl"],
      2,
      "extract: --dump_prompts only works with --dry_run: add --dry_run to write the prompts and token ids (no weights are loaded), or drop --dump_prompts",
    ],
    [
      "extract",
      ["--layer_to_extract", "3"],
      2,
      "extract: unknown flag --layer_to_extract: did you mean --layers_to_extract? (--help lists the flags)",
    ],
    ["read", ["--sampel_idx", "3", "x"], 2, "read: unknown flag --sampel_idx: did you mean --sample_idx?"],
    ["extract", ["--shard_size_gb", "0"], 2, 'extract: --shard_size_gb must be a number > 0, got "0"'],
    ["extract", ["--shard_size_gb", "-1"], 2, 'extract: --shard_size_gb must be a number > 0, got "-1"'],
    [
      "shard",
      ["--input", "a", "--output", "b", "--shard_size_gb", "0"],
      2,
      "shard: --shard_size_gb must be a number > 0",
    ],
  ];
  for (const [name, args, code, first] of cases) {
    const r = await task(tmp.path, name, args);
    assertEquals(r.code, code, `${name} ${args.join(" ")}: ${r.stderr}`);
    assert(r.first.startsWith(first), `${r.first}\nexpected: ${first}`);
  }
  // The guide's --use_data_parallel is the default: accepted (a dry run gets past flag parsing with it).
  const model = join(tmp.path, "tiny");
  await writeTinyModel(model, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 1 });
  const data = await tasksFile(join(tmp.path, "tasks.json"), 2);
  const dry = await task(tmp.path, "extract", [
    ...["--use_data_parallel", "--dry_run", "--model_path", "tiny", "--dataset_path", "tasks.json"],
    ...["--max_seq_length", "300"],
  ]);
  assertEquals(dry.code, 0, dry.stderr);
  void data;
  // The dry run's summary: tasks, test inputs, prompts, tokens, truncations.
  assertMatch(
    dry.stdout,
    /^dry run: 2 tasks, 2 test inputs, 16 prompts, [\d,]+ tokens \(longest 300\), \d+ truncated at --max_seq_length 300/,
  );
  // --help: gs:// in the usage of read/verify; credentials and STORAGE_EMULATOR_HOST in every GCS stage's.
  for (const name of ["read", "verify"]) {
    const h = await task(tmp.path, name, ["--help"]);
    assert(h.stdout.startsWith(`usage: deno task ${name} DIR|gs://BUCKET/PREFIX [flags]`), h.stdout);
  }
  for (const name of ["extract", "read", "verify", "upload", "shard"]) {
    const h = await task(tmp.path, name, ["--help"]);
    assertEquals(h.code, 0);
    assert(h.stdout.includes("Application Default Credentials"), `${name}: ${h.stdout}`);
    assert(h.stdout.includes("STORAGE_EMULATOR_HOST"), `${name}: ${h.stdout}`);
  }
});

Deno.test("new user: a real run's summary before compute: tasks, test inputs, prompts, tokens, truncated, GB vs free disk", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "tiny");
  await writeTinyModel(model, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 1 });
  const data = await tasksFile(join(tmp.path, "tasks.json"), 2);
  const args = ["--model_path", model, "--dataset_path", data, "--layers_to_extract", "0", "1"];
  const dry = await task(tmp.path, "extract", [...args, "--dry_run", "--max_seq_length", "300"]);
  const counts = /^dry run: (.*)$/m.exec(dry.stdout)![1];
  const r = await task(tmp.path, "extract", [
    ...args,
    ...["--max_seq_length", "300", "--output_dir", join(tmp.path, "out")],
  ]);
  assertEquals(r.code, 0, r.stderr);
  const lines = r.stderr.split("\n");
  // The same counts as the dry run, before any compute (the first progress line comes after).
  assertEquals(lines[1], `extract: ${counts}`);
  assertMatch(lines[1], /[1-9]\d* truncated at --max_seq_length 300/);
  assertMatch(
    lines[2],
    new RegExp(
      `^extract: layers 0,1 → ~[\\d.]+ MB of pickle/gzip/float32 in ${
        join(tmp.path, "out")
      }; [\\d.]+ [MG]B free there$`,
    ),
  );
  // Progress says what it is doing before the first batch is done.
  assertMatch(lines[3], /^extract: 0\/16 prompts · loading the model \(2 layers\) from .*… \d+s$/);
  assert(
    lines.some((l) => /^extract: 0\/16 prompts · first batch \(\d+ prompts, \d+ tokens\)… /.test(l)),
    r.stderr,
  );
});

Deno.test("new user: Ctrl-C removes the open shard's temp file, says how to resume; the rerun completes", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "tiny");
  await writeTinyModel(model, { hidden: 64, layers: 4, heads: 4, kvHeads: 2, seed: 1 });
  const data = await tasksFile(join(tmp.path, "tasks.json"), 6);
  const out = join(tmp.path, "out");
  const args = [
    ...["--model_path", model, "--dataset_path", data, "--output_dir", out],
    ...["--layers_to_extract", "0-3", "--batch_size", "2", "--shard_size_gb", "1"],
  ];
  const child = spawnScript("extract.ts", args);
  const tmpFile = async () => {
    try {
      for await (const e of Deno.readDir(out)) {
        if (e.name.startsWith(".shard_") && e.name.endsWith(".tmp")) return e.name;
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return null;
  };
  // Wait until a shard is open (one 1 GB shard holds the whole run: its temp file exists until the end).
  let seen: string | null = null;
  for (let i = 0; i < 3000 && !seen; i++) {
    seen = await tmpFile().catch(() => null);
    if (!seen) await new Promise((r) => setTimeout(r, 10));
  }
  assert(seen, "no open shard seen");
  child.kill("SIGINT");
  const res = await child.output();
  const stderr = dec.decode(res.stderr);
  assertEquals(res.code, 130, stderr);
  const last = stderr.trim().split("\n").pop()!;
  assertEquals(
    last,
    `extract: interrupted (SIGINT): 0 shards durable in ${out}, the partial shard removed; rerun the same command to continue after them`,
  );
  assertEquals(await tmpFile(), null);
  const again = await spawnScript("extract.ts", args).output();
  assertEquals(again.code, 0, dec.decode(again.stderr));
  const meta = JSON.parse(await Deno.readTextFile(join(out, "metadata.json")));
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_samples, 6 * 8 * 4);
});

Deno.test("new user: progress counts the open shard's bytes (not 0.0 MB until a shard closes) and shards written", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "tiny");
  await writeTinyModel(model, { hidden: 32, layers: 2, heads: 4, kvHeads: 2, seed: 1 });
  const data = await tasksFile(join(tmp.path, "tasks.json"), 2);
  const config = parseExtractFlags([
    ...["--model_path", model, "--dataset_path", data, "--output_dir", join(tmp.path, "out")],
    ...["--layers_to_extract", "0", "1", "--batch_size", "2", "--shard_size_gb", "1"],
  ]) as ExtractConfig;
  const lines: string[] = [];
  await runExtract(config, {
    progress: { tty: false, intervalMs: 0, write: (l) => lines.push(l) },
    log: () => {},
  });
  const open = lines.filter((l) => / · 0 shards · /.test(l) && !/ · 0\.0 MB · /.test(l));
  assert(open.length > 0, lines.join("\n"));
  assertMatch(
    lines[lines.length - 1],
    /^extract: 16\/16 prompts · \d+ tok\/s · [\d.]+ MB · 1 shard · done in /,
  );
});

Deno.test("osErrorLine: permission denied, read-only and full disks name the flag (real Deno error classes)", () => {
  const flags = [
    { flag: "--output_dir", kind: "path" as const, value: "/data/out" },
    { flag: "--dataset_path", kind: "path" as const, value: "/data/tasks.json" },
  ];
  const denied = new Deno.errors.PermissionDenied("Permission denied (os error 13): mkdir '/data/out'");
  assertEquals(
    osErrorLine(denied, flags),
    "--output_dir /data/out: permission denied on /data/out: choose a location you can write to (and read), or fix its permissions",
  );
  const ro = Object.assign(
    new Error("Read-only file system (os error 30): open '/data/out/.shard_0001.pkl.gz.tmp'"),
    {
      code: "EROFS",
    },
  );
  assertEquals(
    osErrorLine(ro, flags),
    "--output_dir /data/out: /data/out/.shard_0001.pkl.gz.tmp is on a read-only file system: choose a writable location",
  );
  const full = Object.assign(new Error("No space left on device (os error 28): write '/data/out/x'"), {
    code: "ENOSPC",
  });
  assertMatch(osErrorLine(full, flags)!, /^--output_dir \/data\/out: no space left on the disk holding /);
  // An error about no flag's path is left to the generic line.
  assertEquals(
    osErrorLine(new Deno.errors.NotFound("No such file (os error 2): open '/etc/x'"), flags),
    null,
  );
  assertEquals(closestFlag("layer_to_extract", ["layers_to_extract", "batch_size"]), "layers_to_extract");
  assertEquals(closestFlag("zzz", ["layers_to_extract", "batch_size"]), null);
});
