/*
 * A stand-in for the NVIDIA driver's NVML library (libnvidia-ml.so.1), for machines
 * without an NVIDIA GPU: the real pynvml loads it with ctypes, exactly as it loads the
 * driver's, so the collector runs through pynvml's real wrappers (ctypes structs,
 * string decoding, version checks, "function not found" for a symbol the library
 * lacks) instead of through tests/support/fake_pynvml.py, which replaces pynvml.
 *
 * Eight H100 SXM5 boards (HBM3, passively cooled, 18 NVLinks, MIG-capable with MIG
 * off, GPM) with the values of fake_pynvml's "eight_gpus" scenario, so the same
 * collection through either stand-in must give the same samples
 * (tests/collectors/test_gpu_driver_stub.py). Signatures, struct layouts, units and
 * return codes follow nvml.h (NVML API reference, r550):
 *
 *   - every call before nvmlInit* (or after the matching nvmlShutdown) answers
 *     NVML_ERROR_UNINITIALIZED; init and shutdown nest (a reference count);
 *   - a NULL output pointer, a handle or event set that is not the library's, an
 *     unknown enum value: NVML_ERROR_INVALID_ARGUMENT;
 *   - a string buffer shorter than the answer: NVML_ERROR_INSUFFICIENT_SIZE;
 *   - array queries (running processes, process utilisation) answer
 *     NVML_ERROR_INSUFFICIENT_SIZE with the count needed when the caller's buffer is
 *     NULL (count 0) or too small, NVML_SUCCESS with *count = 0 when there is nothing;
 *   - what this board does not have answers NVML_ERROR_NOT_SUPPORTED: fan speed
 *     (passively cooled), retired pages (Ampere and later remap rows instead);
 *   - nvmlDeviceGetProcessUtilization answers NVML_ERROR_NOT_FOUND when no sample is
 *     newer than lastSeenTimeStamp (microseconds, CPU clock);
 *   - nvmlEventSetWait_v2 sleeps up to timeoutms for an event, then answers
 *     NVML_ERROR_TIMEOUT; a queued event comes back at once, a timeout of 0 included;
 *   - versioned structs (nvmlGpmSupport_t, nvmlGpmMetricsGet_t) of another version:
 *     NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
 *   - a GPU lost answers NVML_ERROR_GPU_IS_LOST to every call from then on and raises
 *     no more events.
 *
 * Scripted through the environment, read at the first nvmlInit:
 *   NVML_STUB_LOST_ON_OPEN=<index>  that GPU is lost from the start
 *                                   (nvmlDeviceGetHandleByIndex answers GPU_IS_LOST)
 *   NVML_STUB_LOST_MIDWAY=<index>   that GPU opens (handle, UUID, name, events, MIG
 *                                   mode, GPM support), and is lost at its first reading
 *   NVML_STUB_XIDS=<gpu>:<xid>,...  XID critical errors raised, in this order, once the
 *                                   GPU's events are registered: the event set queues them
 *   NVML_STUB_MIG=<index>           that GPU has MIG on, split into 3g.40gb (GPU instance 1,
 *                                   30 GiB used, GPM), 2g.20gb (instance 5, GPM without
 *                                   occupancy or tensor) and 2g.20gb (instance 6, no GPM) in
 *                                   MIG device slots 0, 1 and 3 (slot 2 empty), and runs
 *                                   process 500 in instance 1 (fake_pynvml's "mig" layout)
 *
 * MIG (nvml.h "Multi Instance GPU Management"): on a MIG-enabled GPU utilisation, process
 * utilisation and whole-GPU GPM samples are NOT_SUPPORTED; a MIG device handle answers
 * its UUID, name ("<GPU name> MIG <profile>"), memory, instance ids and attributes, and
 * NOT_SUPPORTED to the device queries that only a whole GPU answers.
 *
 * Built with -DNVML_STUB_BEFORE_R535 it lacks two symbols the collector has fallbacks
 * for: nvmlDeviceGetCurrentClocksEventReasons (r535) and
 * nvmlDeviceGetComputeRunningProcesses_v3 (r510). The board stays the same, so the two
 * builds' samples can be compared (no real H100 runs a driver that old): the build is
 * there for pynvml's missing-symbol paths, not as a model of an old driver.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#ifdef NVML_STUB_WITH_HEADER
/* Compiled against NVIDIA's own nvml.h (tests/support/nvml_driver finds the one that
   ships with TensorFlow's CUDA headers): the compiler then checks every signature and
   struct below against the real declarations. NVML_NO_UNVERSIONED_FUNC_DEFS declares the
   versioned names as they are (and nvmlDeviceGetComputeRunningProcesses_v2). */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>
