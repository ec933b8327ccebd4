/**
 * `deno task bench`: runs every benchmark section and prints its ratios. Sections live in bench/*.ts and export
 * `run(): Promise<void>`; `deno task bench NAME...` runs only those.
 */
const SECTIONS = ["shard", "tokenizer", "forward", "pipeline", "gcs"];

const wanted = Deno.args.length ? Deno.args : SECTIONS;
for (const name of wanted) {
  const url = new URL(`./${name}.ts`, import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    console.log(`bench ${name}: not present, skipped`);
    continue;
  }
  console.log(`\n### bench: ${name}`);
  const mod = await import(url.href);
  await mod.run();
}
