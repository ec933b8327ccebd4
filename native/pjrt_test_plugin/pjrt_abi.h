/*
 * The slice of the PJRT C API ABI that actshard's TEST DOUBLE plugin implements (x86-64 / LP64).
 *
 * Written by this project from the documented layout (see docs/pjrt.md and ../shared/docs/pjrt.md); it is
 * not the XLA header. Every Args struct starts with {size_t struct_size; void* extension_start;}, so the
 * fields below start at byte 16. Offsets must agree with native/pjrt/api.ts (tests/pjrt_binding.test.ts
 * checks the plugin's view of them through the binding).
 */
#ifndef ACTSHARD_PJRT_ABI_H_
#define ACTSHARD_PJRT_ABI_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TP_Error TP_Error;
typedef struct TP_Event TP_Event;
typedef struct TP_Client TP_Client;
typedef struct TP_Device TP_Device;
typedef struct TP_Buffer TP_Buffer;
typedef struct TP_Executable TP_Executable;

#define TP_HEADER \
  size_t struct_size; \
  void* extension_start

typedef struct { TP_HEADER; TP_Error* error; } TP_Error_Destroy_Args;
typedef struct { TP_HEADER; const TP_Error* error; const char* message; size_t message_size; } TP_Error_Message_Args;
typedef struct { TP_HEADER; const TP_Error* error; int code; } TP_Error_GetCode_Args;
typedef struct { TP_HEADER; } TP_Plugin_Initialize_Args;
typedef struct { TP_HEADER; const void* attributes; size_t num_attributes; } TP_Plugin_Attributes_Args;

typedef struct { TP_HEADER; TP_Event* event; } TP_Event_Args; /* Destroy, Error, Await */
typedef struct { TP_HEADER; TP_Event* event; bool is_ready; } TP_Event_IsReady_Args;
typedef void (*TP_OnReadyCallback)(TP_Error* error, void* user_arg);
typedef struct { TP_HEADER; TP_Event* event; TP_OnReadyCallback callback; void* user_arg; } TP_Event_OnReady_Args;

typedef struct {
  TP_HEADER;
  const char* name;
  size_t name_size;
  int type; /* 0 string, 1 int64, 2 int64 list, 3 float, 4 bool */
  union {
    const char* string_value;
    int64_t int64_value;
    const int64_t* int64_array_value;
    float float_value;
    bool bool_value;
  };
  size_t value_size;
} TP_NamedValue;

typedef struct {
  TP_HEADER;
  const TP_NamedValue* create_options;
  size_t num_options;
  void* kv_get_callback;
  void* kv_get_user_arg;
  void* kv_put_callback;
  void* kv_put_user_arg;
  TP_Client* client; /* out */
  void* kv_try_get_callback;
  void* kv_try_get_user_arg;
} TP_Client_Create_Args;

typedef struct { TP_HEADER; TP_Client* client; } TP_Client_Destroy_Args;
typedef struct { TP_HEADER; TP_Client* client; const char* str; size_t str_size; } TP_Client_String_Args;
typedef struct { TP_HEADER; TP_Client* client; TP_Device* const* devices; size_t num_devices; } TP_Client_Devices_Args;

typedef struct { TP_HEADER; char* code; size_t code_size; const char* format; size_t format_size; } TP_Program;
typedef struct {
  TP_HEADER;
  TP_Client* client;
  const TP_Program* program;
  const char* compile_options;
  size_t compile_options_size;
  TP_Executable* executable; /* out */
} TP_Client_Compile_Args;

typedef struct {
  TP_HEADER;
  TP_Client* client;
  const void* data;
  int type;
  const int64_t* dims;
  size_t num_dims;
  const int64_t* byte_strides;
  size_t num_byte_strides;
  int host_buffer_semantics;
  TP_Device* device;
  void* memory;
  void* device_layout;
  TP_Event* done_with_host_buffer; /* out */
  TP_Buffer* buffer;               /* out */
} TP_Client_BufferFromHostBuffer_Args;

typedef struct { TP_HEADER; TP_Device* device; void* device_description; } TP_Device_GetDescription_Args;
typedef struct { TP_HEADER; void* device_description; int id; } TP_DeviceDescription_Id_Args;
typedef struct { TP_HEADER; void* device_description; const char* str; size_t str_size; } TP_DeviceDescription_String_Args;

