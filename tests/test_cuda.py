"""Checks that need a CUDA GPU (skipped without one): the update replayed from a CUDA graph
equals the eager update, a failed capture falls back to eager, and a run with compile=true
resumes exactly."""

import copy

import numpy as np
import pytest
import torch
from batches import replay_batch
from test_resume import ARGS as RESUME_ARGS
from test_resume import comparable

from mtrl.agents import MTSAC
from mtrl.agents.graphed import GraphedUpdate, graph_blocker, make_updater
from mtrl.cli import main
from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.logging import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

T, OBS, ACT = 10, 39 + 10, 4


def mt10_agent(experiment: str, *overrides: str) -> MTSAC:
    cfg = resolve_config(experiment, ["device=cuda", *overrides])
    torch.manual_seed(0)
    return MTSAC(OBS, ACT, T, cfg.agent, cfg.surgery, "cuda", seed=0, capturable=True)


def batches(n: int, size: int = 128) -> list[dict[str, torch.Tensor]]:
    """n MT10-shaped replay batches on the GPU."""
    return [
        {k: v.cuda() for k, v in replay_batch(T, size, OBS, ACT, seed=i).items()} for i in range(n)
    ]


def max_difference(a: MTSAC, b: MTSAC) -> float:
    pairs = [
        (x, y)
        for net in ("actor", "critic", "critic_target")
        for x, y in zip(getattr(a, net).parameters(), getattr(b, net).parameters(), strict=True)
    ]
    pairs.append((a.log_alpha, b.log_alpha))
    return max((x - y).abs().max().item() for x, y in pairs)


DEVICE_SOLVED = (
    "mgda",
    "upgrad",
    "dualproj",
    "imtl-g",
    "config",
    "aligned-mtl",
    "sdmgrad",
    "gradvac",
    "moco",
)
"""Weightings with a device solver whose capture had not been checked on a GPU when added
(IMTL-G, ConFIG and Aligned-MTL: their Jacobi eigendecompositions, at T = 10; SDMGrad,
GradVac and MoCo: their state kept on the device, updated in place)."""


@pytest.mark.parametrize(
    ("experiment", "overrides"),
    [
        ("mt10-mtsac", []),
        # solver=auto takes the device solver only in a graph's update: the eager reference
        # asks for it
        ("mt10-pcgrad", ["surgery.solver=device"]),
        ("mt10-cagrad", ["surgery.solver=device"]),
        *(("mt10-mtsac", [f"surgery={m}", "surgery.solver=device"]) for m in DEVICE_SOLVED),
        # its solver option names its algorithm; the eager reference's in_cuda_graph below
        # takes its device path
        ("mt10-mtsac", ["surgery=fairgrad"]),
        ("mt10-mtsac", ["surgery=rlw"]),  # drawn on the GPU, in the eager reference too
    ],
    ids=["mean", "pcgrad", "cagrad", *DEVICE_SOLVED, "fairgrad", "rlw"],
)
def test_graph_replays_equal_eager_updates(experiment, overrides):
    eager = mt10_agent(experiment, *overrides)
    for aggregator in eager.aggregators.values():
        aggregator.in_cuda_graph = True  # the graph's device paths (IMTL-G: Jacobi, not eigh)
    graphed = copy.deepcopy(eager)
    assert graph_blocker(graphed) is None
    update = GraphedUpdate(graphed)
    data = batches(8)
    for fn in (eager.update, update):
        torch.cuda.manual_seed(3)
        metrics = [fn(b) for b in data]
    assert update.graph is not None
    assert max_difference(eager, graphed) <= 1e-5
    assert torch.isfinite(metrics[-1]["critic_loss"]).all()


@pytest.mark.parametrize(
    ("method", "compiled", "fused"),
    [
        ("cagrad", True, False),
        ("mgda", True, False),
        ("pcgrad", True, False),
        ("cagrad", False, True),
        ("cagrad", True, True),
        ("mgda", False, True),
        ("mgda", True, True),
        ("imtl-g", False, True),  # its Jacobi rotations as one kernel
        ("imtl-g", True, True),
        ("config", False, True),
        ("aligned-mtl", False, True),
        ("upgrad", False, True),  # one orthant kernel per solve
        ("upgrad", True, True),
        ("dualproj", False, True),
    ],
)
def test_compiled_and_fused_solvers_are_captured_and_replay_what_eager_updates_compute(
    method, compiled, fused
):
    """Solvers compiled (compile_solvers) and/or run as Triton kernels (fused_solvers, fused_ip)
    in a captured update, against eager updates with the same solvers. (Against other solvers
    the weights differ in rounding, which Adam turns into steps of up to lr on parameters
    whose gradient is ~0; the solvers themselves are checked against each other and the
    host's by test_compiled_solvers and test_fused_solvers.)"""
    eager = mt10_agent("mt10-mtsac", f"surgery={method}", "surgery.solver=device")
    for aggregator in eager.aggregators.values():
        aggregator.compile_solver, aggregator.fused_solver = compiled, fused
        aggregator.in_cuda_graph = True  # the graph's device paths (IMTL-G: Jacobi)
    graphed = copy.deepcopy(eager)
    update = GraphedUpdate(graphed, compile_solvers=compiled, fused_solvers=fused)
    data = batches(8)
    for fn in (eager.update, update):
        torch.cuda.manual_seed(3)
        for b in data:
            fn(b)
    assert update.graph is not None and not update.failed
    for aggregator in graphed.aggregators.values():  # as asked, no fallback
        assert (aggregator.compile_solver, aggregator.fused_solver) == (compiled, fused)
    assert max_difference(eager, graphed) <= 1e-5


