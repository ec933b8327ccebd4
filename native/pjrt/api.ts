/**
 * The PJRT C API layout this binding relies on, in one table: function-table slots, Args struct sizes and field
 * byte offsets (x86-64 / LP64, little endian). Checked against the public `xla/pjrt/c/pjrt_c_api.h` (API 0.94;
 * the ABI only grows by appending fields and slots) and run against real XLA CPU plugins — see docs/pjrt.md.
 *
 * Every Args struct starts with `size_t struct_size` @0 and `PJRT_Extension_Base* extension_start` @8. We send
 * the newest STRUCT_SIZE we know, zero-filled. A plugin rejects a struct_size *smaller* than the one it was built
 * with ("Unexpected PJRT_ExecuteOptions size: expected 112, got 104"), so a plugin built from a header newer than
 * {@link BINDING_API_VERSION} whose struct has grown refuses our call; ffi.ts turns that into one line naming
 * both versions (`PjrtStructSizeError`, errors.ts). Larger sizes are fine: plugins read only the fields they know.
 *
 * @example
 * ```ts
 * import { ARGS, SLOT } from "./api.ts";
 * const args = new Uint8Array(ARGS.Client_Compile.size); // then set ARGS.Client_Compile.program, ...
 * console.log(SLOT.Client_Compile); // 20
 * ```
 */

/** Byte offset of function pointer `slot` inside `PJRT_Api`. */
export function slotOffset(slot: number): number {
  return 40 + 8 * slot;
}

/** Indices into the `PJRT_Api` function table (pointer i at byte 40 + 8·i). */
export const SLOT = {
  Error_Destroy: 0,
  Error_Message: 1,
  Error_GetCode: 2,
  Plugin_Initialize: 3,
  Plugin_Attributes: 4,
  Event_Destroy: 5,
  Event_IsReady: 6,
  Event_Error: 7,
  Event_Await: 8,
  Event_OnReady: 9,
  Client_Create: 10,
  Client_Destroy: 11,
  Client_PlatformName: 12,
  Client_PlatformVersion: 14,
  Client_Devices: 15,
  Client_AddressableDevices: 16,
  Client_Compile: 20,
  Client_BufferFromHostBuffer: 22,
  DeviceDescription_Id: 23,
  DeviceDescription_Kind: 26,
  Device_GetDescription: 29,
  Executable_Destroy: 40,
  Executable_NumOutputs: 44,
  LoadedExecutable_Destroy: 50,
  LoadedExecutable_GetExecutable: 51,
  LoadedExecutable_Execute: 55,
  Buffer_Destroy: 58,
  Buffer_ElementType: 59,
  Buffer_Dimensions: 60,
  Buffer_ToHostBuffer: 70,
  Buffer_ReadyEvent: 72,
} as const;

/** Name of a table slot. */
export type SlotName = keyof typeof SLOT;

/** Smallest `PJRT_Api.struct_size` that holds every slot this binding calls. */
export const MIN_API_STRUCT_SIZE: number = slotOffset(Math.max(...Object.values(SLOT)) + 1);

/** `PJRT_Api` header: struct_size @0, then the embedded `PJRT_Api_Version`. */
export const API = { structSize: 0, versionStructSize: 16, major: 32, minor: 36 } as const;

/**
 * The only major version this binding speaks.
 *
 * @example Usage
 * ```ts
 * import { PjrtApi, SUPPORTED_MAJOR } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * console.log(api.version.major === SUPPORTED_MAJOR); // true: PjrtApi.open refuses any other
 * api.close();
 * ```
 */
export const SUPPORTED_MAJOR = 0;

/**
 * The `pjrt_c_api.h` version the sizes and offsets below were taken from. Plugins met so far (docs/pjrt.md):
 * xla-cpu-pjrt 0.81, lammps-jax-pjrt-cpu 0.115 — both accept these sizes.
 *
 * @example Usage
 * ```ts
 * import { BINDING_API_VERSION } from "./mod.ts";
 * console.log(`PJRT C API ${BINDING_API_VERSION.major}.${BINDING_API_VERSION.minor}`); // PJRT C API 0.94
 * ```
 */
export const BINDING_API_VERSION = { major: 0, minor: 94 } as const;

