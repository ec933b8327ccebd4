/**
 * A file written around the page cache (`O_DIRECT`, Linux, Deno FFI): bytes are copied into a few aligned staging
 * slots and each full slot goes to the kernel in one `pwrite` on Deno's blocking pool, several in flight, so
 * the writing thread only copies. The shard writer's sink uses it (file_sink_worker.ts).
 *
 * Why: on 2 cores the `shard` stage is CPU-bound, and the kernel's buffered write (copy into the page cache,
 * then writeback, then reclaiming those pages) was its dearest step after SHA-256. Measured here writing 1.65 GB
 * in 1 MiB chunks, fsynced: buffered 0.64–0.87 CPU-s/GB for the process (0.68–0.89 for the whole box) at
 * 1071–1427 MB/s; direct, with the staging copy, 0.16–0.22 (0.21–0.28) at 1404–1717 MB/s.
 *
 * The tail slot is padded to the alignment with zeros, written, and the file then truncated to its bytes. Where
 * a direct write is refused or cut short (`EINVAL` where the filesystem or the buffer's alignment does not suit
 * it, `ENOSPC`, `EIO`), that slot and every later one are written through the file's ordinary handle instead:
 * a refused direct write then succeeds, and a real failure comes back as Deno's own error (`No space left on
 * device (os error 28)`), so callers map it as before. Where direct writes cannot be set up at all (not Linux,
 * no FFI permission, an architecture whose flag is not known here, a filesystem that refuses the flag at open,
 * `ACTSHARD_PAGE_CACHE=keep`: the caller wants the bytes cached), {@link DirectFile.open} returns null and the
 * caller writes as usual. Nothing about the bytes or their durability depends on the path taken: the caller
 * still fsyncs the file.
 *
 * @example
 * ```ts
 * import { DirectFile } from "./direct_file.ts";
 * const path = await Deno.makeTempFile();
 * using file = await Deno.open(path, { write: true, truncate: true });
 * const d = DirectFile.open(path, file); // null where direct writes cannot be set up
 * if (d) {
 *   await d.write(new Uint8Array(5000).fill(7));
 *   await d.finish(); // every byte written, the file truncated to 5000
 *   await d.close();
 * } else await file.write(new Uint8Array(5000).fill(7));
 * await file.sync();
 * console.log((await Deno.stat(path)).size); // 5000
 * await Deno.remove(path);
 * ```
 *
 * @module
 */
import { envGet } from "./native_lib.ts";
import { writeAllSync } from "./write_all.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pwrite: { parameters: ["i32", "pointer", "usize", "i64"], result: "isize", nonblocking: true },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
/** `O_DIRECT` differs between architectures (asm-generic's value on arm64 is x86's O_DIRECTORY). */
const O_DIRECT: Record<string, number> = { x86_64: 0o40000, aarch64: 0o200000 };

/** Alignment of buffer addresses, offsets and lengths: 4096 suits every logical block size in use (512, 4096). */
export const DIRECT_ALIGN = 4096;
/**
 * Staging: 4 slots of 2 MiB per file (8 MiB). In the measurement above, 1–4 MiB slots and 2–8 of them were
 * within noise of each other (1446–1717 MB/s, 0.16–0.25 CPU-s/GB).
 */
const SLOT_BYTES = 2 << 20;
const SLOTS = 4;
/**
 * With a `copied` callback ({@link DirectFile.write}) the copy into staging goes in pieces of this size, each
 * handed to the callback right after, while it is in the CPU's cache (the sink's CRC-32C).
 */
const PIECE_BYTES = 256 << 10;

let libc: Libc | null | undefined;
function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (globalThis.Deno?.build.os !== "linux" || typeof Deno.dlopen !== "function") return libc;
  if (O_DIRECT[Deno.build.arch] === undefined) return libc;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      return libc = Deno.dlopen(name, SYMBOLS).symbols;
    } catch { /* no FFI permission, or not this name: try the next, else stay buffered */ }
  }
  return libc;
}

/** Aligned staging memory: `slots` views of `SLOT_BYTES` each, inside one larger array. */
interface Staging {
  raw: Uint8Array;
  slots: Uint8Array[];
}

/** Staging sets of finished files, for the next (a sink has at most two files open at once). */
const spare: Staging[] = [];

function staging(misalign: number): Staging {
  if (misalign === 0 && spare.length > 0) return spare.pop()!;
  const raw = new Uint8Array(SLOT_BYTES * SLOTS + DIRECT_ALIGN + misalign);
  const address = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)));
  const start = (DIRECT_ALIGN - (address % DIRECT_ALIGN)) % DIRECT_ALIGN + misalign;
  const slots = Array.from(
    { length: SLOTS },
    (_, i) => raw.subarray(start + i * SLOT_BYTES, start + (i + 1) * SLOT_BYTES),
  );
  return { raw, slots };
}

/**
 * One file's direct writes. `write` appends (in order; each resolves once its bytes are copied into staging, so
 * the caller may reuse or hand on its buffer), `finish` writes the tail and truncates, `close` releases the
 * descriptor and staging once every write has returned.
 *
 * @example
 * ```ts
 * import { DirectFile } from "./direct_file.ts";
 * const path = await Deno.makeTempFile();
 * using file = await Deno.open(path, { write: true, truncate: true });
 * const d = DirectFile.open(path, file);
 * if (d) {
 *   for (let i = 0; i < 5; i++) await d.write(new Uint8Array(1 << 20).fill(i)); // 2 slots go out, 1 MiB waits
 *   await d.finish();
 *   console.log(d.bytes, d.fellBack); // 5242880 false (true where the kernel refused a direct write)
 *   await d.close();
 * }
 * await Deno.remove(path);
 * ```
 */
