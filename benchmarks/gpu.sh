#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md in one go: update cost (ops per update; eager / fast /
# graph), MT10 training throughput, the CUDA tests and evaluation speed, in that order. Run
# from the repository root on a machine whose python3 has torch with CUDA. Packages it lacks
# can come as wheels in .whl/ (installed into /tmp/site). Each step has its own time limit, so
# one that hangs still leaves the others' output; LOG (default: no file) keeps a copy of
# everything. The limits add up to 760 s: where one command may run 600 s at most, a run that
# needs every limit is cut in its last steps (then run STEPS="tests evaluation" on its own).
#
#     bash benchmarks/gpu.sh                 # the default steps
#     STEPS="update throughput" bash benchmarks/gpu.sh
#     STEPS=solvers bash benchmarks/gpu.sh   # CAGrad's graph with its solver compiled (not a
#                                            # default step: Triton compiles for a minute or two)
#     STEPS=ending bash benchmarks/gpu.sh    # the protocol's 50-episode evaluation on kept envs,
#                                            # episodes to their limit vs ended at success
#     METHODS="pcgrad cagrad" STEPS=update bash benchmarks/gpu.sh   # fewer methods, less time
set -u
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable  # no GL on the machine: none needed
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
LOG=${LOG:-/dev/null}
STEPS=${STEPS:-"update throughput tests evaluation"}  # the most wanted figures first
WORKERS=${WORKERS:-10}

run() {  # run <seconds> <command...>: one step, its output to the terminal and LOG
    echo "=== $(date +%T) $*" | tee -a "$LOG"
    timeout "$1" "${@:2}" 2>&1 | tee -a "$LOG"
}

run 60 python3 -c "import torch, metaworld, mtrl; print('torch', torch.__version__, \
torch.cuda.get_device_name(), 'cores', __import__('os').cpu_count())"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,utilization.gpu --format=csv | tee -a "$LOG"
for step in $STEPS; do
    case $step in
    tests) run 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
        tests/agents/test_graphed.py ;;
    update) run 240 python3 benchmarks/update_cost.py --device cuda --rounds 30 \
        --methods ${METHODS:-pcgrad cagrad mgda imtl-g upgrad dualproj} ;;
    solvers) run 240 python3 benchmarks/update_cost.py --device cuda --rounds 20 \
        --methods cagrad --compile-solvers ;;
    throughput) run 220 python3 benchmarks/throughput.py --device cuda --workers "$WORKERS" \
        --steps "${TSTEPS:-300}" --paths ${PATHS_:-fast graph} ;;
    evaluation) run 100 python3 benchmarks/evaluation.py --device cuda --workers 16 \
        --episodes 10 --envs-per-task 10 --kept 3 ;;
    ending) run 300 python3 benchmarks/evaluation.py --device cuda --workers 16 \
        --episodes 50 --envs-per-task 10 --repeats 0 --ending 1 --policy ${POLICY:-half} ;;
    esac
done
echo "=== $(date +%T) done" | tee -a "$LOG"
