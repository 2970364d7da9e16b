#!/usr/bin/env bash
# Run the GPU collector against the real NVML and print what it read next to
# nvidia-smi's answers for the same fields, with the differences; then the collector's
# cost per GPU per sweep. Needs an NVIDIA driver (nvidia-smi and libnvidia-ml.so.1).
#
#   scripts/gpu_check.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/plugins:$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA driver here (nvidia-smi missing or failing): nothing to compare." >&2
    exit 2
fi

echo "== nvidia-smi -L"; nvidia-smi -L
echo "== nvidia-smi -q (excerpt)"
nvidia-smi -q | grep -E "Product Name|MIG Mode|Current +:|Performance State|Fan Speed|Total Energy|Replays Since Reset|Xid" || true
FIELDS="index,uuid,name,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw,enforced.power.limit,clocks.sm,clocks.mem,pstate,fan.speed,ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total"
SMI_CSV="$(nvidia-smi --query-gpu="$FIELDS" --format=csv,noheader,nounits)"
echo "== nvidia-smi --query-gpu=$FIELDS"; echo "$SMI_CSV"

SMI_CSV="$SMI_CSV" FIELDS="$FIELDS" "$PY" - <<'PYEOF'
import os, time
from mlinfra.collectors.gpu import run

t = time.perf_counter()
result = run(window=1.0)
elapsed = time.perf_counter() - t
print(f"== collector: up={result.up} errors={result.errors} skipped={result.skipped} samples={len(result.samples)}")
ours = {}
for s in result.samples:
    if s.name.startswith("ml_gpu_") and "gpu_id" in s.labels and "gpu_instance" not in s.labels and "pid" not in s.labels:
        key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()) if k in ("type", "reason", "link", "cause", "xid"))
        ours.setdefault(s.labels["gpu_id"], {})[key] = s.value
MiB = 1024 ** 2
pairs = [  # nvidia-smi field, our series, factor from ours to nvidia-smi's unit, tolerance
    ("utilization.gpu", "ml_gpu_utilization_percent", 1, 15),
    ("utilization.memory", "ml_gpu_memory_utilization_percent", 1, 15),
    ("memory.used", "ml_gpu_memory_used_bytes", 1 / MiB, 64),
    ("memory.total", "ml_gpu_memory_total_bytes", 1 / MiB, 1),
    ("temperature.gpu", "ml_gpu_temperature_celsius", 1, 2),
    ("power.draw", "ml_gpu_power_usage_watts", 1, 30),
    ("enforced.power.limit", "ml_gpu_power_limit_watts", 1, 1),
    ("clocks.sm", "ml_gpu_sm_clock_mhz", 1, 200),
    ("clocks.mem", "ml_gpu_memory_clock_mhz", 1, 1),
    ("pstate", "ml_gpu_performance_state", 1, 0),
    ("fan.speed", "ml_gpu_fan_speed_percent", 1, 5),
    ("ecc.errors.corrected.volatile.total", "ml_gpu_ecc_errors_total{type=corrected}", 1, 0),
    ("ecc.errors.uncorrected.volatile.total", "ml_gpu_ecc_errors_total{type=uncorrected}", 1, 0),
]
fields = os.environ["FIELDS"].split(",")
differences = 0
for line in os.environ["SMI_CSV"].splitlines():
    row = dict(zip(fields, (c.strip() for c in line.split(","))))
    mine = ours.get(row["index"], {})
    print(f"-- GPU {row['index']} {row['name']} {row['uuid']}")
    for field, name, factor, tol in pairs:
        smi = row.get(field, "")
        if smi.startswith("P"):
            smi = smi[1:]
        got = mine.get(name)
        try:
            smi_v = float(smi)
        except ValueError:
            smi_v = None
        ours_v = None if got is None else got * factor
        if smi_v is None and ours_v is None:
            verdict = "both n/a"
        elif smi_v is None or ours_v is None:
            verdict = "DIFFERS (one side n/a)"
            differences += 1
        elif abs(smi_v - ours_v) <= tol:
            verdict = "same" if smi_v == ours_v else f"within {tol}"
        else:
            verdict = f"DIFFERS by {ours_v - smi_v:+g}"
            differences += 1
        print(f"   {field:<40} nvidia-smi {smi:>12}   mlinfra {'' if ours_v is None else f'{ours_v:g}':>12}   {verdict}")
    extra = sorted(k for k in mine if not any(k == p[1] for p in pairs))
    print("   also read:", ", ".join(f"{k}={mine[k]:g}" for k in extra))
gpus = max(1, len(os.environ["SMI_CSV"].splitlines()))
print(f"== collector cost: {elapsed:.3f} s for {gpus} GPU(s) with a 1 s listening window "
      f"-> {(elapsed - 1.0) / gpus * 1000:.1f} ms per GPU per sweep besides the window")
print(f"== differences beyond tolerance: {differences} (live figures move between the two reads)")
PYEOF

echo "== the collector against the raw NVML calls it makes, on this driver (bench/bench_gpu.py --real)"
"$PY" bench/bench_gpu.py --real
