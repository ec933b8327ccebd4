/**
 * A local directory as a {@link BlobStore}.
 *
 * @example
 * ```ts
 * import { LocalStore } from "./local.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/metadata.json`, "{}");
 * const store = new LocalStore(dir);
 * for (const o of await store.list()) console.log(o.name, o.size); // metadata.json 2
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";
import type { BlobStore, ObjectInfo } from "./types.ts";

/** Read access to a local dataset directory. */
export class LocalStore implements BlobStore {
  readonly url: string;
  constructor(readonly dir: string) {
    this.url = dir;
  }

  #path(name: string): string {
    return join(this.dir, ...name.split("/"));
  }

  async list(): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const walk = async (rel: string) => {
      for await (const e of Deno.readDir(rel ? this.#path(rel) : this.dir)) {
        const name = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory) await walk(name);
        else if (e.isFile) out.push({ name, size: (await Deno.stat(this.#path(name))).size });
      }
    };
    try {
      await walk("");
    } catch (e) {
      throw this.#notFound(e, "");
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const s = await Deno.stat(this.#path(name));
      return s.isFile ? { name, size: s.size } : null;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  async read(name: string): Promise<Uint8Array> {
    try {
      return await Deno.readFile(this.#path(name));
    } catch (e) {
      throw this.#notFound(e, name);
    }
  }

  async readRange(name: string, start: number, end: number): Promise<Uint8Array> {
    let f: Deno.FsFile;
    try {
      f = await Deno.open(this.#path(name));
    } catch (e) {
      throw this.#notFound(e, name);
    }
    try {
      await f.seek(start, Deno.SeekMode.Start);
      const out = new Uint8Array(end - start);
      let o = 0;
      while (o < out.length) {
        const n = await f.read(out.subarray(o));
        if (n === null) break;
        o += n;
      }
      return out.subarray(0, o);
    } finally {
      f.close();
    }
  }

  async openRead(name: string): Promise<ReadableStream<Uint8Array>> {
    try {
      return (await Deno.open(this.#path(name))).readable;
    } catch (e) {
      throw this.#notFound(e, name);
    }
  }

  #notFound(e: unknown, name: string): unknown {
    if (e instanceof Deno.errors.NotFound) {
      return new ActshardError(name ? "file not found" : "directory not found", {
        where: name ? this.#path(name) : this.dir,
        kind: "input",
        cause: e,
      });
    }
    return e;
  }
}