/** Args structs: `size` is the header's `*_STRUCT_SIZE`; other keys are field byte offsets. */
export const ARGS = {
  Error_Destroy: { size: 24, error: 16 },
  Error_Message: { size: 40, error: 16, message: 24, messageSize: 32 },
  Error_GetCode: { size: 28, error: 16, code: 24 },
  Plugin_Initialize: { size: 16 },
  Plugin_Attributes: { size: 32, attributes: 16, numAttributes: 24 },
  Event: { size: 24, event: 16 }, // Destroy, Error, Await
  Event_IsReady: { size: 25, event: 16, isReady: 24 },
  NamedValue: { size: 56, name: 16, nameSize: 24, type: 32, value: 40, valueSize: 48 },
  Client_Create: { size: 88, options: 16, numOptions: 24, client: 64 },
  Client_Destroy: { size: 24, client: 16 },
  Client_String: { size: 40, client: 16, str: 24, strSize: 32 }, // PlatformName, PlatformVersion
  Client_Devices: { size: 40, client: 16, devices: 24, numDevices: 32 },
  Program: { size: 48, code: 16, codeSize: 24, format: 32, formatSize: 40 },
  Client_Compile: { size: 56, client: 16, program: 24, options: 32, optionsSize: 40, executable: 48 },
  Client_BufferFromHostBuffer: {
    size: 120,
    client: 16,
    data: 24,
    type: 32,
    dims: 40,
    numDims: 48,
    byteStrides: 56,
    numByteStrides: 64,
    semantics: 72,
    device: 80,
    memory: 88,
    deviceLayout: 96,
    doneWithHostBuffer: 104,
    buffer: 112,
  },
  Device_GetDescription: { size: 32, device: 16, description: 24 },
  DeviceDescription_Id: { size: 28, description: 16, id: 24 },
  DeviceDescription_Kind: { size: 40, description: 16, str: 24, strSize: 32 },
  Executable_Destroy: { size: 24, executable: 16 }, // and LoadedExecutable_Destroy
  LoadedExecutable_GetExecutable: { size: 32, loaded: 16, executable: 24 },
  Executable_NumOutputs: { size: 32, executable: 16, numOutputs: 24 },
  /** Fields past `extension_start` stay zero (no callbacks, launch_id 0, no context, no task ids). */
  ExecuteOptions: { size: 112 },
  LoadedExecutable_Execute: {
    size: 80,
    executable: 16,
    options: 24,
    argumentLists: 32,
    numDevices: 40,
    numArgs: 48,
    outputLists: 56,
    deviceCompleteEvents: 64,
    executeDevice: 72,
  },
  Buffer_Destroy: { size: 24, buffer: 16 },
  Buffer_ElementType: { size: 28, buffer: 16, type: 24 },
  Buffer_Dimensions: { size: 40, buffer: 16, dims: 24, numDims: 32 },
  Buffer_ToHostBuffer: { size: 56, src: 16, hostLayout: 24, dst: 32, dstSize: 40, event: 48 },
  /**
   * `PJRT_Buffer_MemoryLayout`: a union of the Tiled and Strides variants @16 (sized by the larger, Tiled: 56
   * bytes), then `PJRT_Buffer_MemoryLayout_Type type` (i32) @72; STRUCT_SIZE = 72 + 4.
   */
  Buffer_MemoryLayout: { size: 76, union: 16, type: 72 },
  /**
   * `PJRT_Buffer_MemoryLayout_Tiled` (embedded at Buffer_MemoryLayout.union; offsets relative to it):
   * minor_to_major (const int64_t*) @16, minor_to_major_size @24, tile_dims @32, tile_dim_sizes @40,
   * num_tiles @48; STRUCT_SIZE = 56. XLA's ToHostBuffer accepts only this variant and only with num_tiles = 0.
   */
  Buffer_MemoryLayout_Tiled: {
    size: 56,
    minorToMajor: 16,
    minorToMajorSize: 24,
    tileDims: 32,
    tileDimSizes: 40,
    numTiles: 48,
  },
  Buffer_ReadyEvent: { size: 32, buffer: 16, event: 24 },
} as const;

/** `PJRT_NamedValue_Type` names (spelled out, not `keyof typeof`, so the public type stands on its own). */
export type NamedValueType = "string" | "int64" | "int64List" | "float" | "bool";

/** `PJRT_NamedValue_Type`. */
export const NAMED_VALUE_TYPE = {
  string: 0,
  int64: 1,
  int64List: 2,
  float: 3,
  bool: 4,
} as const satisfies Record<
  NamedValueType,
  number
>;

/** `PJRT_Buffer_MemoryLayout_Type`. */
export const MEMORY_LAYOUT_TYPE = { tiled: 0, strides: 1 } as const;

/** `PJRT_HostBufferSemantics`. */
export const HOST_BUFFER_SEMANTICS = {
  immutableOnlyDuringCall: 0,
  immutableUntilTransferCompletes: 1,
} as const;

/** An element type name (spelled out, not `keyof typeof ELEMENT_TYPE`, so the public type stands on its own). */
export type ElementType =
  | "pred"
  | "s8"
  | "s16"
  | "s32"
  | "s64"
  | "u8"
  | "u16"
  | "u32"
  | "u64"
  | "f16"
  | "f32"
  | "f64"
  | "bf16";

/** `PJRT_Buffer_Type` values for the element types we move. */
export const ELEMENT_TYPE = {
  pred: 1,
  s8: 2,
  s16: 3,
  s32: 4,
  s64: 5,
  u8: 6,
  u16: 7,
  u32: 8,
  u64: 9,
  f16: 10,
  f32: 11,
  f64: 12,
  bf16: 13,
} as const satisfies Record<ElementType, number>;

/** Bytes per element. */
export const ELEMENT_BYTES: Record<ElementType, number> = {
  pred: 1,
  s8: 1,
  s16: 2,
  s32: 4,
  s64: 8,
  u8: 1,
  u16: 2,
  u32: 4,
  u64: 8,
  f16: 2,
  f32: 4,
  f64: 8,
  bf16: 2,
};

/** `PJRT_Error_Code` (absl status codes). */
export const ERROR_CODE_NAMES: Record<number, string> = {
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};
