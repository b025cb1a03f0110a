"""CUDA-graph updates (``compile``): what blocks a capture, and the choice of update function.

The capture itself needs a GPU: tests/test_cuda.py checks it where one is present.
"""

import pytest
import torch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.agents.graphed import compiles_solver, graph_blocker, make_updater
from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.surgery import get_aggregator


def cpu_agent(name: str = "mean") -> MTSAC:
    return MTSAC(12, 2, 3, AgentConfig(hidden=[16]), SurgeryConfig(name=name))


def test_a_cpu_agent_is_not_captured_and_compile_true_says_why(capsys):
    agent = cpu_agent()
    assert graph_blocker(agent) == "CUDA graphs need device=cuda"
    assert make_updater(agent, "auto") == agent.update
    assert make_updater(agent, False) == agent.update
    assert capsys.readouterr().err == ""
    assert make_updater(agent, True) == agent.update
    err = capsys.readouterr().err
    assert err == "warning: compile=true: the update runs eagerly (CUDA graphs need device=cuda)\n"


def test_capturable_optimizers_need_a_cuda_device():
    with pytest.raises(ValueError, match="need a CUDA device"):
        MTSAC(12, 2, 3, AgentConfig(hidden=[16]), capturable=True)


@pytest.mark.parametrize(
    ("name", "options", "on_device"),
    [
        ("mean", {}, True),
        ("sum", {}, True),
        ("rlw", {}, True),  # in a captured update it draws its weights on the GPU
        ("rlw", {"distribution": "bernoulli"}, False),  # redraws until a task is drawn
        ("uw", {}, False),  # a loss weighting: host state between updates
        ("nash-mtl", {}, False),  # cvxpy on the host
    ],
)
def test_which_aggregators_run_on_the_device(name, options, on_device):
    assert get_aggregator(name, **options).runs_on_device() is on_device


@pytest.mark.parametrize("name", ["imtl-g", "config", "aligned-mtl"])
def test_eigendecomposing_weightings_are_captured_up_to_16_tasks(name):
    # in a graph their eigendecomposition is Jacobi rotations (cuSOLVER's eigh is refused
    # under capture), about T² ops a sweep: above 16 tasks an eager update is expected to cost
    # less
    aggregator = get_aggregator(name)
    assert aggregator.runs_on_device() and aggregator.capturable()
    assert aggregator.capture_blocker_for(10) is None
    assert aggregator.capture_blocker_for(16) is None
    assert "above 16 tasks (50 here)" in aggregator.capture_blocker_for(50)
    for name in ("mgda", "upgrad", "dualproj"):
        assert (
            get_aggregator(name).capturable()
            and get_aggregator(name).capture_blocker_for(50) is None
        )
    assert not get_aggregator("mgda", solver="host").capturable()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "compile=1: expected true, false or auto"),
        ("on", "compile='on': expected true, false or auto"),
    ],
)
def test_compile_values_are_checked(value, message):
    with pytest.raises(MtrlError, match=message):
        resolve_config("quickstart", [f"compile={value}"])


def test_compile_true_on_the_cpu_is_a_config_error():
    with pytest.raises(MtrlError, match="compile=true needs device=cuda"):
        resolve_config("quickstart", ["compile=true"])
    assert resolve_config("quickstart", ["compile=false"]).compile is False
    assert resolve_config("quickstart", []).compile == "auto"


def test_polyak_update_moves_every_target_parameter_by_tau():
    from mtrl.agents import polyak_update

    agent = cpu_agent()
    before = [p.clone() for p in agent.critic_target.parameters()]
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)
    polyak_update(agent.critic, agent.critic_target, 0.25)
    for b, p, s in zip(
        before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(p, 0.75 * b + 0.25 * s)


def test_solver_auto_takes_the_device_path_only_in_a_graph_update_on_a_gpu():
    from mtrl.surgery.taskgrads import TaskGradients

    G = TaskGradients([torch.randn(3, 5)])
    auto = get_aggregator("cagrad", solver="auto")
    assert auto.runs_on_device() and not auto._use_device(G)
    auto.in_cuda_graph = True
    assert not auto._use_device(G)  # the gradients are on the CPU
    assert get_aggregator("cagrad", solver="device")._use_device(G)
    assert not get_aggregator("pcgrad", solver="host").runs_on_device()


def test_compile_solvers_needs_a_captured_update_on_a_gpu():
    for overrides in (
        ["compile_solvers=true"],
        ["device=cuda", "compile=false", "compile_solvers=true"],
    ):
        with pytest.raises(MtrlError, match="compile_solvers=true needs device=cuda and compile"):
            resolve_config("quickstart", overrides)
    assert resolve_config("quickstart", []).compile_solvers == "auto"  # on where captured
    assert resolve_config("quickstart", ["compile_solvers=false"]).compile_solvers is False


def test_compile_solvers_auto_compiles_the_solvers_measured_faster_compiled():
    def compiled(name: str, setting: bool | str) -> bool:
        return compiles_solver(get_aggregator(name, solver="device"), setting)

    # auto: CAGrad, MGDA, PCGrad and UPGrad, whose compiled solvers an H200 measured faster
    # (BENCHMARKS.md); DualProj's not timed compiled
    assert [compiled(m, "auto") for m in ("cagrad", "mgda", "pcgrad", "upgrad")] == [True] * 4
    assert not compiled("dualproj", "auto")
    assert all(compiled(m, True) for m in ("cagrad", "mgda", "pcgrad", "upgrad", "dualproj"))
    assert not any(compiled(m, False) for m in ("cagrad", "pcgrad"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy: IEEE inf in the interpreter
def test_kernels_that_fail_their_device_check_are_turned_off_with_one_warning(capsys):
    """What ``GraphedUpdate`` does before its warm-ups, on the CPU (the kernels in Triton's
    interpreter): MGDA's kernels pass their check and stay on; IMTL-G's Jacobi kernel cannot
    run at 17 tasks, so the actor's and the critic's aggregators solve with torch ops and one
    line says why."""
    pytest.importorskip("triton", reason="the fused solvers' kernels need triton")
    from mtrl.agents.graphed import unfuse_failed_kernels

    for name, tasks, fused in (("mgda", 3, True), ("imtl-g", 17, False)):
        agent = MTSAC(12, 2, tasks, AgentConfig(hidden=[16]), SurgeryConfig(name=name))
        for aggregator in agent.aggregators.values():
            aggregator.fused_solver = True
        unfuse_failed_kernels(agent)
        assert [a.fused_solver for a in agent.aggregators.values()] == [fused, fused]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: fused_solvers: IMTLG(solver='auto') solves with torch ops (its Triton kernels "
        "failed their check on this device: they did not run: ValueError: jacobi_eigh_fused "
        "takes up to 16 tasks, not 17)"
    ]
