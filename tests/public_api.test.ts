/**
 * The public surface stays documented: every symbol exported from a deno.json `exports` entry point has JSDoc,
 * every exported function, class and const has an `@example`, and every public member of an exported class or
 * interface has a line of JSDoc (read from `deno doc --json`). `deno doc --lint` on the entry points must report
 * nothing else (private-type-ref: a public signature using a type the entry point does not export).
 */
import { join, relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { assert, assertEquals } from "./_assert.ts";

const ROOT = fromFileUrl(new URL("..", import.meta.url));
const ENTRY_POINTS: string[] = Object.values(
  (JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))) as { exports: Record<string, string> })
    .exports,
);

interface JsDoc {
  doc?: string;
  tags?: { kind: string }[];
}
interface Member {
  name?: string;
  jsDoc?: JsDoc;
  accessibility?: string;
}
interface Declaration {
  kind: string;
  jsDoc?: JsDoc;
  location: { filename: string };
  def?: Record<string, Member[] | unknown>;
}
interface DocSymbol {
  name: string;
  declarations: Declaration[];
}

const documented = (j?: JsDoc) => !!j && ((j.doc ?? "").trim() !== "" || (j.tags ?? []).length > 0);
const hasExample = (j?: JsDoc) => (j?.tags ?? []).some((t) => t.kind === "example");
const MEMBER_LISTS = ["constructors", "properties", "methods", "indexSignatures", "callSignatures"];

async function denoDoc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Every gap on one entry point: `Symbol` (no JSDoc), `Symbol@example`, `Symbol.member`. */
async function gaps(entry: string): Promise<Map<string, string>> {
  const r = await denoDoc(["--json", entry]);
  assertEquals(r.code, 0, `deno doc --json ${entry} failed: ${r.stderr}`);
  const nodes = (JSON.parse(r.stdout) as { nodes: Record<string, { symbols: DocSymbol[] }> }).nodes;
  const found = new Map<string, string>();
  for (const { symbols } of Object.values(nodes)) {
    for (const s of symbols) {
      for (const d of s.declarations) {
        const where = relative(ROOT, fromFileUrl(d.location.filename));
        if (!documented(d.jsDoc)) found.set(s.name, where);
        if (["function", "class", "variable"].includes(d.kind) && !hasExample(d.jsDoc)) {
          found.set(`${s.name}@example`, where);
        }
        for (const list of MEMBER_LISTS) {
          const members = d.def?.[list];
          if (!Array.isArray(members)) continue;
          for (const m of members as Member[]) {
            if (m.accessibility === "private" || documented(m.jsDoc)) continue;
            found.set(`${s.name}.${m.name ?? list}`, where);
          }
        }
      }
    }
  }
  return found;
}

Deno.test("public API: entry points are mod.ts, the PJRT binding and the GCS emulator", () => {
  assertEquals(ENTRY_POINTS.sort(), [
    "./lib/storage/gcs_emulator/server.ts",
    "./mod.ts",
    "./native/pjrt/mod.ts",
  ]);
});

Deno.test("public API: every exported symbol has JSDoc, an @example where it runs code, and documented members", async () => {
  const all = new Map<string, string>();
  for (const entry of ENTRY_POINTS) for (const [k, v] of await gaps(entry)) all.set(k, v);
  const missing = [...all].map(([k, v]) => `${k} (${v})`);
  assertEquals(missing, [], `undocumented public API:\n  ${missing.join("\n  ")}`);
});

Deno.test("public API: deno doc --lint reports nothing", async () => {
  const r = await denoDoc(["--lint", ...ENTRY_POINTS]);
  const findings = [...r.stderr.matchAll(/^error\[([\w-]+)\][^\n]*\n\s*--> ([^\n]+?):\d+:\d+$/gm)]
    .map(([, code, file]) => ({ code, file: relative(ROOT, file) }));
  if (r.code !== 0) assert(findings.length > 0, `deno doc --lint failed without findings: ${r.stderr}`);
  assertEquals(findings, []);
});