typedef struct { TP_HEADER; TP_Executable* executable; } TP_Executable_Destroy_Args; /* both kinds */
typedef struct { TP_HEADER; TP_Executable* loaded; TP_Executable* executable; } TP_LoadedExecutable_GetExecutable_Args;
typedef struct { TP_HEADER; TP_Executable* executable; size_t num_outputs; } TP_Executable_NumOutputs_Args;

typedef struct { TP_HEADER; /* send/recv callbacks, launch_id, ... (unused) */ } TP_ExecuteOptions;
typedef struct {
  TP_HEADER;
  TP_Executable* executable;
  TP_ExecuteOptions* options;
  TP_Buffer* const* const* argument_lists;
  size_t num_devices;
  size_t num_args;
  TP_Buffer** const* output_lists;
  TP_Event** device_complete_events;
  TP_Device* execute_device;
} TP_LoadedExecutable_Execute_Args;

typedef struct { TP_HEADER; TP_Buffer* buffer; } TP_Buffer_Destroy_Args;
typedef struct { TP_HEADER; TP_Buffer* buffer; int type; } TP_Buffer_ElementType_Args;
typedef struct { TP_HEADER; TP_Buffer* buffer; const int64_t* dims; size_t num_dims; } TP_Buffer_Dimensions_Args;
typedef struct {
  TP_HEADER;
  const int64_t* minor_to_major;
  size_t minor_to_major_size;
  const int64_t* tile_dims;
  const size_t* tile_dim_sizes;
  size_t num_tiles;
} TP_Buffer_MemoryLayout_Tiled;
typedef struct {
  TP_HEADER;
  const int64_t* byte_strides;
  size_t num_byte_strides;
} TP_Buffer_MemoryLayout_Strides;
typedef struct {
  TP_HEADER;
  union {
    TP_Buffer_MemoryLayout_Tiled tiled;
    TP_Buffer_MemoryLayout_Strides strides;
  };
  int type; /* 0 tiled, 1 strides */
} TP_Buffer_MemoryLayout;
#define TP_Buffer_MemoryLayout_STRUCT_SIZE (offsetof(TP_Buffer_MemoryLayout, type) + sizeof(int))

typedef struct {
  TP_HEADER;
  TP_Buffer* src;
  const TP_Buffer_MemoryLayout* host_layout;
  void* dst;
  size_t dst_size;
  TP_Event* event; /* out */
} TP_Buffer_ToHostBuffer_Args;
typedef struct { TP_HEADER; TP_Buffer* buffer; TP_Event* event; } TP_Buffer_ReadyEvent_Args;

/* Slot numbers in the PJRT_Api function table (pointer i at byte 40 + 8*i). */
enum {
  SLOT_Error_Destroy = 0,
  SLOT_Error_Message = 1,
  SLOT_Error_GetCode = 2,
  SLOT_Plugin_Initialize = 3,
  SLOT_Plugin_Attributes = 4,
  SLOT_Event_Destroy = 5,
  SLOT_Event_IsReady = 6,
  SLOT_Event_Error = 7,
  SLOT_Event_Await = 8,
  SLOT_Event_OnReady = 9,
  SLOT_Client_Create = 10,
  SLOT_Client_Destroy = 11,
  SLOT_Client_PlatformName = 12,
  SLOT_Client_PlatformVersion = 14,
  SLOT_Client_Devices = 15,
  SLOT_Client_AddressableDevices = 16,
  SLOT_Client_Compile = 20,
  SLOT_Client_BufferFromHostBuffer = 22,
  SLOT_DeviceDescription_Id = 23,
  SLOT_DeviceDescription_Kind = 26,
  SLOT_Device_GetDescription = 29,
  SLOT_Executable_Destroy = 40,
  SLOT_Executable_NumOutputs = 44,
  SLOT_LoadedExecutable_Destroy = 50,
  SLOT_LoadedExecutable_GetExecutable = 51,
  SLOT_LoadedExecutable_Execute = 55,
  SLOT_Buffer_Destroy = 58,
  SLOT_Buffer_ElementType = 59,
  SLOT_Buffer_Dimensions = 60,
  SLOT_Buffer_ToHostBuffer = 70,
  SLOT_Buffer_ReadyEvent = 72,
  TP_NUM_SLOTS = 128 /* 40 + 8*128 = 1064, the table size of API 0.90 */
};

#endif