export class DirectFile {
  #c: Libc;
  #fd: number;
  #file: Deno.FsFile;
  #staging: Staging;
  /** Each slot's write in flight: resolves (never rejects) once it returned. */
  #busy: (Promise<void> | null)[] = new Array(SLOTS).fill(null);
  #slot = 0;
  #fill = 0;
  /** File offset of the current slot (every byte before it has been handed to a write). */
  #offset = 0;
  /** End of the padded tail, once written directly (the file is that long until truncated). */
  #paddedEnd = 0;
  #error: unknown = null;
  #fellBack = false;
  #misaligned: boolean;
  #bytes = 0;

  private constructor(c: Libc, fd: number, file: Deno.FsFile, staging: Staging, misaligned: boolean) {
    this.#c = c;
    this.#fd = fd;
    this.#file = file;
    this.#staging = staging;
    this.#misaligned = misaligned;
  }

  /**
   * Direct writes to `path`, an empty regular file that `file` (the caller's ordinary handle, kept for the
   * fallback and the truncation; the caller fsyncs and closes it) has open for writing; null where they cannot
   * be set up (see the module's notes). `misalign` (tests only) shifts the staging off its alignment, so that the
   * kernel refuses the direct writes and the fallback runs.
   */
  static open(path: string, file: Deno.FsFile, opts: { misalign?: number } = {}): DirectFile | null {
    if (envGet("ACTSHARD_PAGE_CACHE") === "keep") return null;
    const c = load();
    if (!c) return null;
    const fd = c.open(
      new TextEncoder().encode(path + "\0"),
      O_WRONLY | O_CLOEXEC | O_DIRECT[Deno.build.arch],
    );
    if (fd < 0) return null; // the filesystem refuses O_DIRECT (EINVAL), or the path changed under us
    return new DirectFile(c, fd, file, staging(opts.misalign ?? 0), (opts.misalign ?? 0) !== 0);
  }

  /** Bytes appended so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True once a direct write was refused or cut short, and the file went on through its ordinary handle. */
  get fellBack(): boolean {
    return this.#fellBack;
  }

  /**
   * Append `data` (copied: the caller keeps its buffer). Rejects with the first write's failure. `copied`: told
   * of each piece of staging just filled (every byte of `data` once, in order; the view is valid only during
   * the call), so that a checksum reads the bytes from the cache rather than from memory again.
   */
  async write(data: Uint8Array, copied?: (piece: Uint8Array) => void): Promise<void> {
    let b = data;
    while (b.length > 0) {
      if (this.#fill === 0) await this.#settle(this.#slot);
      const n = Math.min(SLOT_BYTES - this.#fill, b.length, copied ? PIECE_BYTES : SLOT_BYTES);
      const slot = this.#staging.slots[this.#slot];
      slot.set(b.subarray(0, n), this.#fill);
      copied?.(slot.subarray(this.#fill, this.#fill + n));
      this.#fill += n;
      b = b.subarray(n);
      if (this.#fill === SLOT_BYTES) this.#submit(SLOT_BYTES, SLOT_BYTES);
    }
    this.#bytes += data.length;
  }

  /**
   * Write the tail and wait for every write; then truncate the padding away. Where the file is not as long as
   * the bytes written before the tail (cut short under the writer), the tail is not written and the file left
   * as it is, for the caller's size check to catch.
   */
  async finish(): Promise<void> {
    for (let i = 0; i < SLOTS; i++) await this.#settle(i);
    if ((await this.#file.stat()).size !== this.#offset) return;
    if (this.#fill > 0) {
      const padded = Math.ceil(this.#fill / DIRECT_ALIGN) * DIRECT_ALIGN;
      this.#staging.slots[this.#slot].fill(0, this.#fill, padded);
      const at = this.#offset;
      this.#submit(this.#fill, padded);
      await this.#settle((this.#slot + SLOTS - 1) % SLOTS);
      if (!this.#fellBack) this.#paddedEnd = at + padded;
    }
    if (this.#paddedEnd > this.#bytes) await this.#file.truncate(this.#bytes);
  }

  /** Wait for every write in flight (failures ignored), then release the descriptor and staging (idempotent). */
  async close(): Promise<void> {
    await Promise.all(this.#busy);
    if (this.#fd < 0) return;
    this.#c.close(this.#fd);
    this.#fd = -1;
    if (!this.#misaligned && spare.length < 2) spare.push(this.#staging);
  }

  /** Wait for slot `i`'s write; throw the first failure of any write. */
  async #settle(i: number): Promise<void> {
    const p = this.#busy[i];
    if (p) {
      this.#busy[i] = null;
      await p;
    }
    if (this.#error) throw this.#error;
  }

  /** Hand the current slot (`logical` bytes of it, `length` with padding) to a write, and move to the next. */
  #submit(logical: number, length: number): void {
    const i = this.#slot, at = this.#offset;
    this.#busy[i] = this.#writeSlot(this.#staging.slots[i], logical, length, at).catch((e) => {
      this.#error ??= e;
    });
    this.#offset += logical;
    this.#slot = (i + 1) % SLOTS;
    this.#fill = 0;
  }

  async #writeSlot(slot: Uint8Array, logical: number, length: number, at: number): Promise<void> {
    let done = 0;
    if (!this.#fellBack) {
      const r = Number(
        await this.#c.pwrite(this.#fd, Deno.UnsafePointer.of(slot), BigInt(length), BigInt(at)),
      );
      if (r >= logical) return;
      done = Math.max(0, r);
      this.#fellBack = true; // refused or cut short: this slot's rest and every later slot go the ordinary way
    }
    // One synchronous turn: no other slot's seek can come between this seek and its writes.
    this.#file.seekSync(at + done, Deno.SeekMode.Start);
    writeAllSync(this.#file, slot.subarray(done, logical));
  }
}
