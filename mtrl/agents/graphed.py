"""The MT-SAC update captured once in a CUDA graph and replayed (``compile=true``).

An MT-SAC update at MT10/MT50 sizes is a few hundred small kernels, so on a GPU its time is the
CPU's time to launch them. A CUDA graph records the launches of one whole update (targets,
per-task gradients, aggregator, clipping, Adam, temperatures, Polyak) once and replays them with
one call. That needs an update without host syncs: deferred finite checks, optimizers with their
step counts on the device (``capturable``), and an aggregator whose solver runs on the device
(``Aggregator.runs_on_device``). Random draws inside the graph (policy noise, PCGrad's orders)
come from torch's CUDA generator, which advances at every replay as it does eagerly.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import Any

import torch
from torch import Tensor

from mtrl.agents.sac import MTSAC, Batch
from mtrl.errors import one_line
from mtrl.surgery.aggregators import Aggregator
from mtrl.surgery.aggregators.solver_check import fused_mismatch

WARMUP_UPDATES = 3
"""Eager updates on a side stream before the capture (lazy library handles and optimizer state
are created there, as torch's CUDA graph notes ask)."""


def graph_blocker(agent: MTSAC) -> str | None:
    """Why ``agent.update`` cannot be captured in a CUDA graph, or None if it can."""
    if agent.device.type != "cuda":
        return "CUDA graphs need device=cuda"
    if not agent.defer_checks:
        return "finite_checks=every_update syncs with the host in every update"
    for network, aggregator in agent.aggregators.items():
        if not aggregator.runs_on_device():
            return f"the {network} aggregator {aggregator!r} solves on the host"
        blocker = aggregator.capture_blocker_for(agent.num_tasks)
        if blocker is not None:
            return f"the {network} aggregator {aggregator!r}: {blocker}"
    return None


class GraphedUpdate:
    """``agent.update`` replayed from a CUDA graph; a drop-in replacement for it.

    The first ``WARMUP_UPDATES`` calls run eagerly on a side stream; the next one captures the
    update on static copies of the batch and replays it, and later calls copy their batch into
    those tensors and replay. Updates with diagnostics run eagerly (they sync with the host). If
    the capture fails, one warning line is printed and every update runs eagerly from then on.
    A restored agent (``load_state_dict`` replaces the optimizers' state tensors) is captured
    again.

    :param agent: with deferred checks, on a CUDA device (its optimizers are made capturable
        here, so before its first update).
    :param warmup: eager updates before the capture.
    :param compile_solvers: compile the aggregators' device solvers with torch.compile
        (``Weighting``): true, false or auto (``compiles_solver``); they compile in the first
        warm-up update.
    :param fused_solvers: run the interior-point solvers (CAGrad, MGDA, UPGrad, DualProj) and
        the Jacobi rotations as Triton kernels: true, false or auto (``fuses_solver``);
        without the ``triton`` package none are (true warns once), nor are kernels whose
        directions differ from the torch solver's on this device
        (``solver_check.fused_mismatch``; a warning line says so).
    """

    def __init__(
        self,
        agent: MTSAC,
        warmup: int = WARMUP_UPDATES,
        compile_solvers: bool | str = False,
        fused_solvers: bool | str = False,
    ) -> None:
        if not agent.capturable:
            agent.make_capturable()
        if fused_solvers is not False and triton_missing():
            if fused_solvers is True:
                print(
                    "warning: fused_solvers=true: the solvers run unfused (no triton package)",
                    file=sys.stderr,
                )
            fused_solvers = False
        for aggregator in agent.aggregators.values():
            aggregator.in_cuda_graph = True  # solver=auto: the device solvers, captured
            # compiled in the eager warm-ups
            aggregator.compile_solver = compiles_solver(aggregator, compile_solvers)
            aggregator.fused_solver = fuses_solver(aggregator, fused_solvers, agent.num_tasks)
        unfuse_failed_kernels(agent)
        self.agent = agent
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self._warmed = 0
        self._version = agent.state_version
        self._static: Batch = {}
        self._out: dict[str, Tensor] = {}

    def __call__(self, batch: Batch, diagnostics: bool = False) -> dict[str, Any]:
        agent = self.agent
        if diagnostics or self.failed:
            return self._eager(batch, diagnostics)
        if self._version != agent.state_version:
            self.graph, self._warmed, self._version = None, 0, agent.state_version
        if self.graph is not None and all(
            self._static[k].shape == batch[k].shape for k in self._static
        ):
            for key, static in self._static.items():
                static.copy_(batch[key])
            self.graph.replay()
            return {key: value.clone() for key, value in self._out.items()}
        if self._warmed < self.warmup:
            self._warmed += 1
            return self._on_side_stream(batch)
        return self._capture(batch)

    def _eager(self, batch: Batch, diagnostics: bool = False) -> dict[str, Any]:
        """``agent.update`` outside the graph; torch's note that capturable optimizers step
        slower outside a graph is expected here (warm-up, diagnostics, a failed capture)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
            return self.agent.update(batch, diagnostics)

    def _on_side_stream(self, batch: Batch) -> dict[str, Any]:
        stream = torch.cuda.Stream(self.agent.device)
        stream.wait_stream(torch.cuda.current_stream(self.agent.device))
        with torch.cuda.stream(stream):
            metrics = self._eager(batch)
        torch.cuda.current_stream(self.agent.device).wait_stream(stream)
        return metrics

    def _capture(self, batch: Batch) -> dict[str, Any]:
        self._static = {key: value.clone() for key, value in batch.items()}
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._out = self.agent.update(self._static)
        except Exception as exc:  # an operation that cannot be captured: run eagerly
            print(
                f"warning: compile: the update runs eagerly (capture failed: {one_line(exc)})",
                file=sys.stderr,
            )
            # in_cuda_graph stays set: the eager updates keep the device solvers the warm-ups
            # took, as a resumed run's warm-ups take them again (exact resume)
            self.failed, self._static, self._out = True, {}, {}
            return self._eager(batch)
        self.graph = graph
        graph.replay()  # the capture only recorded this update: now run it
        return {key: value.clone() for key, value in self._out.items()}


def compiles_solver(aggregator: Aggregator, compile_solvers: bool | str) -> bool:
    """Whether a captured update compiles ``aggregator``'s device solver: every one with true,
    those a GPU measured faster compiled (``compile_auto``) with auto, none with false."""
    if compile_solvers == "auto":
        return aggregator.compile_auto
    return compile_solvers is True


FUSED_AUTO_TASKS = 16
"""``fused_solvers=auto`` fuses the solvers of at most this many tasks: one warp per problem.
On an H200 the kernels made CAGrad's update 3.4 ms instead of 5.7 at T = 10, and 26.9 instead
of 11.5 at T = 50, where each problem's 64 x 64 tile is swept pivot by pivot (BENCHMARKS.md)."""


def fuses_solver(aggregator: Aggregator, fused_solvers: bool | str, tasks: int) -> bool:
    """Whether a captured update of ``tasks`` tasks runs ``aggregator``'s interior-point steps
    and linear solves (the eigendecomposing weightings: Jacobi rotations) as Triton kernels
    (``fused_ip``), where it has them (``fusable``): with true always, with auto where a GPU
    measured it faster and matching (``fused_auto``) up to ``FUSED_AUTO_TASKS`` tasks, with
    false never."""
    if fused_solvers is False or not aggregator.fusable:
        return False
    return fused_solvers is True or (aggregator.fused_auto and tasks <= FUSED_AUTO_TASKS)


def unfuse_failed_kernels(agent: MTSAC) -> None:
    """Turn ``fused_solver`` off for the aggregators whose Triton kernels fail their check on
    the agent's device (``solver_check.fused_mismatch``), with one warning line for each
    (the actor's and the critic's alike give one)."""
    given: set[str] = set()
    for aggregator in agent.aggregators.values():
        if not aggregator.fused_solver:
            continue
        mismatch = fused_mismatch(aggregator, agent.num_tasks, agent.device)
        if mismatch is None:
            continue
        aggregator.fused_solver = False
        warning = (
            f"warning: fused_solvers: {aggregator!r} solves with torch ops (its Triton kernels "
            f"failed their check on this device: {mismatch})"
        )
        if warning not in given:
            print(warning, file=sys.stderr)
            given.add(warning)


def triton_missing() -> bool:
    """True where the ``triton`` package (torch's CUDA builds bring it) is not installed."""
    return importlib.util.find_spec("triton") is None


def make_updater(
    agent: MTSAC,
    compile: bool | str,
    compile_solvers: bool | str = False,
    fused_solvers: bool | str = False,
) -> Any:
    """The function the trainer calls for an update: ``agent.update``, or a ``GraphedUpdate``
    where ``compile`` is true or auto and nothing blocks the capture (true then warns why),
    with its device solvers compiled and fused as ``compile_solvers`` and ``fused_solvers``
    say."""
    if compile is False:
        return agent.update
    blocker = graph_blocker(agent)
    if blocker is None:
        return GraphedUpdate(agent, compile_solvers=compile_solvers, fused_solvers=fused_solvers)
    if compile is True:
        print(f"warning: compile=true: the update runs eagerly ({blocker})", file=sys.stderr)
    return agent.update
