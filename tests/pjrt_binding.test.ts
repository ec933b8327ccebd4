/**
 * The PJRT binding (native/pjrt/) against the C TEST DOUBLE plugin (native/pjrt_test_plugin/plugin.c): ABI
 * checks, 1 and 4 devices, transfers, multi-device execution (output j = copy of argument j), errors injected
 * synchronously and through events completed on other threads, deferred destroy, and leak accounting.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { ensureTestPlugin, pluginCounts, preloadTestPlugin } from "./support/pjrt_test_plugin.ts";
import {
  type NamedValue,
  parseCreateOption,
  PjrtApi,
  PjrtClient,
  PjrtError,
  PjrtLoadError,
  PjrtStructSizeError,
} from "../native/pjrt/mod.ts";
import { ARGS, MEMORY_LAYOUT_TYPE, MIN_API_STRUCT_SIZE, NAMED_VALUE_TYPE } from "../native/pjrt/api.ts";
import { rowMajorLayout } from "../native/pjrt/buffer.ts";
import { encodeNamedValues } from "../native/pjrt/client.ts";
import { addrOf, Struct } from "../native/pjrt/ffi.ts";
import { compileOptionsBytes } from "../lib/backend/pjrt/compile_options.ts";

preloadTestPlugin();
PjrtApi.open(ensureTestPlugin()).close(); // dlopen once, outside any test (plugins stay loaded)

const PROGRAM_2_RESULTS = `module @m {
  func.func public @main(%arg0: tensor<2x3xf32>, %arg1: tensor<4xi32>) -> (tensor<2x3xf32>, tensor<4xi32>) {
    return %arg0, %arg1 : tensor<2x3xf32>, tensor<4xi32>
  }
}`;

/** Open the plugin + a client, run `fn`, close both, and check nothing leaked on either side. */
async function withClient(
  options: Record<string, NamedValue>,
  fn: (client: PjrtClient, api: PjrtApi) => Promise<void>,
): Promise<void> {
  const api = PjrtApi.open(ensureTestPlugin());
  const client = PjrtClient.create(api, options);
  try {
    await fn(client, api);
  } finally {
    await client.close();
    assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
    api.close();
  }
  const c = pluginCounts();
  assertEquals({ ...c }, {
    errors: 0,
    events: 0,
    buffers: 0,
    executables: 0,
    clients: 0,
    violations: 0,
    all: 0,
  });
}

