"""The aggregator interface: a [T, P] matrix of per-task gradients -> one direction [P]."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from mtrl.errors import MtrlError, one_line
from mtrl.surgery.taskgrads import TaskGradients, all_finite, as_task_gradients


class NonFiniteGradientError(MtrlError, FloatingPointError):
    """A task's gradient holds NaN or inf (usually a diverged loss)."""


@dataclass
class Aggregation:
    """The result of one aggregation.

    :param direction: the update direction: a [P] tensor for a flat G, or one block per
        parameter (each shaped like it) for ``TaskGradients``.
    :param weights: task weights [T] with ``direction == weights @ G`` (None if not a weighting).
    :param gram: the T x T Gramian G Gᵀ when the method computed it (reused by diagnostics).
    :param owned: the direction's blocks are new tensors that nothing else holds (the base
        class combined them from the weights), so a caller may take them as ``.grad`` uncopied.
    """

    direction: Tensor | list[Tensor]
    weights: Tensor | None = None
    gram: Tensor | None = None
    owned: bool = False


def check_gradients(G: Tensor | TaskGradients, task_names: list[str] | None = None) -> None:
    """Raise ValueError on a bad shape and NonFiniteGradientError naming tasks with NaN/inf."""
    grads = as_task_gradients(G)
    bad = (~grads.finite_rows()).nonzero().flatten().tolist()
    if bad:
        names = [task_names[i] if task_names else f"task {i}" for i in bad]
        raise NonFiniteGradientError(f"non-finite (NaN/inf) gradient for {', '.join(names)}")


def gramian(G: Tensor | TaskGradients) -> Tensor:
    """G Gᵀ in float64 on the CPU: the T x T input of every weighting's solver."""
    return as_task_gradients(G).gramian()


