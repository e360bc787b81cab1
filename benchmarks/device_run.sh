#!/usr/bin/env bash
# Issue 21 on a lent GPU in ONE call of the device tool: checks of the CUDA paths, then the
# timings of benchmarks/bench_device.py --full (floor, ratios, 256-row latency, vocabulary).
#
# Prepare once, here, in the repository root (the GPU image has no array-api-compat; the
# wheels are pure Python, about 160 KB):
#   echo /.whl/ >> "$(git rev-parse --git-common-dir)/info/exclude"
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       array-api-compat==1.16.0 array-api-strict==2.6.1
# Then one call (15 minutes of device time per task: about 1-2 to start, this script at
# most 590 s: the stage timeouts 30 + 140 + 140 + 100 + 130, each + 10 s to stop; no time is
# left for a second try, so read the whole output):
#   run(command="bash benchmarks/device_run.sh", carry=[".whl"], timeout_s=600)
# Everything is also written under $OUT (logs and the benchmark JSON come back).
# STAGES=env,tests,imagenet,imagenet32,vocab (the default: all) runs a subset.
#
# Stages, each under its own timeout so that a slow one cannot eat the others:
#   env        the GPU, torch, Python, the float32 matmul settings; ncinspect imports
#   tests      pytest on the GPU: tests/meter/test_meter_cudapath.py (its CUDA-only tests
#              exist where torch.cuda.is_available(): the Meter under torch's sync debug
#              mode "error", measure() and the Lightning callback in bf16-mixed on the GPU),
#              the Meter's device, distributed and backend tests, measure(), and
#              Meter(ignore_index=) (its CUDA-only test under sync debug mode "error")
#   imagenet   N = 1,281,167, d = 2048, C = 1000, float64: floor, both passes + compute,
#              ratio, the passes apart, Meter.update on 256 rows (pass 1 and pass 2)
#   imagenet32 the same in --precision float32 (against the float32 floor)
#   vocab      C = 50,257, d = 768, 2^20 Zipf tokens, float64
set -u
OUT=${OUT:-/tmp/ncinspect-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STAGES=${STAGES:-env,tests,imagenet,imagenet32,vocab}
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "device_run: wheel install failed"; exit 2; }
    export PYTHONPATH="$PWD:/tmp/site"
else
    echo "device_run: no .whl/*.whl carried (array-api-compat): see the header" >&2
    export PYTHONPATH="$PWD"
fi
has() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
status=0
stage() {  # stage NAME SECONDS COMMAND...: run it under a timeout, log to $OUT/NAME.log
    local name=$1 secs=$2
    shift 2
    echo "=== $name (timeout ${secs}s): $*"
    local t0=$SECONDS
    timeout --signal=INT --kill-after=10 "$secs" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}
if has env; then
    stage env 30 bash -c '
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
        '"$PY"' - <<PYEOF
import sys, torch, numpy, array_api_compat, ncinspect
print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__,
      "array_api_compat", array_api_compat.__version__, "ncinspect", ncinspect.__file__)
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
m = torch.backends.cuda.matmul
print("float32 matmul:", getattr(m, "fp32_precision", None), "allow_tf32", m.allow_tf32)
PYEOF'
fi
if has tests; then
    stage tests 140 $PY -m pytest -q -x -p no:cacheprovider -m "not slow" \
        tests/meter/test_meter_cudapath.py tests/meter/test_meter_device.py \
        tests/meter/test_meter_distributed.py tests/stats/test_meter_backends.py \
        tests/stats/test_namespace.py tests/integrations/test_measure.py \
        tests/meter/test_meter_ignore_index.py
fi
BENCH="$PY benchmarks/bench_device.py --full --device cuda"
has imagenet && stage imagenet 140 $BENCH --cases imagenet --json "$OUT/imagenet.json"
has imagenet32 && stage imagenet32 100 $BENCH --cases imagenet --precision float32 \
    --json "$OUT/imagenet32.json"
has vocab && stage vocab 130 $BENCH --cases vocab --json "$OUT/vocab.json"
echo "=== summary"
grep -h -E "^ran on|^\[|floor \(|both passes|of which|256 rows|passed|failed|error" \
    "$OUT"/*.log 2>/dev/null | grep -v "^=" | head -60
exit $status
