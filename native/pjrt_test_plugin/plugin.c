/*
 * actshard PJRT TEST DOUBLE — not a compiler, not a runtime. It implements the part of the PJRT C API that
 * native/pjrt/ calls, over host memory, so CI can exercise the Deno FFI binding (marshalling, lifetimes,
 * multi-device argument lists, events completed from other threads, error paths) without an accelerator.
 *
 * Documented semantics (docs/pjrt.md):
 *  - Devices: `num_devices` create option (int64) or env PJRT_TEST_PLUGIN_DEVICES; default 1, at most 16.
 *  - Compile: format must be "mlir"; the text must contain `@main(`; the number of results is the number of
 *    `tensor<` types in main's result list; num_replicas is read from the serialized CompileOptionsProto
 *    (executable_build_options = field 3, num_replicas = field 4) and must be 1..num_devices.
 *    A device_assignment (executable_build_options field 9) maps replica r to a device; without one the
 *    default is device order, or the reverse with the create option `default_assignment` = "reversed" (a
 *    stand-in for plugins, like TPU's, whose default assignment is not device order).
 *  - Execute: output j of replica r is a copy of argument j of replica r (so num_args >= num_outputs). Every
 *    argument of replica r must live on replica r's device. Work completes on a worker thread after
 *    `delay_us`.
 *  - Layouts: device buffers are dense row-major unless the create option `device_layout` = "column_major"
 *    (a stand-in for TPU, whose device layouts are not row-major): then they are stored column-major, and
 *    Buffer_ToHostBuffer with host_layout = NULL returns the device layout's bytes, as XLA plugins do. A
 *    host_layout must be the Tiled variant (Strides is rejected, as by XLA) with no tiles and a permutation
 *    of the dimensions as minor_to_major; the copy is written in that layout.
 *  - Errors on demand: create option `fail` (default: env PJRT_TEST_PLUGIN_FAIL) = compile | execute |
 *    execute_async | from_host | to_host. For from_host, the create options `fail_device` (int64: only uploads
 *    to that device index fail) and `fail_after` (int64: the first N matching uploads succeed) pick one
 *    upload among many, e.g. one device's input of a multi-device step.
 *  - ABI knobs (read by GetPjrtApi): PJRT_TEST_PLUGIN_MAJOR, PJRT_TEST_PLUGIN_MINOR, PJRT_TEST_PLUGIN_API_SIZE.
 *  - Accounting: PjrtTestPlugin_Live(kind) counts objects handed out and not yet destroyed
 *    (0 errors, 1 events, 2 buffers, 3 executables, 4 clients, -1 all) and 5 = lifetime violations (a
 *    buffer destroyed while an execution or transfer that uses it was still running).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pjrt_abi.h"

#define MAX_DEVICES 16
#define MAX_DIMS 8

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int64_t g_live[6];

/* Atomic, so it can be called with or without g_mu held. */
static int env_int(const char* name, int dflt);

static void live_add(int kind, int delta) {
  __atomic_fetch_add(&g_live[kind], delta, __ATOMIC_SEQ_CST);
}

int64_t PjrtTestPlugin_Live(int kind) {
  int64_t v = 0;
  if (kind < 0) {
    for (int i = 0; i < 5; i++) v += __atomic_load_n(&g_live[i], __ATOMIC_SEQ_CST);
  } else if (kind < 6) {
    v = __atomic_load_n(&g_live[kind], __ATOMIC_SEQ_CST);
  }
  return v;
}

/* ------------------------------------------------------------------ errors */

struct TP_Error {
  int code;
  char* msg;
};

static TP_Error* new_error(int code, const char* fmt, ...) {
  TP_Error* e = calloc(1, sizeof *e);
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&e->msg, fmt, ap) < 0) e->msg = strdup("test plugin: (message lost)");
  va_end(ap);
  live_add(0, 1);
  return e;
}

static void Error_Destroy(TP_Error_Destroy_Args* a) {
  if (!a->error) return;
  free(a->error->msg);
  free(a->error);
  live_add(0, -1);
}

static void Error_Message(TP_Error_Message_Args* a) {
  a->message = a->error->msg;
  a->message_size = strlen(a->error->msg);
}

static TP_Error* Error_GetCode(TP_Error_GetCode_Args* a) {
  a->code = a->error->code;
  return NULL;
}

static TP_Error* Unimplemented(void* args) {
  (void)args;
  return new_error(12, "test plugin: this PJRT function is not implemented by the test double");
}

/* ------------------------------------------------------------------ events */

#define MAX_CALLBACKS 8
struct TP_Event {
  int refs; /* caller + workers; guarded by g_mu */
  bool ready;
  int err_code;
  char* err_msg;
  int ncb;
  TP_OnReadyCallback cbs[MAX_CALLBACKS];
  void* cb_args[MAX_CALLBACKS];
};

static TP_Event* new_event(void) {
  TP_Event* ev = calloc(1, sizeof *ev);
  ev->refs = 2; /* the caller's handle and the completing side */
  live_add(1, 1);
  return ev;
}

static void event_unref_locked(TP_Event* ev) {
  if (--ev->refs == 0) {
    free(ev->err_msg);
    free(ev);
  }
}

static TP_Error* event_error_locked(TP_Event* ev) {
  return ev->err_code ? new_error(ev->err_code, "%s", ev->err_msg) : NULL;
}