class Aggregator:
    """Base class: subclasses implement ``_aggregate``; ``__call__`` returns the direction.

    G is a flat [T, P] tensor or ``TaskGradients`` (per-parameter blocks, as the engine gives
    them without a copy); the direction comes back in the same form.
    Class attributes describe the method to the engine and the CLI:
    ``kind`` (``gradient``: combines per-task gradients; ``loss``: weights the T losses before
    one fused backward, see ``LossWeighting``), ``paper`` (short citation, e.g. ``Yu et al.
    2020``), ``needs_grads`` (False for loss-balancing methods), ``stochastic`` (draws random
    numbers; its ``__init__`` takes ``seed``, which runs set from the run seed), ``stateful``
    (keeps state across updates, saved in checkpoints through ``state_dict``/``load_state_dict``),
    ``device_solver`` (computes its weights or direction with tensor ops on the gradients'
    device, without a host sync: for a ``Weighting``, it has ``device_weights``),
    ``capture_blocker`` (why its device path, though free of host syncs, cannot be recorded in
    a CUDA graph; None if it can), ``graph_tasks`` (the most tasks for which a captured update
    is expected to beat an eager one; None: any number).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    kind: ClassVar[str] = "gradient"
    needs_grads: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False
    stateful: ClassVar[bool] = False
    device_solver: ClassVar[bool] = False
    capture_blocker: ClassVar[str | None] = None
    graph_tasks: ClassVar[int | None] = None

    check_finite: bool = True
    check_direction: bool = True
    """Check the direction for NaN/inf after combining (a host sync on a GPU); a caller that
    checks later, such as MT-SAC's deferred checks, turns it off."""
    task_names: list[str] | None = None
    in_cuda_graph: bool = False
    """Set by ``GraphedUpdate`` for the aggregators of the update it captures (and of its eager
    warm-up updates, so they compute what the graph computes): a ``Weighting`` with
    ``solver=auto`` then takes its device path for gradients on a GPU."""
    compile_solver: bool = False
    """Set by ``GraphedUpdate`` (see ``compile_solvers``): a ``Weighting`` runs its device
    solver, or the part of it after its random draws, compiled by torch.compile (see
    ``Weighting``)."""
    compile_auto: ClassVar[bool] = False
    """Whether ``compile_solvers=auto`` compiles this aggregator's device solver: set where a
    GPU measured the compiled solver faster (BENCHMARKS.md); ``true`` compiles every one."""
    fused_solver: bool = False
    """Set by ``GraphedUpdate`` (see ``fused_solvers``): the device solver runs as Triton
    kernels (``fused_ip``): CAGrad's, MGDA's, UPGrad's and DualProj's whole solves; IMTL-G's,
    ConFIG's and Aligned-MTL's Jacobi rotations."""
    fusable: ClassVar[bool] = False
    """Whether the device solver has Triton kernels for ``fused_solver``: the solvers of
    CAGrad, MGDA, UPGrad and DualProj, the Jacobi rotations of IMTL-G, ConFIG and Aligned-MTL
    (``fused_ip``)."""
    fused_auto: ClassVar[bool] = False
    """Whether ``fused_solvers=auto`` fuses this aggregator's solver (up to 16 tasks): set where
    a GPU measured it faster and its training updates matched the torch solver's."""

    def __call__(self, G: Tensor | TaskGradients) -> Tensor | list[Tensor]:
        return self.aggregate(G).direction

    def aggregate(self, G: Tensor | TaskGradients) -> Aggregation:
        """Validate G and combine it into one direction (T=1 returns that gradient)."""
        grads = as_task_gradients(G)
        if grads.num_tasks == 1:
            result = Aggregation([], torch.ones(1, dtype=grads.dtype, device=grads.device))
        else:
            result = self._aggregate(grads)
        if isinstance(result.direction, list) and not result.direction:
            result.direction, result.owned = grads.combine(result.weights), True
        # A NaN/inf in G reaches the direction (or the Gramian, checked by weightings before
        # solving), so one pass over [P] replaces a pass over [T, P]; the slow path names tasks.
        if self.check_finite and self.check_direction and not all_finite(result.direction):
            self.raise_non_finite(grads)
        if isinstance(G, Tensor):
            result.direction = result.direction[0]
        return result

    def fixed_weights(self, tasks: int, device: torch.device | None = None) -> Tensor | None:
        """Task weights that do not depend on the gradients, or None (the default).

        A linear aggregator's direction is the gradient of the weighted loss sum, which one
        fused backward gives without forming per-task gradients (MT-SAC uses this fast path).
        ``device``: the update's, where a random weighting draws them in a captured update
        (RLW); the others ignore it.
        """
        return None

    def runs_on_device(self) -> bool:
        """True if an update with this aggregator makes no host sync (with deferred finite
        checks), so it can be captured in a CUDA graph: fixed deterministic weights, or a
        solver on the gradients' device."""
        return not self.stochastic and self.fixed_weights(2) is not None

    def capturable(self) -> bool:
        """True if an update with this aggregator can be recorded in a CUDA graph: it runs on
        the device and nothing in its device path is known to break a capture."""
        return self.runs_on_device() and self.capture_blocker is None

    def capture_blocker_for(self, tasks: int) -> str | None:
        """Why an update over ``tasks`` tasks is not captured (``capture_blocker``, or more
        tasks than ``graph_tasks``), or None."""
        if (
            self.capture_blocker is None
            and self.graph_tasks is not None
            and tasks > self.graph_tasks
        ):
            return (
                f"its captured device solver is expected to cost more than an eager update "
                f"above {self.graph_tasks} tasks ({tasks} here)"
            )
        return self.capture_blocker

    def raise_non_finite(self, G: Tensor | TaskGradients) -> None:
        """Raise NonFiniteGradientError naming the tasks whose gradients hold NaN/inf."""
        check_gradients(G, self.task_names)
        raise NonFiniteGradientError("the aggregated direction overflowed (every task is finite)")

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        """Return the weights (and the Gramian if formed); or the direction itself if not a
        weighting. The base class combines weights into the direction."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (RNG state, running estimates)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def options(self) -> dict[str, Any]:
        """The options this aggregator was built with."""
        return {}


_COMPILED: dict[Callable[..., Tensor], Callable[..., Tensor]] = {}
"""Compiled solvers by the function compiled (a class's ``device_weights``, called with the
aggregator as ``self``): torch.compile guards on the options the solver reads, so instances
with equal options (a run's critic and actor aggregators) share one compile and others compile
their own."""

Solver = Literal["auto", "host", "device"]
"""The ``solver`` option of an aggregator with a device solver (see ``Weighting``)."""


def takes_device_path(solver: str, in_cuda_graph: bool, device: torch.device) -> bool:
    """The ``solver`` option's rule for one aggregation: ``device`` always takes the device
    path, ``host`` never, ``auto`` in an update captured in a CUDA graph (``in_cuda_graph``)
    whose gradients are off the CPU."""
    return solver == "device" or (solver == "auto" and in_cuda_graph and device.type != "cpu")


class Weighting(Aggregator):
    """An aggregator whose direction is ``weights @ G`` with weights computed from the Gramian.

    The host path copies the Gramian to the CPU in float64 (a sync on a GPU) and calls
    ``weights``. A class with ``device_solver = True`` also has ``device_weights``, pure tensor
    ops on G's device (no sync; capturable in a CUDA graph), chosen by its ``solver`` option:
    ``auto`` (the device path in an update replayed from a CUDA graph, see ``in_cuda_graph``;
    the host path otherwise, where it is faster: a device solver is many small kernels, each
    launched on its own outside a graph), ``host`` or ``device``.

    With ``compile_solver`` set, a deterministic device solver runs compiled by torch.compile
    (Inductor, the whole solve as one graph), which fuses its elementwise steps into a few
    kernels: for CAGrad's interior-point steps Inductor generates about 9 kernels and library
    calls a step where the eager solver launches 44 ops. A solver that draws random numbers
    (PCGrad's orders) draws them eagerly, so that it draws what the eager update draws, and
    compiles only what follows (``solve_compiled``). A compile that fails warns once and the
    solver runs uncompiled from then on.
    """

    solver: str = "host"
    """``auto``, ``host`` or ``device``: which path a class with ``device_solver`` takes."""

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        if self._use_device(G):
            gram = G.device_gramian()
            # with deferred checks (check_direction off) the caller checks on the device later
            if self.check_finite and self.check_direction and not bool(torch.isfinite(gram).all()):
                self.raise_non_finite(G)
            return Aggregation([], self._device_solve(gram).to(dtype=G.dtype), gram)
        gram = G.gramian()
        if self.check_finite and not bool(torch.isfinite(gram).all()):
            self.raise_non_finite(G)
        weights = self.weights(gram).to(device=G.device, dtype=G.dtype)
        return Aggregation([], weights, gram)

    def _device_solve(self, gram: Tensor) -> Tensor:
        """``device_weights``, compiled where ``compile_solver`` asks and the solver is
        deterministic (see the class docstring)."""
        if self.stochastic:  # draws eagerly and compiles what follows itself (PCGrad)
            return self.device_weights(gram)
        return self.solve_compiled(type(self).device_weights, self, gram)

    def solve_compiled(self, solve: Callable[..., Tensor], *args: Any) -> Tensor:
        """``solve(*args)``, compiled by torch.compile (one compile per function and set of
        guards, kept for the process) where ``compile_solver`` asks; a compile that fails warns
        once, turns ``compile_solver`` off and solves uncompiled."""
        if not self.compile_solver:
            return solve(*args)
        try:
            compiled = _COMPILED.get(solve)
            if compiled is None:
                compiled = torch.compile(solve, fullgraph=True, dynamic=False)
                _COMPILED[solve] = compiled
            with warnings.catch_warnings():  # Inductor's own deprecation notices
                warnings.filterwarnings("ignore", category=FutureWarning)
                return compiled(*args)
        except Exception as exc:  # no compiler for this device, an op Dynamo cannot trace, ...
            print(
                f"warning: compile_solvers: {self!r} solves uncompiled ({one_line(exc)})",
                file=sys.stderr,
            )
            self.compile_solver = False
            return solve(*args)

    def _use_device(self, G: TaskGradients) -> bool:
        """Whether this aggregation takes the device path (see the class docstring)."""
        return self.device_solver and takes_device_path(
            self.placement, self.in_cuda_graph, G.device
        )

    @property
    def placement(self) -> str:
        """``auto``, ``host`` or ``device``: the ``solver`` option of a class with a device
        solver (a class whose ``solver`` option names an algorithm maps it here)."""
        return self.solver

    def runs_on_device(self) -> bool:
        return self.device_solver and self.placement != "host"

    def weights(self, gram: Tensor) -> Tensor:
        """Task weights [T] (float64, CPU) from the T x T Gramian."""
        raise NotImplementedError

    def device_weights(self, gram: Tensor) -> Tensor:
        """Task weights [T] (float64, on gram's device) from the T x T Gramian (float64, on G's
        device), by tensor ops only: no host sync, no data-dependent control flow or shapes."""
        raise NotImplementedError


class LossWeighting(Aggregator):
    """A loss-balancing method: task weights from the losses (and the method's own state), applied
    to the T losses before one fused backward; no per-task gradients, so it costs what ``mean``
    costs.

    Per update of a network the trainer calls ``weights(losses)`` with the detached per-task
    losses [T] before the backward, steps the optimizer, then calls ``observe(losses, ...)``
    with what the class lists in ``needs``:

    - ``"losses_after"``: the per-task losses on the same batch after the step (one more forward;
      e.g. FAMO);
    - ``"shared_grad_norms"``: [T] norms of each task's weighted gradient ``w_t * grad L_t`` of
      the network's last shared layer (the output layer of a single-head network, the last
      hidden layer of a multi-head one), from the same backward (GradNorm).

    Given per-task gradients instead (the toy problem, diagnostics), the direction is the latest
    weights (uniform before the first call) times G.
    """

    kind: ClassVar[str] = "loss"
    needs_grads: ClassVar[bool] = False
    device_solver: ClassVar[bool] = True  # ``weights`` is tensor ops on the losses' device
    needs: ClassVar[frozenset[str]] = frozenset()
    last_weights: Tensor | None = None

    def weights(self, losses: Tensor) -> Tensor:
        """Task weights [T] (on the losses' device) for the losses [T] of this update."""
        raise NotImplementedError

    def observe(
        self,
        losses: Tensor,
        losses_after: Tensor | None = None,
        shared_grad_norms: Tensor | None = None,
    ) -> None:
        """Update the method's state after the optimizer step (the default: nothing)."""

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        tasks = G.num_tasks
        weights = self.last_weights
        if weights is None or weights.numel() != tasks:
            weights = torch.full((tasks,), 1.0 / tasks)
        return Aggregation([], weights.detach().to(device=G.device, dtype=G.dtype))
