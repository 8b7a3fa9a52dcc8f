#!/usr/bin/env bash
# The GPU rows of bench/RESULTS.md in one prepared run (issue 15), for a lent GPU machine whose
# python3 already has torch with CUDA and vlmdiag's other needs (vlmdiag itself comes from this
# tree through PYTHONPATH; bench/RESULTS.md "GPU" gives the device call, with the wheels the image
# lacks). Each step has its own time limit and log, so one that fails or runs long costs only itself.
#
#   bash bench/gpu.sh ORGANISM_ENTRY [STEP ...]
#
# Steps (default all) and what each took on an H200 on 2026-12-04, for planning a 15-minute lease
# (the machine's start and the transfer of a 56 MB tree took about 65 s more):
#   env 12 s, attention 103 s, spectra 118 s (building the 0.74B triple included), suite 134 s,
#   sweeps (organism, one round) about 120 s, sweeps-qwen (one round) 72 s.
# The sweeps run two rounds and report the second: the first pays CUDA's lazy kernel loading.
#
# ORGANISM_ENTRY is a built organism's entry folder (base/ in/ rl/ rl-frozen-late/ ...), e.g. one copied
# from ~/.cache/vlmdiag/organism/: the device cannot build one (no trl there), and an entry's cache
# key holds the torch version, so the suite and sweeps take it by path. Logs go to $OUT (the device
# tool's return folder) or /tmp/vlmdiag-bench/gpu. DEVICE=cpu runs the same steps on CPU (a dry run).
set -u
organism=$(realpath "$1"); shift
steps=${*:-env attention spectra suite sweeps sweeps-qwen}
out=${OUT:-/tmp/vlmdiag-bench/gpu}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# pytest finds the plugin by its entry point where vlmdiag is installed (or its egg-info is on the path)
python3 -c "import importlib.metadata as m; m.distribution('vlmdiag')" 2>/dev/null || export PYTEST_PLUGINS=vlmdiag.plugin
export VLMDIAG_BENCH_DIR=${VLMDIAG_BENCH_DIR:-/tmp/vlmdiag-bench}

step() {  # NAME LIMIT_S COMMAND...: run it under a time limit, log to $out/NAME.log, show the tail
    local name=$1 limit=$2 start=$SECONDS code
    shift 2
    echo "== $name (limit ${limit} s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    code=$?
    echo "   exit $code after $((SECONDS - start)) s"
    tail -n 30 "$out/$name.log" | cut -c1-400
}

for s in $steps; do
    case $s in
    env) step env 60 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; uptime
         python3 -c "import torch, transformers, scipy; print(torch.__version__, transformers.__version__, scipy.__version__, torch.cuda.is_available())"' ;;
    attention) step attention 150 python3 bench/bench_attention.py --quick --repeats 3 ;;
    suite) step suite 240 python3 bench/bench_suite.py --recipe full --organism "$organism" \
               --keep-report "$out/organism-cold-$device.json" ;;
    sweeps) step sweeps 300 python3 bench/bench_sweeps.py --model organism --rounds 2 --device "$device" \
                --organism "$organism" ;;
    sweeps-qwen) step sweeps-qwen 200 python3 bench/bench_sweeps.py --model qwen05b --rounds 2 --device "$device" ;;
    spectra) step spectra 200 python3 bench/bench_spectra.py --sample 8 --repeats 1 --device "$device" ;;
    *) echo "unknown step $s" ;;
    esac
done