def test_a_non_finite_update_replayed_from_the_graph_is_named_at_the_check():
    agent = mt10_agent("mt10-pcgrad", "surgery.solver=device")
    update = GraphedUpdate(agent)
    data = batches(6)
    for b in data[:5]:  # eager warm-ups, the capture, a replay
        update(b)
    assert update.graph is not None
    agent.raise_if_non_finite()  # nothing so far
    data[5]["reward"][3] = float("nan")  # task 3's critic loss is NaN
    update(data[5])  # replayed: the marks are set on the device, no sync
    with pytest.raises(MtrlError, match=r"^critic: non-finite loss or gradient in tasks 3$"):
        agent.raise_if_non_finite()


def test_a_failed_capture_warns_once_and_runs_eagerly(capsys):
    agent = mt10_agent("mt10-pcgrad", "surgery.solver=host")  # host solver: syncs, not capturable
    assert "solves on the host" in graph_blocker(agent)
    update = GraphedUpdate(agent, warmup=1)
    before = [p.clone() for p in agent.actor.parameters()]
    for b in batches(4):
        update(b)
    assert update.failed and update.graph is None
    assert capsys.readouterr().err.count("warning: compile: the update runs eagerly") == 1
    assert any(not torch.equal(a, p) for a, p in zip(before, agent.actor.parameters(), strict=True))


def mt50_imtl_g_agent() -> MTSAC:
    cfg = resolve_config("mt50-mtsac", ["device=cuda", "surgery=imtl-g"])
    return MTSAC(39 + 50, ACT, 50, cfg.agent, cfg.surgery, "cuda", seed=0, capturable=True)


def test_imtl_g_above_16_tasks_stays_eager():
    # its Jacobi eigendecomposition (eigh is refused under capture) grows as T³: not captured
    agent = mt50_imtl_g_agent()
    assert "above 16 tasks (50 here)" in graph_blocker(agent)
    assert not isinstance(make_updater(agent, "auto"), GraphedUpdate)


def test_kernels_that_fail_their_check_on_the_device_are_not_used(capsys):
    """GraphedUpdate checks the Triton kernels on the device before it fuses
    (solver_check.fused_mismatch): IMTL-G's Jacobi kernel takes up to 16 tasks, so at 50 its
    check fails and the torch rotations run, with one warning line."""
    update = GraphedUpdate(mt50_imtl_g_agent(), fused_solvers=True)
    assert not any(a.fused_solver for a in update.agent.aggregators.values())
    err = capsys.readouterr().err
    assert err.count("warning: fused_solvers: IMTLG(solver='auto') solves with torch ops") == 1
    assert "they did not run: ValueError: jacobi_eigh_fused takes up to 16 tasks" in err


def test_compile_auto_captures_on_the_gpu_where_nothing_blocks_it():
    assert isinstance(make_updater(mt10_agent("mt10-cagrad"), "auto"), GraphedUpdate)


ARGS = [*RESUME_ARGS, "device=cuda", "compile=true"]
"""The CPU resume test's short run (PCGrad on the cheap suite), on the GPU with CUDA graphs."""


@pytest.mark.parametrize("surgery", ["pcgrad", "cagrad"])  # compiled; compiled and fused
def test_a_compiled_run_resumes_exactly(tmp_path, surgery):
    args = [*ARGS, f"surgery={surgery}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *args, "steps=100", f"out={straight}"]) == 0
    assert main(["train", *args, "steps=40", f"out={split}"]) == 0
    (run_a,) = straight.iterdir()
    (run_b,) = split.iterdir()
    assert main(["train", f"resume={run_b}", "steps=100"]) == 0
    rows_a, rows_b = read_metrics(run_a / "metrics.jsonl"), read_metrics(run_b / "metrics.jsonl")
    assert comparable(rows_a) == comparable(rows_b)


def test_replay_on_the_gpu_stores_what_the_cpu_replay_stores():
    from mtrl.replay import MultiTaskReplay

    rng = np.random.default_rng(0)
    replays = [MultiTaskReplay(3, 5, 4, 2, device) for device in ("cpu", "cuda")]
    for _ in range(12):  # wraps around an odd capacity twice
        step = (
            rng.normal(size=(3, 4)),
            rng.uniform(-1, 1, (3, 2)),
            rng.normal(size=3),
            rng.normal(size=(3, 4)),
            rng.random(3) < 0.2,
            rng.random(3) < 0.2,
        )
        for replay in replays:
            replay.add(*step)
    cpu, gpu = replays
    assert (cpu.pos, cpu.size) == (gpu.pos, gpu.size)
    for key, stored in cpu.storage.items():
        assert torch.equal(stored, gpu.storage[key].cpu()), key
