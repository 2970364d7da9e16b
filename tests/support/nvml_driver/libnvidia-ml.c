/*
 * A stand-in for the NVIDIA driver's NVML library (libnvidia-ml.so.1), for machines
 * without an NVIDIA GPU: the real pynvml loads it with ctypes, exactly as it loads the
 * driver's, so the collector runs through pynvml's real wrappers (ctypes structs,
 * string decoding, version checks, "function not found" for a symbol the library
 * lacks) instead of through tests/support/fake_pynvml.py, which replaces pynvml.
 *
 * It answers with the values of fake_pynvml's "eight_gpus" scenario, so the same
 * collection through either stand-in must give the same samples
 * (tests/collectors/test_gpu_driver_stub.py). Signatures, struct layouts, units and
 * return codes follow nvml.h (NVML API reference, r550):
 *
 *   - every call before nvmlInit* (or after the matching nvmlShutdown) answers
 *     NVML_ERROR_UNINITIALIZED; init and shutdown nest (a reference count);
 *   - array queries (running processes, retired pages) answer
 *     NVML_ERROR_INSUFFICIENT_SIZE with the count needed when the caller's buffer is
 *     NULL or too small, NVML_SUCCESS with *count = 0 when there is nothing;
 *   - a query the board does not support answers NVML_ERROR_NOT_SUPPORTED (fan speed
 *     on a passively cooled board, NVLink without NVLink, MIG mode before Ampere,
 *     retired pages on Ampere and later);
 *   - nvmlDeviceGetProcessUtilization answers NVML_ERROR_NOT_FOUND when no sample is
 *     newer than the time asked about (here: never one);
 *   - nvmlEventSetWait_v2 answers NVML_ERROR_TIMEOUT when no event came in time.
 *
 * Scripted through the environment, read at nvmlInit:
 *   NVML_STUB_LOST_ON_OPEN=<index>  that GPU answers NVML_ERROR_GPU_IS_LOST to
 *                                           nvmlDeviceGetHandleByIndex (fell off the bus)
 *   NVML_STUB_LOST_MIDWAY=<index>   that GPU opens (handle, UUID, name, events,
 *                                           MIG mode), then answers GPU_IS_LOST to every
 *                                           reading (lost during the sweep)
 *   NVML_STUB_XIDS=<gpu>:<xid>,...  XID critical errors raised, in this order, once
 *                                           the GPU's events are registered: the event set
 *                                           queues them (nvmlEventSetWait_v2 returns one
 *                                           per call, a timeout of 0 included)
 * Built with -DNVML_STUB_BEFORE_R535 it lacks the symbols drivers before r535 lack
 * (nvmlDeviceGetCurrentClocksEventReasons, nvmlDeviceGetComputeRunningProcesses_v3).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
};

#define GPUS 8
#define GiB (1024ULL * 1024ULL * 1024ULL)
#define NO_INSTANCE 0xFFFFFFFFu

struct device { unsigned index; };
typedef struct device *nvmlDevice_t;
struct event_set { unsigned registered; /* bit per GPU */ };
typedef struct event_set *nvmlEventSet_t;

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
/* nvmlProcessInfo_v2_t == nvmlProcessInfo_t (v3) in layout */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;
typedef struct { unsigned int version, isSupportedDevice; } nvmlGpmSupport_t;

static struct device devices[GPUS] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};
static struct event_set the_event_set;
static int initialized;
static int lost_on_open = -1, lost_midway = -1;

#define MAX_XIDS 64
static struct { unsigned gpu; unsigned long long xid; int delivered; } xids[MAX_XIDS];
static int xid_count;

static void read_xids(void) {
    const char *v = getenv("NVML_STUB_XIDS");
    unsigned gpu;
    unsigned long long xid;
    int used;
    xid_count = 0;
    while (v && *v && xid_count < MAX_XIDS && sscanf(v, "%u:%llu%n", &gpu, &xid, &used) == 2) {
        if (gpu < 8) {
            xids[xid_count].gpu = gpu;
            xids[xid_count].xid = xid;
            xids[xid_count].delivered = 0;
            xid_count++;
        }
        v += used;
        if (*v == ',') v++;
    }
}