function withEnv(vars: Record<string, string>, fn: () => void): void {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    fn();
  } finally {
    for (const [k, v] of Object.entries(old)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

Deno.test("pjrt binding: opens the test plugin, checks its ABI and lists 1 or 4 devices", async () => {
  await withClient({}, (client, api) => {
    assertEquals(api.version, { major: 0, minor: 90 });
    assertEquals(api.tableSize, 1064);
    assertEquals(client.platformName, "actshard_test_double");
    assertEquals(client.devices.map((d) => d.id), [0]);
    return Promise.resolve();
  });
  await withClient({ num_devices: 4 }, (client) => {
    assertEquals(client.devices.map((d) => d.id), [0, 1, 2, 3]);
    assertEquals(client.devices[2].kind, "TestDouble host device");
    return Promise.resolve();
  });
});

Deno.test("pjrt binding: wrong major version, short table, missing file -> PjrtLoadError", () => {
  const path = ensureTestPlugin();
  withEnv({ PJRT_TEST_PLUGIN_MAJOR: "1" }, () => {
    try {
      PjrtApi.open(path);
      throw new Error("expected a version error");
    } catch (e) {
      assert(e instanceof PjrtLoadError && e.problem === "version", String(e));
      assert(/C API 1\.90/.test(e.message), e.message);
    }
  });
  withEnv({ PJRT_TEST_PLUGIN_API_SIZE: "200" }, () => {
    try {
      PjrtApi.open(path);
      throw new Error("expected a table-size error");
    } catch (e) {
      assert(e instanceof PjrtLoadError && e.problem === "table", String(e));
      assert(e.message.includes(String(MIN_API_STRUCT_SIZE)), e.message);
    }
  });
  try {
    PjrtApi.open("/nonexistent/libnothing.so");
    throw new Error("expected an open error");
  } catch (e) {
    assert(e instanceof PjrtLoadError && e.problem === "open", String(e));
  }
});

Deno.test("pjrt binding: host<->device round trips on each of 4 devices (f32, s32, bf16 words)", async () => {
  await withClient({ num_devices: 4, delay_us: 2000 }, async (client) => {
    for (const dev of client.devices) {
      const f = Float32Array.from({ length: 6 }, (_, i) => i * 1.5 - dev.id);
      const b = await client.bufferFromHost(f, [2, 3], "f32", dev);
      assertEquals(b.dims(), [2, 3]);
      assertEquals(b.elementType(), "f32");
      assertEquals(new Float32Array((await b.toHost()).buffer), f);
      const s = Int32Array.from([7, -8, dev.id]);
      const sb = await client.bufferFromHost(s, [3], "s32", dev);
      assertEquals(new Int32Array((await sb.toHost()).buffer), s);
      const h = Uint16Array.from([0x3f80, 0xc000]);
      const hb = await client.bufferFromHost(h, [2], "bf16", dev);
      assertEquals(hb.elementType(), "bf16");
      assertEquals(new Uint16Array((await hb.toHost()).buffer), h);
      const scalar = await client.bufferFromHost(new Float32Array([3]), [], "f32", dev);
      assertEquals(scalar.dims(), []);
      b.destroy();
      sb.destroy();
    }
    assertEquals(client.liveCounts().buffers, 8); // hb + scalar per device, released by close()
  });
});

Deno.test("pjrt binding: toHost asks for a row-major host layout (device layout column-major, like TPU's)", async () => {
  // The layout struct as the header lays it out: PJRT_Buffer_MemoryLayout {struct_size 76, union @16 (Tiled:
  // struct_size 56, minor_to_major @+16, size @+24, no tiles), type @72 = Tiled}.
  const l = rowMajorLayout(3);
  const v = l.struct.view;
  assertEquals(Number(v.getBigUint64(0, true)), 76);
  assertEquals(Number(v.getBigUint64(16, true)), 56);
  assertEquals(
    v.getBigUint64(32, true),
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(l.minorToMajor))),
  );
  assertEquals(Number(v.getBigUint64(40, true)), 3);
  assertEquals(Number(v.getBigUint64(64, true)), 0); // num_tiles
  assertEquals(v.getInt32(72, true), 0);
  assertEquals(Array.from(l.minorToMajor), [2n, 1n, 0n]);

  await withClient({ num_devices: 2, device_layout: "column_major", delay_us: 500 }, async (client, api) => {
    const x = Float32Array.from({ length: 24 }, (_, i) => i);
    const b = await client.bufferFromHost(x, [2, 3, 4], "f32", client.devices[1]);
    assertEquals(Array.from(new Float32Array((await b.toHost()).buffer)), Array.from(x));
    // Through an execution too (outputs keep the device layout).
    const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 1 }));
    const m = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const [[o1, o2]] = await exe.execute([[
      await client.bufferFromHost(m, [2, 3], "f32", client.devices[0]),
      await client.bufferFromHost(Int32Array.from([9, 8, 7, 6]), [4], "s32", client.devices[0]),
    ]]);
    assertEquals(Array.from(new Float32Array((await o1.toHost()).buffer)), [1, 2, 3, 4, 5, 6]);
    assertEquals(Array.from(new Int32Array((await o2.toHost()).buffer)), [9, 8, 7, 6]);
    // What host_layout = NULL would have returned: the device layout's bytes (column-major), which is why the
    // layout is passed.
    const A = ARGS.Buffer_ToHostBuffer;
    const dst = new Float32Array(6);
    const a = new Struct(A.size).setPtr(A.src, o1.handle).setPtr(A.dst, addrOf(dst)).setU64(A.dstSize, 24);
    api.call("Buffer_ToHostBuffer", a);
    await api.awaitEvent("Buffer_ToHostBuffer", api.adoptEvent(a.ptrAt(A.event)), dst);
    assertEquals(Array.from(dst), [1, 4, 2, 5, 3, 6]);
    // A layout the double cannot honour is refused, typed (as XLA refuses Strides).
    const bad = rowMajorLayout(2);
    bad.struct.setI32(ARGS.Buffer_MemoryLayout.type, MEMORY_LAYOUT_TYPE.strides);
    const q = new Struct(A.size).setPtr(A.src, o1.handle).setPtr(A.hostLayout, addrOf(bad.struct.bytes));
    try {
      api.call("Buffer_ToHostBuffer", q);
      throw new Error("expected a layout error");
    } catch (e) {
      assert(e instanceof PjrtError && /strides/.test(e.message), String(e));
    }
  });
});