#else
/* The same declarations, written out, where no nvml.h is at hand. */
typedef enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
} nvmlReturn_t;
typedef int nvmlTemperatureSensors_t, nvmlClockType_t, nvmlPstates_t, nvmlMemoryErrorType_t,
    nvmlEccCounterType_t, nvmlPcieUtilCounter_t, nvmlEnableState_t, nvmlPageRetirementCause_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlEventSet_st *nvmlEventSet_t;
typedef struct nvmlGpmSample_st *nvmlGpmSample_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t, nvmlProcessInfo_t;
typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;
typedef struct { unsigned int version, isSupportedDevice; } nvmlGpmSupport_t;
typedef struct {
    unsigned int multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount,
        sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;
typedef struct {
    unsigned int metricId;
    nvmlReturn_t nvmlReturn;
    double value;
    struct { char *shortName, *longName, *unit; } metricInfo;
} nvmlGpmMetric_t;
typedef struct {
    unsigned int version, numMetrics;
    nvmlGpmSample_t sample1, sample2;
    nvmlGpmMetric_t metrics[98]; /* NVML_GPM_METRIC_MAX in r550; newer pynvml passes more: only numMetrics are read */
} nvmlGpmMetricsGet_t;
#endif

#define GPUS 8
#define NVLINKS 18 /* H100 SXM5 */
#define GiB (1024ULL * 1024ULL * 1024ULL)
#define NO_INSTANCE 0xFFFFFFFFu
#define XID_CRITICAL_ERROR 0x8ULL /* nvmlEventTypeXidCriticalError */

/* The library's side of the opaque handles nvml.h declares. */
struct nvmlDevice_st { unsigned index; int slot; /* MIG device slot; -1 for the GPU itself */ };
struct nvmlEventSet_st { int in_use; unsigned registered; /* bit per GPU */ };
struct nvmlGpmSample_st { int in_use; int taken; unsigned gpu; int slot; /* -1: the whole GPU */ };

static struct nvmlDevice_st devices[GPUS] = {{0, -1}, {1, -1}, {2, -1}, {3, -1}, {4, -1}, {5, -1}, {6, -1}, {7, -1}};

/* The MIG layout of NVML_STUB_MIG's GPU. GPM values by metric id 1, 2, 3, 5 (< 0: not offered). */
#define MIG_SLOTS 7 /* nvmlDeviceGetMaxMigDeviceCount on an H100 */
struct mig {
    int present;
    unsigned gpu_instance, compute_instance, slices;
    const char *profile;
    unsigned long long total, used;
    int gpm; /* has GPM at all */
    double gpm_values[4];
};
static const struct mig mig_layout[MIG_SLOTS] = {
    {1, 1, 0, 3, "3g.40gb", 40 * GiB, 30 * GiB, 1, {97.0, 96.5, -1, 60.0}},
    {1, 5, 0, 2, "2g.20gb", 20 * GiB, 1 * GiB, 1, {3.0, 2.0, -1, -1}},
    {0, 0, 0, 0, "", 0, 0, 0, {0}},
    {1, 6, 0, 2, "2g.20gb", 20 * GiB, 0, 0, {0}},
};
static struct nvmlDevice_st mig_devices[MIG_SLOTS];
static int mig_gpu = -1;
static struct nvmlEventSet_st event_sets[4];
static struct nvmlGpmSample_st gpm_samples[64];
static int initialized;
static int lost[GPUS];
static int lost_midway = -1;

#define MAX_XIDS 64
static struct { unsigned gpu; unsigned long long xid; int delivered; } xids[MAX_XIDS];
static int xid_count;

static int env_index(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : -1;
}

static void read_script(void) {
    const char *v = getenv("NVML_STUB_XIDS");
    unsigned gpu;
    unsigned long long xid;
    int used, on_open = env_index("NVML_STUB_LOST_ON_OPEN");
    memset(lost, 0, sizeof lost);
    if (on_open >= 0 && on_open < GPUS) lost[on_open] = 1;
    lost_midway = env_index("NVML_STUB_LOST_MIDWAY");
    mig_gpu = env_index("NVML_STUB_MIG");
    for (int i = 0; i < MIG_SLOTS; i++) {
        mig_devices[i].index = (unsigned)mig_gpu;
        mig_devices[i].slot = i;
    }
    xid_count = 0;
    while (v && *v && xid_count < MAX_XIDS && sscanf(v, "%u:%llu%n", &gpu, &xid, &used) == 2) {
        if (gpu < GPUS) {
            xids[xid_count].gpu = gpu;
            xids[xid_count].xid = xid;
            xids[xid_count].delivered = 0;
            xid_count++;
        }
        v += used;
        if (*v == ',') v++;
    }
}

static int mig_on(unsigned gpu) { return (int)gpu == mig_gpu; }

static const struct mig *mig_of(nvmlDevice_t d) { return d->slot >= 0 ? &mig_layout[d->slot] : NULL; }

/* The start of every call with a handle, a MIG device's included: initialised, a handle
   of ours, not lost (a MIG device is lost with its GPU). */
static nvmlReturn_t any_handle(nvmlDevice_t d) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    int gpu = d >= devices && d < devices + GPUS;
    int mig = d >= mig_devices && d < mig_devices + MIG_SLOTS && mig_gpu >= 0 && mig_layout[d->slot].present;
    if (!gpu && !mig) return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[d->index]) return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

