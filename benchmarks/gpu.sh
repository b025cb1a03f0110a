#!/usr/bin/env bash
# Every GPU figure of BENCHMARKS.md: the fused (Triton) solvers' tests and timings, update cost
# (ops per update; eager / fast / graph, each captured method checked against eager updates
# first), the same with the device solvers compiled, MT10 training throughput, the protocol's
# evaluation and the CUDA tests, in that order. Run from the repository root on a machine whose
# python3 has torch with CUDA. Packages it lacks can come as wheels in .whl/ (installed into
# /tmp/site). Each step has its own time limit, so one that hangs still leaves the others'
# output; LOG (default: no file) keeps a copy of everything. The default steps' limits add up
# to more than one 600 s command allows: run them in two (STEPS="fused update", then
# STEPS="solvers throughput ending tests"), or pick.
#
#     bash benchmarks/gpu.sh                 # the default steps
#     STEPS="update throughput" bash benchmarks/gpu.sh
#     STEPS=evaluation bash benchmarks/gpu.sh   # 10 episodes per task, k = 1 vs k = 10
#     METHODS="pcgrad cagrad" STEPS=update bash benchmarks/gpu.sh   # fewer methods, less time
#     STEPS=newer bash benchmarks/gpu.sh     # the device paths not yet run on a GPU
set -u
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable  # no GL on the machine: none needed
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
LOG=${LOG:-/dev/null}
STEPS=${STEPS:-"fused update solvers throughput ending tests"}  # the most wanted first
WORKERS=${WORKERS:-10}

run() {  # run <seconds> <command...>: one step, its output to the terminal and LOG
    echo "=== $(date +%T) $*" | tee -a "$LOG"
    timeout "$1" "${@:2}" 2>&1 | tee -a "$LOG"
}

run 30 python3 -c "import torch, metaworld, mtrl, importlib.metadata as m; print('torch', \
torch.__version__, 'triton', m.version('triton'), torch.cuda.get_device_name(), 'cores', \
__import__('os').cpu_count())"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,utilization.gpu --format=csv | tee -a "$LOG"
for step in $STEPS; do
    case $step in
    update) run 80 python3 benchmarks/update_cost.py --device cuda --rounds 20 \
        --methods ${METHODS:-pcgrad cagrad mgda imtl-g upgrad dualproj} ;;
    fused)  # the interior-point solvers as Triton kernels (fused_ip): the kernels alone (the
        # steps kernel, whole CAGrad, MGDA and UPGrad solves; the steps kernel side by side
        # with AGAINST, an earlier fused_ip.py: the machine has no git history, so
        # `git show REV:mtrl/surgery/aggregators/fused_ip.py > .whl/fused_ip_REV.py` and carry
        # .whl), their tests on the GPU, the graph per update plain / compiled (+c) / fused
        # (+f) / both (+fc) at T = 10, and CAGrad's training each way
        run 60 python3 benchmarks/fused_kernels.py --time ${AGAINST:+--against "$AGAINST"}
        run 60 python3 -m pytest -q -p no:cacheprovider tests/surgery/test_fused_solvers.py
        run 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -k fused
        run 200 python3 benchmarks/update_cost.py --device cuda --rounds 10 --tasks 10 \
            --methods ${FUSED:-pcgrad cagrad mgda upgrad} --fused-solvers --compile-solvers \
            --profile
        run 140 python3 benchmarks/throughput.py --device cuda --workers "$WORKERS" \
            --steps "${TSTEPS:-3000}" --methods cagrad --paths graph fused fused+c ;;
    newer)  # the device solvers not yet run on a GPU: IMTL-G, ConFIG and Aligned-MTL in a graph
        # (Jacobi rotations in tensor ops, or fused as one kernel), FairGrad, SDMGrad, GradVac,
        # MoCo and RLW: their CUDA tests, then the graph per update plain / compiled (+c, the
        # slow compile) / fused (+f) / both (+fc) at T = 10
        run 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
            -k "imtl or config or aligned or fairgrad or sdmgrad or gradvac or moco or rlw"
        run 360 python3 benchmarks/update_cost.py --device cuda --rounds 10 --tasks 10 \
            --methods ${NEWER:-imtl-g config aligned-mtl fairgrad sdmgrad gradvac moco rlw} \
            --fused-solvers --compile-solvers --profile ;;
    solvers)  # the graph with the device solvers compiled by torch.compile (Triton compiles
        # first, 10-20 s each), per update and in training, where the steady rate leaves it out
        run 160 python3 benchmarks/update_cost.py --device cuda --rounds 10 \
            --methods ${SOLVERS:-pcgrad cagrad mgda upgrad dualproj} --compile-solvers \
            ${SOLVER_FLAGS:-}
        run 100 python3 benchmarks/throughput.py --device cuda --workers "$WORKERS" \
            --steps "${TSTEPS:-3000}" --methods pcgrad cagrad --paths graph solvers ;;
    throughput) run 100 python3 benchmarks/throughput.py --device cuda --workers "$WORKERS" \
        --steps "${TSTEPS:-3000}" --paths ${PATHS_:-graph} ;;
    ending) run 100 python3 benchmarks/evaluation.py --device cuda --workers 16 \
        --episodes 50 --envs-per-task 10 --repeats 0 --ending 1 --policy ${POLICY:-half} ;;
    tests) run 150 python3 -m pytest -v -p no:cacheprovider tests/test_cuda.py \
        tests/agents/test_graphed.py ;;
    evaluation) run 100 python3 benchmarks/evaluation.py --device cuda --workers 16 \
        --episodes 10 --envs-per-task 10 --kept 3 ;;
    esac
done
echo "=== $(date +%T) done" | tee -a "$LOG"