Deno.test("pjrt binding: executes one replica per device with per-device argument lists", async () => {
  await withClient({ num_devices: 4, delay_us: 1000 }, async (client) => {
    const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 4 }));
    assertEquals(exe.numOutputs, 2);
    const args = await Promise.all(client.devices.map(async (dev) => [
      await client.bufferFromHost(
        Float32Array.from({ length: 6 }, (_, i) => 10 * dev.id + i),
        [2, 3],
        "f32",
        dev,
      ),
      await client.bufferFromHost(Int32Array.from([dev.id, 1, 2, 3]), [4], "s32", dev),
    ]));
    const outs = await exe.execute(args);
    assertEquals(outs.length, 4);
    for (let d = 0; d < 4; d++) {
      assertEquals(outs[d][0].dims(), [2, 3]);
      assertEquals(
        Array.from(new Float32Array((await outs[d][0].toHost()).buffer)),
        Array.from({ length: 6 }, (_, i) => 10 * d + i),
      );
      assertEquals(Array.from(new Int32Array((await outs[d][1].toHost()).buffer)), [d, 1, 2, 3]);
    }
    // Arguments on the wrong device and a replica-count mismatch are the plugin's errors, typed.
    const swapped = [args[1], args[0], args[2], args[3]];
    await assertRejects(() => exe.execute(swapped), PjrtError);
    await exe.execute(args.slice(0, 2)).then(
      () => {
        throw new Error("expected a replica mismatch");
      },
      (err) =>
        assert(err instanceof PjrtError && err.code === 3 && /4 replicas/.test(err.message), String(err)),
    );
  });
});

Deno.test("pjrt binding: destroy() during an execution is deferred until its event completes", async () => {
  await withClient({ num_devices: 1, delay_us: 30000 }, async (client) => {
    const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 1 }));
    const dev = client.devices[0];
    const a = await client.bufferFromHost(new Float32Array(6).fill(2), [2, 3], "f32", dev);
    const b = await client.bufferFromHost(new Int32Array(4).fill(5), [4], "s32", dev);
    const running = exe.execute([[a, b]]);
    a.destroy();
    b.destroy();
    exe.destroy();
    assertEquals(pluginCounts().buffers, 4); // 2 args still alive + 2 outputs while running
    const [[o1, o2]] = await running;
    assertEquals(Array.from(new Float32Array((await o1.toHost()).buffer)), [2, 2, 2, 2, 2, 2]);
    assertEquals(Array.from(new Int32Array((await o2.toHost()).buffer)), [5, 5, 5, 5]);
    assertEquals(client.liveCounts(), { buffers: 2, executables: 0 });
    assertEquals(pluginCounts().violations, 0);
  });
});

Deno.test("pjrt binding: many concurrent transfers complete from plugin threads", async () => {
  await withClient({ num_devices: 4, delay_us: 5000 }, async (client) => {
    const bufs = await Promise.all(
      Array.from(
        { length: 32 },
        (_, i) => client.bufferFromHost(Float32Array.from([i, i + 0.5]), [2], "f32", client.devices[i % 4]),
      ),
    );
    const back = await Promise.all(bufs.map((b) => b.toHost()));
    back.forEach((u, i) => assertEquals(Array.from(new Float32Array(u.buffer)), [i, i + 0.5]));
  });
});

async function expectPjrtError(
  p: Promise<unknown> | (() => unknown),
  code: number,
  re: RegExp,
): Promise<void> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    assert(e instanceof PjrtError, `not a PjrtError: ${e}`);
    assertEquals(e.code, code, e.message);
    assert(re.test(e.message), e.message);
    return;
  }
  throw new Error("expected a PjrtError");
}