/* ... of the calls only a whole GPU answers (NOT_SUPPORTED for a MIG device handle)... */
static nvmlReturn_t opened(nvmlDevice_t d) {
    nvmlReturn_t r = any_handle(d);
    if (r == NVML_SUCCESS && d->slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    return r;
}

/* ... and of every reading: the GPU scripted to be lost mid-sweep is lost from here on. */
static nvmlReturn_t reading(nvmlDevice_t d) {
    nvmlReturn_t r = opened(d);
    if (r == NVML_SUCCESS && (int)d->index == lost_midway) {
        lost[d->index] = 1;
        return NVML_ERROR_GPU_IS_LOST;
    }
    return r;
}

#define ANY_HANDLE(d) do { nvmlReturn_t r_ = any_handle(d); if (r_ != NVML_SUCCESS) return r_; } while (0)
#define OPENED(d) do { nvmlReturn_t r_ = opened(d); if (r_ != NVML_SUCCESS) return r_; } while (0)
#define READ(d) do { nvmlReturn_t r_ = reading(d); if (r_ != NVML_SUCCESS) return r_; } while (0)
#define OUT(p) do { if ((p) == NULL) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

static nvmlReturn_t copy_string(char *out, unsigned int length, const char *s) {
    OUT(out);
    if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

static unsigned long long now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
}

/* -- library ------------------------------------------------------------------------ */

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (!initialized) read_script();
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
    switch ((int)r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 10: return "Timeout";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 25: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, "550.54.15");
}

/* nvml.h: answers without nvmlInit too. */
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    OUT(version);
    *version = 12040; /* CUDA 12.4 */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    OUT(count);
    *count = GPUS;
    return NVML_SUCCESS;
}