/* Marks the event ready (err_code 0 = success), runs callbacks, drops the completing side's reference. */
static void event_complete(TP_Event* ev, int err_code, const char* msg) {
  pthread_mutex_lock(&g_mu);
  ev->ready = true;
  ev->err_code = err_code;
  if (err_code) ev->err_msg = strdup(msg);
  int n = ev->ncb;
  ev->ncb = 0;
  TP_OnReadyCallback cbs[MAX_CALLBACKS];
  void* args[MAX_CALLBACKS];
  memcpy(cbs, ev->cbs, sizeof cbs);
  memcpy(args, ev->cb_args, sizeof args);
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
  for (int i = 0; i < n; i++) cbs[i](err_code ? new_error(err_code, "%s", msg) : NULL, args[i]);
  pthread_mutex_lock(&g_mu);
  event_unref_locked(ev);
  pthread_mutex_unlock(&g_mu);
}

static TP_Error* Event_Destroy(TP_Event_Args* a) {
  if (!a->event) return NULL;
  pthread_mutex_lock(&g_mu);
  live_add(1, -1);
  event_unref_locked(a->event);
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

static TP_Error* Event_IsReady(TP_Event_IsReady_Args* a) {
  pthread_mutex_lock(&g_mu);
  a->is_ready = a->event->ready;
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

static TP_Error* Event_Error(TP_Event_Args* a) {
  pthread_mutex_lock(&g_mu);
  TP_Error* e = a->event->ready ? event_error_locked(a->event)
                                : new_error(9, "test plugin: Event_Error called before the event is ready");
  pthread_mutex_unlock(&g_mu);
  return e;
}

static TP_Error* Event_Await(TP_Event_Args* a) {
  pthread_mutex_lock(&g_mu);
  while (!a->event->ready) pthread_cond_wait(&g_cv, &g_mu);
  TP_Error* e = event_error_locked(a->event);
  pthread_mutex_unlock(&g_mu);
  return e;
}

static TP_Error* Event_OnReady(TP_Event_OnReady_Args* a) {
  pthread_mutex_lock(&g_mu);
  TP_Event* ev = a->event;
  if (!ev->ready) {
    if (ev->ncb == MAX_CALLBACKS) {
      pthread_mutex_unlock(&g_mu);
      return new_error(8, "test plugin: too many OnReady callbacks on one event");
    }
    ev->cbs[ev->ncb] = a->callback;
    ev->cb_args[ev->ncb++] = a->user_arg;
    pthread_mutex_unlock(&g_mu);
    return NULL;
  }
  TP_Error* e = event_error_locked(ev);
  pthread_mutex_unlock(&g_mu);
  a->callback(e, a->user_arg);
  return NULL;
}

/* ------------------------------------------------------------ client/devices */

struct TP_Device {
  int index;
  TP_Client* client;
};

struct TP_Client {
  int num_devices;
  TP_Device devices[MAX_DEVICES];
  TP_Device* device_ptrs[MAX_DEVICES];
  char fail[32];
  int64_t delay_us;
  bool reversed_default_assignment;
  bool column_major; /* device layout: see `device_layout` */
  int64_t fail_device; /* -1: any */
  int64_t fail_after;
  int64_t fail_seen; /* matching calls so far (atomic) */
  int64_t live; /* buffers and loaded executables of this client not yet destroyed (atomic) */
};

static TP_Error* Plugin_Initialize(TP_Plugin_Initialize_Args* a) {
  (void)a;
  return NULL;
}

static TP_NamedValue g_attrs[3];
static const int64_t g_shlo_current[3] = {1, 9, 0}, g_shlo_minimum[3] = {0, 9, 0};
static TP_Error* Plugin_Attributes(TP_Plugin_Attributes_Args* a) {
  g_attrs[0].struct_size = sizeof(TP_NamedValue);
  g_attrs[0].name = "test_double";
  g_attrs[0].name_size = strlen("test_double");
  g_attrs[0].type = 4;
  g_attrs[0].bool_value = true;
  g_attrs[0].value_size = 1;
  const char* names[2] = {"stablehlo_current_version", "stablehlo_minimum_version"};
  const int64_t* lists[2] = {g_shlo_current, g_shlo_minimum};
  for (int i = 0; i < 2; i++) {
    TP_NamedValue* v = &g_attrs[1 + i];
    v->struct_size = sizeof(TP_NamedValue);
    v->name = names[i];
    v->name_size = strlen(names[i]);
    v->type = 2; /* int64 list */
    v->int64_array_value = lists[i];
    v->value_size = 3;
  }
  a->attributes = g_attrs;
  a->num_attributes = 3;
  return NULL;
}

static bool name_is(const TP_NamedValue* v, const char* name) {
  return v->name_size == strlen(name) && memcmp(v->name, name, v->name_size) == 0;
}

static TP_Error* Client_Create(TP_Client_Create_Args* a) {
  TP_Client* c = calloc(1, sizeof *c);
  const char* env = getenv("PJRT_TEST_PLUGIN_DEVICES");
  c->num_devices = env ? atoi(env) : 1;
  c->fail_device = -1;
  const char* fail = getenv("PJRT_TEST_PLUGIN_FAIL");
  if (fail) snprintf(c->fail, sizeof c->fail, "%s", fail);
  for (size_t i = 0; i < a->num_options; i++) {
    const TP_NamedValue* v = &a->create_options[i];
    if (name_is(v, "num_devices") && v->type == 1) {
      c->num_devices = (int)v->int64_value;
    } else if (name_is(v, "fail_device") && v->type == 1) {
      c->fail_device = v->int64_value;
    } else if (name_is(v, "fail_after") && v->type == 1) {
      c->fail_after = v->int64_value;
    } else if (name_is(v, "delay_us") && v->type == 1) {
      c->delay_us = v->int64_value;
    } else if (name_is(v, "fail") && v->type == 0 && v->value_size < sizeof c->fail) {
      memcpy(c->fail, v->string_value, v->value_size);
    } else if (name_is(v, "device_layout") && v->type == 0) {
      c->column_major = v->value_size == 12 && memcmp(v->string_value, "column_major", 12) == 0;
    } else if (name_is(v, "default_assignment") && v->type == 0) {
      c->reversed_default_assignment = v->value_size == 8 && memcmp(v->string_value, "reversed", 8) == 0;
    } else {
      free(c);
      return new_error(3, "test plugin: unknown or ill-typed create option '%.*s'", (int)v->name_size, v->name);
    }
  }
  if (c->num_devices < 1 || c->num_devices > MAX_DEVICES) {
    int n = c->num_devices;
    free(c);
    return new_error(3, "test plugin: num_devices must be 1..%d, got %d", MAX_DEVICES, n);
  }
  for (int i = 0; i < c->num_devices; i++) {
    c->devices[i].index = i;
    c->devices[i].client = c;
    c->device_ptrs[i] = &c->devices[i];
  }
  live_add(4, 1);
  a->client = c;
  return NULL;
}

static TP_Error* Client_Destroy(TP_Client_Destroy_Args* a) {
  if (!a->client) return NULL;
  /* a client destroyed under its own buffers or executables: their later destroys would touch freed memory */
  if (__atomic_load_n(&a->client->live, __ATOMIC_SEQ_CST) != 0) live_add(5, 1);
  free(a->client);
  live_add(4, -1);
  return NULL;
}

static TP_Error* Client_PlatformName(TP_Client_String_Args* a) {
  a->str = "actshard_test_double";
  a->str_size = strlen(a->str);
  return NULL;
}

static TP_Error* Client_PlatformVersion(TP_Client_String_Args* a) {
  a->str = "test-double 1";
  a->str_size = strlen(a->str);
  return NULL;
}

static TP_Error* Client_Devices(TP_Client_Devices_Args* a) {
  a->devices = a->client->device_ptrs;
  a->num_devices = (size_t)a->client->num_devices;
  return NULL;
}

static TP_Error* Device_GetDescription(TP_Device_GetDescription_Args* a) {
  a->device_description = a->device; /* the device is its own description */
  return NULL;
}

static TP_Error* DeviceDescription_Id(TP_DeviceDescription_Id_Args* a) {
  a->id = ((TP_Device*)a->device_description)->index;
  return NULL;
}

static TP_Error* DeviceDescription_Kind(TP_DeviceDescription_String_Args* a) {
  a->str = "TestDouble host device";
  a->str_size = strlen(a->str);
  return NULL;
}

/* ------------------------------------------------------------------ buffers */

struct TP_Buffer {
  int refs; /* guarded by g_mu */
  bool destroyed;
  bool ready;
  int err_code;
  char* err_msg;
  int type;
  int64_t dims[MAX_DIMS];
  int64_t minor_to_major[MAX_DIMS]; /* the device layout */
  size_t num_dims;
  size_t nbytes;
  unsigned char* data;
  int device;
  TP_Client* client;
};

static size_t element_size(int type) {
  switch (type) {
    case 1: case 2: case 6: return 1;             /* PRED S8 U8 */
    case 3: case 7: case 10: case 13: return 2;   /* S16 U16 F16 BF16 */
    case 4: case 8: case 11: return 4;            /* S32 U32 F32 */
    case 5: case 9: case 12: return 8;            /* S64 U64 F64 */
    default: return 0;
  }
}

static TP_Buffer* new_buffer(TP_Client* c, int type, const int64_t* dims, size_t num_dims, int device) {
  TP_Buffer* b = calloc(1, sizeof *b);
  b->client = c;
  if (c) __atomic_add_fetch(&c->live, 1, __ATOMIC_SEQ_CST);
  b->refs = 1;
  b->type = type;
  b->num_dims = num_dims;
  size_t n = element_size(type);
  for (size_t i = 0; i < num_dims; i++) {
    b->dims[i] = dims[i];
    /* row-major: the last dimension is the most minor; column-major: the first */
    b->minor_to_major[i] = c && c->column_major ? (int64_t)i : (int64_t)(num_dims - 1 - i);
    n *= (size_t)dims[i];
  }
  b->nbytes = n;
  b->data = malloc(n ? n : 1);
  b->device = device;
  live_add(2, 1);
  return b;
}

static void buffer_unref_locked(TP_Buffer* b) {
  if (--b->refs == 0) {
    free(b->data);
    free(b->err_msg);
    free(b);
  }
}

static void buffer_set_ready(TP_Buffer* b, int err_code, const char* msg) {
  pthread_mutex_lock(&g_mu);
  b->ready = true;
  b->err_code = err_code;
  if (err_code) b->err_msg = strdup(msg);
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

/* Waits until `b` is ready; returns its error code (message copied into msg). */
static int buffer_wait(TP_Buffer* b, char* msg, size_t msg_size) {
  pthread_mutex_lock(&g_mu);
  while (!b->ready) pthread_cond_wait(&g_cv, &g_mu);
  int code = b->err_code;
  if (code) snprintf(msg, msg_size, "%s", b->err_msg);
  pthread_mutex_unlock(&g_mu);
  return code;
}

static void spawn(void* (*fn)(void*), void* arg) {
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_create(&t, &attr, fn, arg);
  pthread_attr_destroy(&attr);
}

static void pause_us(int64_t us) {
  if (us > 0) usleep((useconds_t)us);
}

/* Copies a dense array of `dims` from layout src_m2m to layout dst_m2m (minor_to_major permutations). */
static void copy_layout(void* dst, const int64_t* dst_m2m, const void* src, const int64_t* src_m2m,
                        const int64_t* dims, size_t rank, size_t elsize) {
  size_t n = 1;
  for (size_t i = 0; i < rank; i++) n *= (size_t)dims[i];
  if (rank == 0 || memcmp(dst_m2m, src_m2m, rank * sizeof(int64_t)) == 0) {
    memcpy(dst, src, n * elsize);
    return;
  }
  size_t sstride[MAX_DIMS], dstride[MAX_DIMS], idx[MAX_DIMS] = {0};
  size_t s = 1, d = 1;
  for (size_t k = 0; k < rank; k++) {
    sstride[src_m2m[k]] = s;
    s *= (size_t)dims[src_m2m[k]];
    dstride[dst_m2m[k]] = d;
    d *= (size_t)dims[dst_m2m[k]];
  }
  for (size_t e = 0; e < n; e++) {
    size_t so = 0, dof = 0;
    for (size_t i = 0; i < rank; i++) {
      so += idx[i] * sstride[i];
      dof += idx[i] * dstride[i];
    }
    memcpy((char*)dst + dof * elsize, (const char*)src + so * elsize, elsize);
    for (size_t i = rank; i-- > 0;) { /* odometer over logical indices */
      if (++idx[i] < (size_t)dims[i]) break;
      idx[i] = 0;
    }
  }
}

/* Host data handed to BufferFromHostBuffer is dense row-major. */
static void row_major(int64_t* m2m, size_t rank) {
  for (size_t i = 0; i < rank; i++) m2m[i] = (int64_t)(rank - 1 - i);
}

static void store_from_host(TP_Buffer* b, const void* src) {
  int64_t rm[MAX_DIMS];
  row_major(rm, b->num_dims);
  copy_layout(b->data, b->minor_to_major, src, rm, b->dims, b->num_dims, element_size(b->type));
}

typedef struct {
  TP_Buffer* buffer;
  const void* src;
  TP_Event* done;
  int64_t delay_us;
} FromHostJob;

static void* from_host_worker(void* p) {
  FromHostJob* j = p;
  pause_us(j->delay_us);
  store_from_host(j->buffer, j->src); /* the caller must keep `src` alive until `done` */
  buffer_set_ready(j->buffer, 0, NULL);
  event_complete(j->done, 0, NULL);
  pthread_mutex_lock(&g_mu);
  buffer_unref_locked(j->buffer);
  pthread_mutex_unlock(&g_mu);
  free(j);
  return NULL;
}

static TP_Error* Client_BufferFromHostBuffer(TP_Client_BufferFromHostBuffer_Args* a) {
  TP_Client* c = a->client;
  if (!a->device || a->device->client != c) return new_error(3, "test plugin: device is not one of this client's");
  if (strcmp(c->fail, "from_host") == 0 && (c->fail_device < 0 || c->fail_device == a->device->index) &&
      __atomic_add_fetch(&c->fail_seen, 1, __ATOMIC_SEQ_CST) > c->fail_after) {
    return new_error(8, "test plugin: injected host-to-device failure (device %d)", a->device->index);
  }
  if (!element_size(a->type)) return new_error(12, "test plugin: element type %d not supported", a->type);
  if (a->num_dims > MAX_DIMS) return new_error(3, "test plugin: at most %d dims", MAX_DIMS);
  if (a->byte_strides && a->num_byte_strides) return new_error(12, "test plugin: byte_strides not supported");
  for (size_t i = 0; i < a->num_dims; i++) {
    if (a->dims[i] < 0) return new_error(3, "test plugin: negative dimension %lld", (long long)a->dims[i]);
  }
  TP_Buffer* b = new_buffer(c, a->type, a->dims, a->num_dims, a->device->index);
  TP_Event* done = new_event();
  if (a->host_buffer_semantics == 0) {
    store_from_host(b, a->data);
    b->ready = true;
    event_complete(done, 0, NULL);
  } else {
    FromHostJob* j = calloc(1, sizeof *j);
    pthread_mutex_lock(&g_mu);
    b->refs++;
    pthread_mutex_unlock(&g_mu);
    *j = (FromHostJob){b, a->data, done, c->delay_us};
    spawn(from_host_worker, j);
  }
  a->done_with_host_buffer = done;
  a->buffer = b;
  return NULL;
}

static TP_Error* Buffer_Destroy(TP_Buffer_Destroy_Args* a) {
  if (!a->buffer) return NULL;
  pthread_mutex_lock(&g_mu);
  live_add(2, -1);
  if (a->buffer->client) __atomic_sub_fetch(&a->buffer->client->live, 1, __ATOMIC_SEQ_CST);
  a->buffer->destroyed = true;
  buffer_unref_locked(a->buffer);
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

static TP_Error* Buffer_ElementType(TP_Buffer_ElementType_Args* a) {
  a->type = a->buffer->type;
  return NULL;
}

static TP_Error* Buffer_Dimensions(TP_Buffer_Dimensions_Args* a) {
  a->dims = a->buffer->dims;
  a->num_dims = a->buffer->num_dims;
  return NULL;
}

typedef struct {
  TP_Buffer* src;
  void* dst;
  int64_t dst_m2m[MAX_DIMS]; /* the host layout */
  TP_Event* event;
  int64_t delay_us;
  bool fail;
} ToHostJob;

static void* to_host_worker(void* p) {
  ToHostJob* j = p;
  char msg[512];
  int code = buffer_wait(j->src, msg, sizeof msg);
  pause_us(j->delay_us);
  if (!code && j->fail) {
    code = 13;
    snprintf(msg, sizeof msg, "test plugin: injected device-to-host failure");
  }
  pthread_mutex_lock(&g_mu);
  if (j->src->destroyed) live_add(5, 1); /* the caller let go of a buffer mid-transfer */
  pthread_mutex_unlock(&g_mu);
  if (!code) { /* the caller must keep `dst` alive until `event` */
    copy_layout(j->dst, j->dst_m2m, j->src->data, j->src->minor_to_major, j->src->dims, j->src->num_dims,
                element_size(j->src->type));
  }
  event_complete(j->event, code, msg);
  pthread_mutex_lock(&g_mu);
  buffer_unref_locked(j->src);
  pthread_mutex_unlock(&g_mu);
  free(j);
  return NULL;
}

/* Validates a host layout for `b` and writes its minor_to_major into m2m (NULL: the device layout). */
static TP_Error* host_layout_of(const TP_Buffer* b, const TP_Buffer_MemoryLayout* l, int64_t* m2m) {
  if (!l) {
    memcpy(m2m, b->minor_to_major, sizeof b->minor_to_major);
    return NULL;
  }
  if (l->struct_size < TP_Buffer_MemoryLayout_STRUCT_SIZE) {
    return new_error(3, "test plugin: host_layout struct_size %zu < %zu", l->struct_size,
                     (size_t)TP_Buffer_MemoryLayout_STRUCT_SIZE);
  }
  if (l->type != 0) return new_error(3, "test plugin: host_layout with strides is not supported (as in XLA)");
  if (l->tiled.struct_size < sizeof(TP_Buffer_MemoryLayout_Tiled)) {
    return new_error(3, "test plugin: host_layout.tiled struct_size %zu", l->tiled.struct_size);
  }
  if (l->tiled.num_tiles > 0) return new_error(3, "test plugin: host_layout with tiles is not supported");
  if (l->tiled.minor_to_major_size != b->num_dims || (b->num_dims && !l->tiled.minor_to_major)) {
    return new_error(3, "test plugin: host_layout minor_to_major has %zu entries for a rank-%zu buffer",
                     l->tiled.minor_to_major_size, b->num_dims);
  }
  unsigned seen = 0;
  for (size_t i = 0; i < b->num_dims; i++) {
    int64_t d = l->tiled.minor_to_major[i];
    if (d < 0 || d >= (int64_t)b->num_dims || (seen & (1u << d))) {
      return new_error(3, "test plugin: host_layout minor_to_major is not a permutation of the dimensions");
    }
    seen |= 1u << d;
    m2m[i] = d;
  }
  return NULL;
}

static TP_Error* Buffer_ToHostBuffer(TP_Buffer_ToHostBuffer_Args* a) {
  TP_Buffer* b = a->src;
  int64_t m2m[MAX_DIMS];
  TP_Error* bad = host_layout_of(b, a->host_layout, m2m);
  if (bad) return bad;
  if (!a->dst) {
    a->dst_size = b->nbytes;
    return NULL;
  }
  if (a->dst_size < b->nbytes) {
    return new_error(3, "test plugin: dst_size %zu < buffer size %zu", a->dst_size, b->nbytes);
  }
  ToHostJob* j = calloc(1, sizeof *j);
  TP_Client* c = b->client;
  *j = (ToHostJob){b, a->dst, {0}, new_event(), c ? c->delay_us : 0, c && strcmp(c->fail, "to_host") == 0};
  memcpy(j->dst_m2m, m2m, sizeof m2m);
  pthread_mutex_lock(&g_mu);
  b->refs++;
  pthread_mutex_unlock(&g_mu);
  a->event = j->event;
  spawn(to_host_worker, j);
  return NULL;
}

typedef struct {
  TP_Buffer* buffer;
  TP_Event* event;
} ReadyJob;

static void* ready_worker(void* p) {
  ReadyJob* j = p;
  char msg[512];
  int code = buffer_wait(j->buffer, msg, sizeof msg);
  event_complete(j->event, code, msg);
  pthread_mutex_lock(&g_mu);
  buffer_unref_locked(j->buffer);
  pthread_mutex_unlock(&g_mu);
  free(j);
  return NULL;
}

static TP_Error* Buffer_ReadyEvent(TP_Buffer_ReadyEvent_Args* a) {
  ReadyJob* j = calloc(1, sizeof *j);
  j->buffer = a->buffer;
  j->event = new_event();
  pthread_mutex_lock(&g_mu);
  a->buffer->refs++;
  pthread_mutex_unlock(&g_mu);
  a->event = j->event;
  spawn(ready_worker, j);
  return NULL;
}

/* -------------------------------------------------------------- executables */

struct TP_Executable {
  bool loaded;
  int num_outputs;
  int num_replicas;
  int replica_device[MAX_DEVICES]; /* device index of each replica (the device assignment) */
  TP_Client* client;
};

static bool read_varint(const unsigned char** p, const unsigned char* end, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    unsigned char b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

/* Reads field `want` (varint) of the message nested at field `outer` (or top level when outer = 0). */
static bool proto_varint(const unsigned char* p, const unsigned char* end, int outer, int want, uint64_t* out) {
  while (p < end) {
    uint64_t tag, v;
    if (!read_varint(&p, end, &tag)) return false;
    int field = (int)(tag >> 3), wt = (int)(tag & 7);
    if (wt == 0) {
      if (!read_varint(&p, end, &v)) return false;
      if (outer == 0 && field == want) {
        *out = v;
        return true;
      }
    } else if (wt == 2) {
      if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
      if (outer != 0 && field == outer) return proto_varint(p, p + v, 0, want, out);
      p += v;
    } else if (wt == 1) {
      p += 8;
    } else if (wt == 5) {
      p += 4;
    } else {
      return false;
    }
  }
  return false;
}

/* The length-delimited field `want` of the message [p, end): its bytes in [*sp, *se). */
static bool proto_sub(const unsigned char* p, const unsigned char* end, int want, const unsigned char** sp,
                      const unsigned char** se) {
  while (p < end) {
    uint64_t tag, v;
    if (!read_varint(&p, end, &tag)) return false;
    int field = (int)(tag >> 3), wt = (int)(tag & 7);
    if (wt == 0) {
      if (!read_varint(&p, end, &v)) return false;
    } else if (wt == 2) {
      if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
      if (field == want) {
        *sp = p;
        *se = p + v;
        return true;
      }
      p += v;
    } else if (wt == 1) {
      p += 8;
    } else if (wt == 5) {
      p += 4;
    } else {
      return false;
    }
  }
  return false;
}

/*
 * replica_device_ids of computation 0 in executable_build_options (3).device_assignment (9)
 * .computation_devices (3), packed or not. Returns the count (0 when there is no device assignment), -1 when
 * malformed.
 */
static int assigned_devices(const unsigned char* p, const unsigned char* end, int64_t* ids, int max) {
  const unsigned char *b, *be, *da, *dae, *cd, *cde;
  if (!proto_sub(p, end, 3, &b, &be) || !proto_sub(b, be, 9, &da, &dae)) return 0;
  if (!proto_sub(da, dae, 3, &cd, &cde)) return -1;
  int n = 0;
  while (cd < cde) {
    uint64_t tag, v;
    if (!read_varint(&cd, cde, &tag)) return -1;
    if ((tag >> 3) == 1 && (tag & 7) == 0) {
      if (!read_varint(&cd, cde, &v) || n >= max) return -1;
      ids[n++] = (int64_t)v;
    } else if ((tag >> 3) == 1 && (tag & 7) == 2) {
      if (!read_varint(&cd, cde, &v) || v > (uint64_t)(cde - cd)) return -1;
      const unsigned char* pe = cd + v;
      while (cd < pe) {
        if (!read_varint(&cd, pe, &v) || n >= max) return -1;
        ids[n++] = (int64_t)v;
      }
    } else {
      return -1;
    }
  }
  return n;
}

static int count_substr(const char* s, size_t n, const char* needle) {
  int c = 0;
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++) {
    if (memcmp(s + i, needle, k) == 0) c++;
  }
  return c;
}

/* Number of `tensor<` types in @main's result list, or -1 when there is no @main. */
static int main_result_count(const char* code, size_t n) {
  const char* m = memmem(code, n, "@main(", 6);
  if (!m) return -1;
  const char* end = code + n;
  const char* p = m + 5;
  int depth = 0;
  for (; p < end; p++) {
    if (*p == '(') depth++;
    if (*p == ')' && --depth == 0) break;
  }
  if (p >= end) return -1;
  p++;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\t')) p++;
  if (end - p < 2 || memcmp(p, "->", 2) != 0) return 0;
  p += 2;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\t')) p++;
  const char* q = p;
  if (q < end && *q == '(') {
    depth = 0;
    for (; q < end; q++) {
      if (*q == '(') depth++;
      if (*q == ')' && --depth == 0) break;
    }
  } else {
    while (q < end && *q != '{') q++;
  }
  return count_substr(p, (size_t)(q - p), "tensor<");
}

static TP_Error* Client_Compile(TP_Client_Compile_Args* a) {
  TP_Client* c = a->client;
  const TP_Program* prog = a->program;
  if (strcmp(c->fail, "compile") == 0) return new_error(3, "test plugin: injected compile error");
  if (prog->format_size != 4 || memcmp(prog->format, "mlir", 4) != 0) {
    return new_error(3, "test plugin: program format must be \"mlir\"");
  }
  int results = main_result_count(prog->code, prog->code_size);
  if (results < 0) return new_error(3, "test plugin: no `func.func ... @main(` in the program");
  uint64_t replicas = 0;
  const unsigned char* opts = (const unsigned char*)a->compile_options;
  if (!proto_varint(opts, opts + a->compile_options_size, 3, 4, &replicas) || replicas < 1) {
    return new_error(3, "test plugin: compile options give num_replicas = 0 (executable_build_options.num_replicas)");
  }
  if (replicas > (uint64_t)c->num_devices) {
    return new_error(3, "test plugin: num_replicas %llu > %d devices", (unsigned long long)replicas, c->num_devices);
  }
  int64_t ids[MAX_DEVICES];
  int n_ids = assigned_devices(opts, opts + a->compile_options_size, ids, MAX_DEVICES);
  if (n_ids < 0 || (n_ids > 0 && n_ids != (int)replicas)) {
    return new_error(3, "test plugin: device_assignment does not list one device per replica");
  }
  for (int r = 0; r < n_ids; r++) {
    if (ids[r] < 0 || ids[r] >= c->num_devices) {
      return new_error(3, "test plugin: device_assignment names device %lld", (long long)ids[r]);
    }
  }
  TP_Executable* e = calloc(1, sizeof *e);
  e->loaded = true;
  e->num_outputs = results;
  e->num_replicas = (int)replicas;
  /* Without a device assignment the plugin picks its default: device order, or (default_assignment =
   * "reversed") the last devices first, as a stand-in for plugins (TPU) whose default is not device order. */
  for (int r = 0; r < (int)replicas; r++) {
    e->replica_device[r] = n_ids ? (int)ids[r] : c->reversed_default_assignment ? c->num_devices - 1 - r : r;
  }
  e->client = c;
  __atomic_add_fetch(&c->live, 1, __ATOMIC_SEQ_CST);
  live_add(3, 1);
  a->executable = e;
  return NULL;
}

static TP_Error* Executable_Destroy(TP_Executable_Destroy_Args* a) {
  if (!a->executable) return NULL;
  if (a->executable->loaded && a->executable->client) {
    __atomic_sub_fetch(&a->executable->client->live, 1, __ATOMIC_SEQ_CST);
  }
  free(a->executable);
  live_add(3, -1);
  return NULL;
}

static TP_Error* LoadedExecutable_GetExecutable(TP_LoadedExecutable_GetExecutable_Args* a) {
  TP_Executable* e = calloc(1, sizeof *e);
  *e = *a->loaded;
  e->loaded = false;
  live_add(3, 1);
  a->executable = e;
  return NULL;
}

static TP_Error* Executable_NumOutputs(TP_Executable_NumOutputs_Args* a) {
  a->num_outputs = (size_t)a->executable->num_outputs;
  return NULL;
}

typedef struct {
  int n_in, n_out;
  TP_Buffer** in;
  TP_Buffer** out;
  TP_Event* done;
  int64_t delay_us;
  bool fail;
} ExecJob;

static void* execute_worker(void* p) {
  ExecJob* j = p;
  char msg[512];
  int code = 0;
  for (int i = 0; i < j->n_in && !code; i++) code = buffer_wait(j->in[i], msg, sizeof msg);
  pause_us(j->delay_us);
  if (!code && j->fail) {
    code = 13;
    snprintf(msg, sizeof msg, "test plugin: injected asynchronous execution failure");
  }
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < j->n_in; i++) {
    if (j->in[i]->destroyed) live_add(5, 1); /* an argument was released while the execution used it */
  }
  pthread_mutex_unlock(&g_mu);
  for (int k = 0; k < j->n_out; k++) {
    if (!code) memcpy(j->out[k]->data, j->in[k]->data, j->out[k]->nbytes);
    buffer_set_ready(j->out[k], code, msg);
  }
  event_complete(j->done, code, msg);
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < j->n_in; i++) buffer_unref_locked(j->in[i]);
  for (int k = 0; k < j->n_out; k++) buffer_unref_locked(j->out[k]);
  pthread_mutex_unlock(&g_mu);
  free(j->in);
  free(j->out);
  free(j);
  return NULL;
}

static TP_Error* LoadedExecutable_Execute(TP_LoadedExecutable_Execute_Args* a) {
  TP_Executable* e = a->executable;
  TP_Client* c = e->client;
  if (!a->options) return new_error(3, "test plugin: execute options must not be null");
  /* XLA's check: a caller's struct smaller than the plugin's own is refused (PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE
   * stands in for a plugin built from a newer header whose PJRT_ExecuteOptions grew) */
  size_t own = (size_t)env_int("PJRT_TEST_PLUGIN_EXECUTE_OPTIONS_SIZE", 112);
  if (a->options->struct_size < own) {
    return new_error(3, "Unexpected PJRT_ExecuteOptions size: expected %zu, got %zu. The plugin is likely built "
                        "with a later version than the framework.", own, a->options->struct_size);
  }
  if (strcmp(c->fail, "execute") == 0) return new_error(13, "test plugin: injected execute failure");
  size_t nd = a->num_devices;
  if (a->execute_device ? nd != 1 : nd != (size_t)e->num_replicas) {
    return new_error(3, "test plugin: executable has %d replicas, got argument lists for %zu devices",
                     e->num_replicas, nd);
  }
  if (a->num_args < (size_t)e->num_outputs) {
    return new_error(3, "test plugin: %d outputs need at least as many arguments, got %zu", e->num_outputs,
                     a->num_args);
  }
  for (size_t d = 0; d < nd; d++) {
    int want = a->execute_device ? a->execute_device->index : e->replica_device[d];
    for (size_t i = 0; i < a->num_args; i++) {
      TP_Buffer* b = a->argument_lists[d][i];
      if (!b) return new_error(3, "test plugin: argument %zu of device %zu is null", i, d);
      if (b->destroyed) return new_error(3, "test plugin: argument %zu of device %zu was destroyed", i, d);
      if (b->device != want) {
        return new_error(3, "test plugin: argument %zu of device list %zu lives on device %d", i, d, b->device);
      }
    }
  }
  for (size_t d = 0; d < nd; d++) {
    ExecJob* j = calloc(1, sizeof *j);
    j->n_in = (int)a->num_args;
    j->n_out = e->num_outputs;
    j->in = calloc(a->num_args + 1, sizeof(TP_Buffer*));
    j->out = calloc((size_t)e->num_outputs + 1, sizeof(TP_Buffer*));
    j->delay_us = c->delay_us;
    j->fail = strcmp(c->fail, "execute_async") == 0;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < a->num_args; i++) {
      j->in[i] = a->argument_lists[d][i];
      j->in[i]->refs++;
    }
    pthread_mutex_unlock(&g_mu);
    for (int k = 0; k < e->num_outputs; k++) {
      TP_Buffer* src = j->in[k];
      TP_Buffer* out = new_buffer(c, src->type, src->dims, src->num_dims, src->device);
      memcpy(out->minor_to_major, src->minor_to_major, sizeof src->minor_to_major); /* a byte copy */
      out->refs++; /* the worker's */
      j->out[k] = out;
      a->output_lists[d][k] = out;
    }
    j->done = new_event();
    if (a->device_complete_events) {
      a->device_complete_events[d] = j->done;
    } else {
      pthread_mutex_lock(&g_mu);
      live_add(1, -1);
      j->done->refs--; /* nobody will destroy it: the worker's reference is the last */
      pthread_mutex_unlock(&g_mu);
    }
    spawn(execute_worker, j);
  }
  return NULL;
}

/* ---------------------------------------------------------------- the table */

static struct {
  size_t struct_size;
  void* extension_start;
  struct {
    size_t struct_size;
    void* extension_start;
    int major_version;
    int minor_version;
  } version;
  void* fns[TP_NUM_SLOTS];
} g_api;

static int env_int(const char* name, int dflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

const void* GetPjrtApi(void) {
  g_api.struct_size = (size_t)env_int("PJRT_TEST_PLUGIN_API_SIZE", 40 + 8 * TP_NUM_SLOTS);
  g_api.version.struct_size = 24;
  g_api.version.major_version = env_int("PJRT_TEST_PLUGIN_MAJOR", 0);
  g_api.version.minor_version = env_int("PJRT_TEST_PLUGIN_MINOR", 90);
  for (int i = 0; i < TP_NUM_SLOTS; i++) g_api.fns[i] = (void*)Unimplemented;
  g_api.fns[SLOT_Error_Destroy] = (void*)Error_Destroy;
  g_api.fns[SLOT_Error_Message] = (void*)Error_Message;
  g_api.fns[SLOT_Error_GetCode] = (void*)Error_GetCode;
  g_api.fns[SLOT_Plugin_Initialize] = (void*)Plugin_Initialize;
  g_api.fns[SLOT_Plugin_Attributes] = (void*)Plugin_Attributes;
  g_api.fns[SLOT_Event_Destroy] = (void*)Event_Destroy;
  g_api.fns[SLOT_Event_IsReady] = (void*)Event_IsReady;
  g_api.fns[SLOT_Event_Error] = (void*)Event_Error;
  g_api.fns[SLOT_Event_Await] = (void*)Event_Await;
  g_api.fns[SLOT_Event_OnReady] = (void*)Event_OnReady;
  g_api.fns[SLOT_Client_Create] = (void*)Client_Create;
  g_api.fns[SLOT_Client_Destroy] = (void*)Client_Destroy;
  g_api.fns[SLOT_Client_PlatformName] = (void*)Client_PlatformName;
  g_api.fns[SLOT_Client_PlatformVersion] = (void*)Client_PlatformVersion;
  g_api.fns[SLOT_Client_Devices] = (void*)Client_Devices;
  g_api.fns[SLOT_Client_AddressableDevices] = (void*)Client_Devices;
  g_api.fns[SLOT_Client_Compile] = (void*)Client_Compile;
  g_api.fns[SLOT_Client_BufferFromHostBuffer] = (void*)Client_BufferFromHostBuffer;
  g_api.fns[SLOT_DeviceDescription_Id] = (void*)DeviceDescription_Id;
  g_api.fns[SLOT_DeviceDescription_Kind] = (void*)DeviceDescription_Kind;
  g_api.fns[SLOT_Device_GetDescription] = (void*)Device_GetDescription;
  g_api.fns[SLOT_Executable_Destroy] = (void*)Executable_Destroy;
  g_api.fns[SLOT_Executable_NumOutputs] = (void*)Executable_NumOutputs;
  g_api.fns[SLOT_LoadedExecutable_Destroy] = (void*)Executable_Destroy;
  g_api.fns[SLOT_LoadedExecutable_GetExecutable] = (void*)LoadedExecutable_GetExecutable;
  g_api.fns[SLOT_LoadedExecutable_Execute] = (void*)LoadedExecutable_Execute;
  g_api.fns[SLOT_Buffer_Destroy] = (void*)Buffer_Destroy;
  g_api.fns[SLOT_Buffer_ElementType] = (void*)Buffer_ElementType;
  g_api.fns[SLOT_Buffer_Dimensions] = (void*)Buffer_Dimensions;
  g_api.fns[SLOT_Buffer_ToHostBuffer] = (void*)Buffer_ToHostBuffer;
  g_api.fns[SLOT_Buffer_ReadyEvent] = (void*)Buffer_ReadyEvent;
  return &g_api;
}