Deno.test("pjrt binding: injected errors become typed PjrtErrors (sync and through events)", async () => {
  const dev0 = (c: PjrtClient) => c.devices[0];
  await withClient({ fail: "compile" }, async (client) => {
    await expectPjrtError(
      () => client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 1 })),
      3,
      /Client_Compile failed: INVALID_ARGUMENT: test plugin: injected compile error/,
    );
  });
  await withClient({}, async (client) => {
    await expectPjrtError(
      () => client.compile("module {}", compileOptionsBytes({ numReplicas: 1 })),
      3,
      /@main/,
    );
    await expectPjrtError(() => client.compile(PROGRAM_2_RESULTS, new Uint8Array()), 3, /num_replicas = 0/);
    await expectPjrtError(
      () => client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 2 })),
      3,
      /> 1/,
    );
  });
  await withClient({ fail: "from_host" }, async (client) => {
    await expectPjrtError(
      client.bufferFromHost(new Float32Array(1), [1], "f32", dev0(client)),
      8,
      /RESOURCE_EXHAUSTED/,
    );
  });
  await withClient({ fail: "to_host", delay_us: 1000 }, async (client) => {
    const b = await client.bufferFromHost(new Float32Array(2), [2], "f32", dev0(client));
    await expectPjrtError(
      b.toHost(),
      13,
      /Buffer_ToHostBuffer failed: INTERNAL: test plugin: injected device-to-host/,
    );
  });
  for (
    const [fail, re] of [["execute", /injected execute failure/], ["execute_async", /asynchronous/]] as const
  ) {
    await withClient({ fail, num_devices: 2, delay_us: 1000 }, async (client) => {
      const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 2 }));
      const args = await Promise.all(client.devices.map(async (d) => [
        await client.bufferFromHost(new Float32Array(6), [2, 3], "f32", d),
        await client.bufferFromHost(new Int32Array(4), [4], "s32", d),
      ]));
      await expectPjrtError(exe.execute(args), 13, re);
      assertEquals(client.liveCounts().buffers, 4); // failed outputs were destroyed, arguments remain
    });
  }
  const api = PjrtApi.open(ensureTestPlugin());
  try {
    await expectPjrtError(
      () => PjrtClient.create(api, { no_such_option: { int64: 1 } }),
      3,
      /unknown or ill-typed create option/,
    );
    await expectPjrtError(() => PjrtClient.create(api, { num_devices: 99 }), 3, /num_devices must be/);
  } finally {
    api.close();
  }
  assertEquals(pluginCounts().all, 0);
});

Deno.test("pjrt binding: a device assignment in the compile options places replica r on the device named", async () => {
  // A plugin whose default assignment is not device order (TPU's is not), as the test double can be told to be.
  await withClient({ num_devices: 4, default_assignment: "reversed" }, async (client) => {
    const args = await Promise.all(client.devices.map(async (dev) => [
      await client.bufferFromHost(Int32Array.from([dev.id, 0, 0, 0]), [4], "s32", dev),
      await client.bufferFromHost(Int32Array.from([dev.id, 1, 1, 1]), [4], "s32", dev),
    ]));
    const program = PROGRAM_2_RESULTS.replaceAll("tensor<2x3xf32>", "tensor<4xi32>");
    // Without an assignment, argument lists in device order land on the wrong replicas: the plugin refuses.
    const generic = client.compile(program, compileOptionsBytes({ numReplicas: 4 }));
    await assertRejects(() => generic.execute(args), PjrtError);
    generic.destroy();
    const ids = client.devices.map((d) => d.id);
    const exe = client.compile(program, compileOptionsBytes({ numReplicas: 4, deviceIds: ids }));
    const outs = await exe.execute(args);
    for (let r = 0; r < 4; r++) {
      assertEquals(Array.from(new Int32Array((await outs[r][0].toHost()).buffer)), [ids[r], 0, 0, 0]);
    }
    // A permuted assignment takes argument lists in that order.
    const perm = [2, 0, 3, 1];
    const permuted = client.compile(
      program,
      compileOptionsBytes({ numReplicas: 4, deviceIds: perm.map((i) => ids[i]) }),
    );
    const pOuts = await permuted.execute(perm.map((i) => args[i]));
    assertEquals(Array.from(new Int32Array((await pOuts[0][1].toHost()).buffer)), [ids[2], 1, 1, 1]);
  });
});

Deno.test("pjrt binding: client.close() during an execution destroys the client only after the deferred destroys", async () => {
  const api = PjrtApi.open(ensureTestPlugin());
  const client = PjrtClient.create(api, { num_devices: 1, delay_us: 30000 });
  const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 1 }));
  const dev = client.devices[0];
  const a = await client.bufferFromHost(new Float32Array(6).fill(2), [2, 3], "f32", dev);
  const b = await client.bufferFromHost(new Int32Array(4).fill(5), [4], "s32", dev);
  const running = exe.execute([[a, b]]);
  const closed = client.close();
  // the arguments and the executable are in use: their destroys wait, and so does the client's
  assert(client.alive, "client destroyed while its buffers were in flight");
  assertEquals(pluginCounts().clients, 1);
  await running;
  await closed;
  assert(!client.alive);
  assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
  assertEquals(pluginCounts().violations, 0); // the plugin counts a client destroyed under live buffers
  assertEquals(pluginCounts().all, 0);
  api.close();
});