/* -- opening a GPU ------------------------------------------------------------------ */

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    OUT(device);
    if (index >= GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    if (lost[index]) return NVML_ERROR_GPU_IS_LOST;
    *device = &devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    char s[96];
    ANY_HANDLE(d);
    if (d->slot >= 0) snprintf(s, sizeof s, "MIG-00000000-0000-0000-%04u-%012d", d->index, d->slot);
    else snprintf(s, sizeof s, "GPU-00000000-0000-0000-0000-%012u", d->index);
    return copy_string(uuid, length, s);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    char s[96];
    ANY_HANDLE(d);
    /* A MIG device is named "<GPU name> MIG <profile>", as nvidia-smi -L shows. */
    if (d->slot >= 0) snprintf(s, sizeof s, "NVIDIA H100 80GB HBM3 MIG %s", mig_of(d)->profile);
    else snprintf(s, sizeof s, "NVIDIA H100 80GB HBM3");
    return copy_string(name, length, s);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    OPENED(d);
    OUT(current);
    OUT(pending);
    *current = *pending = mig_on(d->index) ? 1 : 0; /* NVML_DEVICE_MIG_ENABLE / _DISABLE */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    OPENED(d);
    OUT(count);
    *count = mig_on(d->index) ? MIG_SLOTS : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    OPENED(d);
    OUT(mig);
    if (!mig_on(d->index) || index >= MIG_SLOTS) return NVML_ERROR_INVALID_ARGUMENT;
    if (!mig_layout[index].present) return NVML_ERROR_NOT_FOUND; /* the slots have gaps */
    *mig = &mig_devices[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    ANY_HANDLE(d);
    OUT(id);
    if (d->slot < 0) return NVML_ERROR_INVALID_ARGUMENT; /* not a MIG device handle */
    *id = mig_of(d)->gpu_instance;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    ANY_HANDLE(d);
    OUT(id);
    if (d->slot < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *id = mig_of(d)->compute_instance;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t d, nvmlDeviceAttributes_t *attrs) {
    ANY_HANDLE(d);
    OUT(attrs);
    memset(attrs, 0, sizeof *attrs);
    attrs->multiprocessorCount = d->slot >= 0 ? 18 * mig_of(d)->slices : 132;
    attrs->gpuInstanceSliceCount = d->slot >= 0 ? mig_of(d)->slices : 0;
    attrs->computeInstanceSliceCount = attrs->gpuInstanceSliceCount;
    attrs->memorySizeMB = (d->slot >= 0 ? mig_of(d)->total : 80 * GiB) / (1024 * 1024);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t d, nvmlGpmSupport_t *support) {
    OPENED(d);
    OUT(support);
    if (support->version != 1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH; /* NVML_GPM_SUPPORT_VERSION */
    support->isSupportedDevice = 1; /* Hopper */
    return NVML_SUCCESS;
}

/* -- readings (values of fake_pynvml's eight_gpus, in NVML's units) ------------------ */

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    READ(d);
    OUT(u);
    /* nvml.h: "On MIG-enabled GPUs, querying device utilization rates is not currently supported." */
    if (mig_on(d->index)) return NVML_ERROR_NOT_SUPPORTED;
    u->gpu = 10 * d->index + 5;
    u->memory = 5 * d->index + 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    if (d >= mig_devices && d < mig_devices + MIG_SLOTS) {
        /* nvml.h: on a MIG device handle, the memory of that GPU instance. */
        ANY_HANDLE(d);
        OUT(m);
        m->total = mig_of(d)->total;
        m->used = mig_of(d)->used;
        m->free = m->total - m->used;
        return NVML_SUCCESS;
    }
    READ(d);
    OUT(m);
    m->total = 80 * GiB;
    m->used = (d->index + 1) * 8 * GiB;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, nvmlTemperatureSensors_t sensor, unsigned int *temp) {
    READ(d);
    OUT(temp);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT; /* NVML_TEMPERATURE_GPU is the only sensor */
    *temp = 45 + d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    READ(d);
    OUT(mw);
    *mw = (100 + 20 * d->index) * 1000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    READ(d);
    OUT(mw);
    *mw = 700000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    READ(d);
    OUT(mj);
    *mj = 1000000; /* millijoules since the driver loaded */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, nvmlClockType_t type, unsigned int *mhz) {
    READ(d);
    OUT(mhz);
    switch (type) {
    case 0: /* NVML_CLOCK_GRAPHICS */
    case 1: *mhz = 1980 - 10 * d->index; break; /* NVML_CLOCK_SM */
    case 2: *mhz = 2619; break;                 /* NVML_CLOCK_MEM */
    case 3: *mhz = 1755; break;                 /* NVML_CLOCK_VIDEO */
    default: return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t d, nvmlPstates_t *pstate) {
    READ(d);
    OUT(pstate);
    *pstate = 0; /* P0 */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned int *speed) {
    READ(d);
    OUT(speed);
    return NVML_ERROR_NOT_SUPPORTED; /* passively cooled */
}

static unsigned long long clock_reasons(nvmlDevice_t d) {
    /* nvmlClocksEventReasonGpuIdle (0x1) on GPU 0, SwPowerCap (0x4) on GPU 7 */
    return (d->index == 0 ? 0x1ULL : 0) | (d->index == 7 ? 0x4ULL : 0);
}

#ifndef NVML_STUB_BEFORE_R535
nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *reasons) {
    READ(d);
    OUT(reasons);
    *reasons = clock_reasons(d);
    return NVML_SUCCESS;
}
#endif

/* The name before r535; drivers keep it (deprecated). */
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    READ(d);
    OUT(reasons);
    *reasons = clock_reasons(d);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, nvmlMemoryErrorType_t errorType, nvmlEccCounterType_t counterType,
                                         unsigned long long *count) {
    READ(d);
    OUT(count);
    if (errorType == 0 && counterType == 0) *count = d->index;            /* corrected, volatile */
    else if (errorType == 1 && counterType == 0) *count = d->index == 5;  /* uncorrected, volatile */
    else if (errorType == 0 && counterType == 1) *count = 100 + d->index; /* corrected, aggregate */
    else if (errorType == 1 && counterType == 1) *count = 0;              /* uncorrected, aggregate */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, nvmlPcieUtilCounter_t counter, unsigned int *kbps) {
    READ(d);
    OUT(kbps);
    /* A real driver samples a byte counter over 20 ms here; the stand-in answers at once. */
    if (counter == 0) *kbps = 1000 * (d->index + 1);      /* NVML_PCIE_UTIL_TX_BYTES */
    else if (counter == 1) *kbps = 2000 * (d->index + 1); /* NVML_PCIE_UTIL_RX_BYTES */
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t d, unsigned int *value) {
    READ(d);
    OUT(value);
    *value = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, nvmlEnableState_t *isActive) {
    READ(d);
    OUT(isActive);
    if (link >= NVLINKS) return NVML_ERROR_INVALID_ARGUMENT; /* a link this board lacks */
    *isActive = 1;                                           /* NVML_FEATURE_ENABLED */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *corrRows, unsigned int *uncRows,
                                       unsigned int *isPending, unsigned int *failureOccurred) {
    READ(d);
    OUT(corrRows);
    OUT(uncRows);
    OUT(isPending);
    OUT(failureOccurred);
    *corrRows = *uncRows = *isPending = *failureOccurred = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t d, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                       unsigned long long *addresses) {
    READ(d);
    OUT(pageCount);
    (void)cause, (void)addresses;
    return NVML_ERROR_NOT_SUPPORTED; /* Ampere and later remap rows instead */
}

nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t d, nvmlEnableState_t *isPending) {
    READ(d);
    OUT(isPending);
    return NVML_ERROR_NOT_SUPPORTED;
}