static int env_index(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : -1;
}

/* The start of every device call: initialised and a handle of ours. */
static nvmlReturn_t opened(nvmlDevice_t d) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (d < devices || d >= devices + GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

/* ... and of every reading: the GPU lost mid-sweep answers GPU_IS_LOST from here on. */
static nvmlReturn_t reading(nvmlDevice_t d) {
    nvmlReturn_t r = opened(d);
    if (r == NVML_SUCCESS && (int)d->index == lost_midway) return NVML_ERROR_GPU_IS_LOST;
    return r;
}

#define OPENED(d) do { nvmlReturn_t r_ = opened(d); if (r_ != NVML_SUCCESS) return r_; } while (0)
#define READ(d) do { nvmlReturn_t r_ = reading(d); if (r_ != NVML_SUCCESS) return r_; } while (0)

static nvmlReturn_t copy_string(char *out, unsigned int length, const char *s) {
    if (!out || strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

/* -- library ------------------------------------------------------------------------ */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    lost_on_open = env_index("NVML_STUB_LOST_ON_OPEN");
    lost_midway = env_index("NVML_STUB_LOST_MIDWAY");
    if (!initialized) read_xids();
    initialized++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    initialized--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 10: return "Timeout";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, "550.54.15");
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    *version = 12040; /* CUDA 12.4 */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    *count = GPUS;
    return NVML_SUCCESS;
}

/* -- opening a GPU ------------------------------------------------------------------ */

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (index >= GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    if ((int)index == lost_on_open) return NVML_ERROR_GPU_IS_LOST;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    char s[96];
    OPENED(d);
    snprintf(s, sizeof s, "GPU-00000000-0000-0000-0000-%012u", d->index);
    return copy_string(uuid, length, s);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    OPENED(d);
    return copy_string(name, length, "NVIDIA H100 80GB HBM3");
}

/* -- readings (values of fake_pynvml's eight_gpus, in NVML's units) ------------------ */

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    READ(d);
    u->gpu = 10 * d->index + 5;
    u->memory = 5 * d->index + 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    READ(d);
    m->total = 80 * GiB;
    m->used = (d->index + 1) * 8 * GiB;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *temp) {
    READ(d);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT; /* NVML_TEMPERATURE_GPU */
    *temp = 45 + d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    READ(d);
    *mw = (100 + 20 * d->index) * 1000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    READ(d);
    *mw = 700000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    READ(d);
    *mj = 1000000; /* millijoules since the driver loaded */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    READ(d);
    if (type == 1) *mhz = 1980 - 10 * d->index; /* NVML_CLOCK_SM */
    else if (type == 2) *mhz = 2619;            /* NVML_CLOCK_MEM */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, int *pstate) {
    READ(d);
    *pstate = 0; /* P0 */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned int *speed) {
    READ(d);
    (void)speed;
    return NVML_ERROR_NOT_SUPPORTED; /* passively cooled */
}

static unsigned long long clock_reasons(nvmlDevice_t d) {
    /* nvmlClocksEventReasonGpuIdle (0x1) on GPU 0, SwPowerCap (0x4) on GPU 7 */
    return (d->index == 0 ? 0x1ULL : 0) | (d->index == 7 ? 0x4ULL : 0);
}

#ifndef NVML_STUB_BEFORE_R535
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *reasons) {
    READ(d);
    *reasons = clock_reasons(d);
    return NVML_SUCCESS;
}
#endif