Deno.test("pjrt binding: a plugin needing a bigger PJRT_ExecuteOptions fails with one line naming both versions", async () => {
  await withClient({}, async (client) => {
    const exe = client.compile(PROGRAM_2_RESULTS, compileOptionsBytes({ numReplicas: 1 }));
    const dev = client.devices[0];
    const args = [
      await client.bufferFromHost(new Float32Array(6), [2, 3], "f32", dev),
      await client.bufferFromHost(new Int32Array(4), [4], "s32", dev),
    ];
    const old = Deno.env.get("PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE");
    Deno.env.set("PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE", "136");
    try {
      await exe.execute([args]);
      throw new Error("expected the plugin to refuse the struct");
    } catch (e) {
      assert(e instanceof PjrtStructSizeError, String(e));
      assertEquals([e.struct, e.expected, e.sent], ["PJRT_ExecuteOptions", 136, ARGS.ExecuteOptions.size]);
      assertEquals(
        e.message,
        "the PJRT plugin (C API 0.90) needs a PJRT_ExecuteOptions of 136 bytes; this binding (C API 0.94) " +
          "sends 112 (PJRT LoadedExecutable_Execute)",
      );
    } finally {
      old === undefined
        ? Deno.env.delete("PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE")
        : Deno.env.set("PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE", old);
    }
    // the same struct at the plugin's own size goes through
    const [[o]] = await exe.execute([args]);
    assertEquals((await o.toHost()).byteLength, 24);
  });
});

Deno.test("pjrt binding: PJRT_Plugin_Attributes are read (StableHLO versions as int64 lists)", () => {
  const api = PjrtApi.open(ensureTestPlugin());
  assertEquals(api.attributes(), {
    test_double: true,
    stablehlo_current_version: [1, 9, 0],
    stablehlo_minimum_version: [0, 9, 0],
  });
  api.close();
});

Deno.test("pjrt binding: create options are typed per option, never guessed from a JS number", () => {
  const enc = encodeNamedValues({
    memory_fraction: 1, // a float option: 1.0f, not int64 1
    cpu_device_count: 4,
    preallocate: false,
    ratio: { float: 0.5 },
    visible_devices: { int64List: [0, 1] },
    platform_name: "cuda",
    big: { int64: 2n ** 40n },
  });
  const v = new DataView(enc.bytes.buffer);
  const N = ARGS.NamedValue;
  const at = (i: number) => ({ type: v.getInt32(i * N.size + N.type, true), o: i * N.size + N.value });
  assertEquals(enc.count, 7);
  assertEquals(at(0).type, NAMED_VALUE_TYPE.float);
  assertEquals(v.getFloat32(at(0).o, true), 1);
  assertEquals(at(1).type, NAMED_VALUE_TYPE.int64);
  assertEquals(v.getBigInt64(at(1).o, true), 4n);
  assertEquals(at(2).type, NAMED_VALUE_TYPE.bool);
  assertEquals(at(3).type, NAMED_VALUE_TYPE.float);
  assertEquals(v.getFloat32(at(3).o, true), 0.5);
  assertEquals(at(4).type, NAMED_VALUE_TYPE.int64List);
  assertEquals(v.getBigUint64(4 * N.size + N.valueSize, true), 2n);
  assertEquals(at(5).type, NAMED_VALUE_TYPE.string);
  assertEquals(v.getBigInt64(at(6).o, true), 2n ** 40n);
  const refused: Record<string, NamedValue>[] = [{ some_new_option: 3 }, { cpu_device_count: 1.5 }, {
    preallocate: 1,
  }];
  for (const bad of refused) {
    try {
      encodeNamedValues(bad);
      throw new Error(`expected a TypeError for ${JSON.stringify(bad)}`);
    } catch (e) {
      assert(e instanceof TypeError && /PJRT create option/.test(e.message), String(e));
    }
  }
  assertEquals(parseCreateOption("cpu_device_count=4"), ["cpu_device_count", { int64: 4n }]);
  assertEquals(parseCreateOption("memory_fraction=1"), ["memory_fraction", { float: 1 }]);
  assertEquals(parseCreateOption("preallocate=false"), ["preallocate", false]);
  assertEquals(parseCreateOption("visible_devices=0,2"), ["visible_devices", { int64List: [0n, 2n] }]);
  assertEquals(parseCreateOption("my_knob:float=2"), ["my_knob", { float: 2 }]);
  assertEquals(parseCreateOption("my_name:string=a=b"), ["my_name", "a=b"]);
  for (
    const [bad, re] of [
      ["my_knob=3", /unknown option my_knob/],
      ["cpu_device_count=x", /int64/],
      [
        "preallocate=maybe",
        /bool/,
      ],
      ["nonsense", /NAME=VALUE/],
      ["k:complex=1", /not one of/],
    ] as const
  ) {
    try {
      parseCreateOption(bad);
      throw new Error(`expected ${bad} to be refused`);
    } catch (e) {
      assert(e instanceof TypeError && re.test(e.message), `${bad}: ${e}`);
    }
  }
});