/* -- processes ------------------------------------------------------------------------ */

/* One process on each even GPU; on the MIG GPU one in GPU instance 1. */
static unsigned processes_of(nvmlDevice_t d) { return d->index % 2 == 0 || mig_on(d->index) ? 1 : 0; }

static nvmlReturn_t processes(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    READ(d);
    OUT(count);
    unsigned int n = processes_of(d);
    /* nvml.h: infos may be NULL only to ask for the count (*count = 0). */
    if (infos == NULL && *count != 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (n == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (mig_on(d->index)) {
        infos[0].pid = 500;
        infos[0].usedGpuMemory = 30 * GiB;
        infos[0].gpuInstanceId = 1;
        infos[0].computeInstanceId = 0;
    } else {
        infos[0].pid = 4000 + d->index;
        infos[0].usedGpuMemory = (d->index + 1) * 4 * GiB;
        infos[0].gpuInstanceId = infos[0].computeInstanceId = NO_INSTANCE;
    }
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
                                                     nvmlProcessInfo_v2_t *infos) {
    return processes(d, count, infos);
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, nvmlProcessUtilizationSample_t *samples,
                                             unsigned int *count, unsigned long long lastSeenTimeStamp) {
    READ(d);
    OUT(count);
    if (mig_on(d->index)) return NVML_ERROR_NOT_SUPPORTED; /* nvml.h: not on MIG-enabled GPUs */
    /* One sample per process, stamped now: newer than any time in the past asked about. */
    unsigned long long now = now_us();
    unsigned int n = now > lastSeenTimeStamp ? processes_of(d) : 0;
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (samples == NULL || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    samples[0].pid = 4000 + d->index;
    samples[0].timeStamp = now;
    samples[0].smUtil = 20 + d->index;
    samples[0].memUtil = 10 + d->index;
    samples[0].encUtil = samples[0].decUtil = 0;
    *count = n;
    return NVML_SUCCESS;
}

/* -- GPM (Hopper): activity between two samples ---------------------------------------- */

nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *sample) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    OUT(sample);
    for (unsigned i = 0; i < sizeof gpm_samples / sizeof *gpm_samples; i++) {
        if (!gpm_samples[i].in_use) {
            gpm_samples[i].in_use = 1;
            gpm_samples[i].taken = 0;
            *sample = &gpm_samples[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_INSUFFICIENT_SIZE; /* the stand-in's pool: a sweep frees what it took */
}

static int our_sample(nvmlGpmSample_t s) {
    return s >= gpm_samples && s < gpm_samples + sizeof gpm_samples / sizeof *gpm_samples && s->in_use;
}

nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t sample) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!our_sample(sample)) return NVML_ERROR_INVALID_ARGUMENT; /* freed twice, or not ours */
    sample->in_use = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t d, nvmlGpmSample_t sample) {
    READ(d);
    if (!our_sample(sample)) return NVML_ERROR_INVALID_ARGUMENT;
    if (mig_on(d->index)) return NVML_ERROR_NOT_SUPPORTED; /* a MIG-enabled GPU: per instance only */
    sample->taken = 1;
    sample->gpu = d->index;
    sample->slot = -1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t d, unsigned int gpuInstanceId, nvmlGpmSample_t sample) {
    READ(d);
    if (!our_sample(sample)) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; mig_on(d->index) && i < MIG_SLOTS; i++) {
        if (!mig_layout[i].present || mig_layout[i].gpu_instance != gpuInstanceId) continue;
        if (!mig_layout[i].gpm) return NVML_ERROR_NOT_SUPPORTED;
        sample->taken = 1;
        sample->gpu = d->index;
        sample->slot = i;
        return NVML_SUCCESS;
    }
    return NVML_ERROR_INVALID_ARGUMENT; /* no such GPU instance */
}

nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *request) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    OUT(request);
    if (request->version != 1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH; /* NVML_GPM_METRICS_GET_VERSION */
    nvmlGpmSample_t first = request->sample1, second = request->sample2;
    if (!our_sample(first) || !our_sample(second) || !first->taken || !second->taken ||
        first->gpu != second->gpu || first->slot != second->slot)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned g = second->gpu;
    /* NVML_GPM_METRIC_GRAPHICS_UTIL (1), SM_UTIL (2), SM_OCCUPANCY (3), ANY_TENSOR_UTIL (5) */
    double whole[4] = {10.0 * g + 5, 8.0 * g + 4, 5.0 * g + 2, 3.0 * g + 1};
    const double *values = second->slot >= 0 ? mig_layout[second->slot].gpm_values : whole;
    for (unsigned i = 0; i < request->numMetrics; i++) {
        nvmlGpmMetric_t *m = &request->metrics[i];
        unsigned id = m->metricId;
        int k = id == 1 ? 0 : id == 2 ? 1 : id == 3 ? 2 : id == 5 ? 3 : -1;
        /* Each metric has its own return code: one the GPU (instance) lacks is NOT_SUPPORTED. */
        m->nvmlReturn = k >= 0 && values[k] >= 0 ? NVML_SUCCESS : NVML_ERROR_NOT_SUPPORTED;
        m->value = m->nvmlReturn == NVML_SUCCESS ? values[k] : 0;
    }
    return NVML_SUCCESS;
}

/* -- events ------------------------------------------------------------------------------ */

static int our_set(nvmlEventSet_t set) {
    return set >= event_sets && set < event_sets + sizeof event_sets / sizeof *event_sets && set->in_use;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    OUT(set);
    for (unsigned i = 0; i < sizeof event_sets / sizeof *event_sets; i++) {
        if (!event_sets[i].in_use) {
            event_sets[i].in_use = 1;
            event_sets[i].registered = 0;
            *set = &event_sets[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_INSUFFICIENT_SIZE; /* the stand-in's pool */
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long eventTypes, nvmlEventSet_t set) {
    OPENED(d);
    if (!our_set(set) || eventTypes == 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (eventTypes & ~XID_CRITICAL_ERROR) return NVML_ERROR_NOT_SUPPORTED; /* XIDs only in the stand-in */
    set->registered |= 1u << d->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!our_set(set)) return NVML_ERROR_INVALID_ARGUMENT;
    OUT(data);
    /* nvml.h: only events of registered devices, raised after registration, are delivered. */
    for (int i = 0; i < xid_count; i++) {
        unsigned gpu = xids[i].gpu;
        if (xids[i].delivered || !(set->registered & (1u << gpu)) || lost[gpu]) continue;
        xids[i].delivered = 1;
        data->device = &devices[gpu];
        data->eventType = XID_CRITICAL_ERROR;
        data->eventData = xids[i].xid;
        data->gpuInstanceId = data->computeInstanceId = NO_INSTANCE;
        return NVML_SUCCESS;
    }
    /* Nothing queued: the scripted XIDs were all raised already, so wait out the timeout. */
    struct timespec t = {timeoutms / 1000, (long)(timeoutms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    return NVML_ERROR_TIMEOUT;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (!our_set(set)) return NVML_ERROR_INVALID_ARGUMENT;
    set->in_use = 0;
    return NVML_SUCCESS;
}