/* The name before r535; drivers keep it (deprecated). */
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    READ(d);
    *reasons = clock_reasons(d);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int errorType, int counterType,
                                         unsigned long long *count) {
    READ(d);
    if (errorType == 0 && counterType == 0) *count = d->index;                 /* corrected, volatile */
    else if (errorType == 1 && counterType == 0) *count = d->index == 5;       /* uncorrected, volatile */
    else if (errorType == 0 && counterType == 1) *count = 100 + d->index;      /* corrected, aggregate */
    else if (errorType == 1 && counterType == 1) *count = 0;                   /* uncorrected, aggregate */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned int *kbps) {
    READ(d);
    /* A real driver samples a byte counter over 20 ms here; the stub answers at once. */
    if (counter == 0) *kbps = 1000 * (d->index + 1);      /* NVML_PCIE_UTIL_TX_BYTES */
    else if (counter == 1) *kbps = 2000 * (d->index + 1); /* NVML_PCIE_UTIL_RX_BYTES */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t d, unsigned int *value) {
    READ(d);
    *value = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, int *isActive) {
    READ(d);
    (void)link, (void)isActive;
    return NVML_ERROR_NOT_SUPPORTED; /* no NVLink */
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *corrRows, unsigned int *uncRows,
                                       unsigned int *isPending, unsigned int *failureOccurred) {
    READ(d);
    *corrRows = *uncRows = *isPending = *failureOccurred = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t d, int cause, unsigned int *pageCount,
                                       unsigned long long *addresses) {
    READ(d);
    (void)cause, (void)pageCount, (void)addresses;
    return NVML_ERROR_NOT_SUPPORTED; /* Ampere and later remap rows instead */
}

nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t d, int *isPending) {
    READ(d);
    (void)isPending;
    return NVML_ERROR_NOT_SUPPORTED;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    OPENED(d);
    (void)current, (void)pending;
    return NVML_ERROR_NOT_SUPPORTED; /* not MIG-capable */
}

nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t d, nvmlGpmSupport_t *support) {
    OPENED(d);
    support->isSupportedDevice = 0; /* before Hopper's GPM */
    return NVML_SUCCESS;
}

/* -- processes ------------------------------------------------------------------------ */

static nvmlReturn_t processes(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    READ(d);
    unsigned int n = d->index % 2 == 0 ? 1 : 0; /* one process on each even GPU */
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (infos == NULL || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    infos[0].pid = 4000 + d->index;
    infos[0].usedGpuMemory = (d->index + 1) * 4 * GiB;
    infos[0].gpuInstanceId = infos[0].computeInstanceId = NO_INSTANCE;
    *count = n;
    return NVML_SUCCESS;
}

#ifndef NVML_STUB_BEFORE_R535
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return processes(d, count, infos);
}
#endif

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return processes(d, count, infos);
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, void *samples, unsigned int *count,
                                             unsigned long long lastSeenTimeStamp) {
    READ(d);
    (void)samples, (void)lastSeenTimeStamp;
    *count = 0;
    return NVML_ERROR_NOT_FOUND; /* no sample newer than lastSeenTimeStamp */
}

/* -- events ------------------------------------------------------------------------------ */

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    the_event_set.registered = 0;
    *set = &the_event_set;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long eventTypes, nvmlEventSet_t set) {
    OPENED(d);
    if (set != &the_event_set) return NVML_ERROR_INVALID_ARGUMENT;
    if (eventTypes & ~0x8ULL) return NVML_ERROR_NOT_SUPPORTED; /* XID critical errors (0x8) only here */
    set->registered |= 1u << d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (set != &the_event_set) return NVML_ERROR_INVALID_ARGUMENT;
    (void)timeoutms; /* the scripted XIDs are all queued already: no waiting */
    /* nvml.h: only events of registered devices, raised after registration, are delivered. */
    for (int i = 0; i < xid_count; i++) {
        if (xids[i].delivered || !(set->registered & (1u << xids[i].gpu))) continue;
        xids[i].delivered = 1;
        data->device = &devices[xids[i].gpu];
        data->eventType = 0x8; /* nvmlEventTypeXidCriticalError */
        data->eventData = xids[i].xid;
        data->gpuInstanceId = data->computeInstanceId = NO_INSTANCE;
        return NVML_SUCCESS;
    }
    return NVML_ERROR_TIMEOUT;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (set != &the_event_set) return NVML_ERROR_INVALID_ARGUMENT;
    set->registered = 0;
    return NVML_SUCCESS;
}
