"""MT-SAC's critic step with PCGrad in mtrl and in other implementations: same networks and batch.

The step: per-task gradients of the twin-critic loss (agent preset ``mtsac``: 3 x 400, 128
samples per task, MT10/MT50-shaped batch) -> PCGrad -> the direction in ``.grad``. Timed, the
methods taking turns in every round, as ratios to (a):

(0) the fused mean-loss backward (plain MT-SAC: no per-task gradients, no surgery), for scale;
(a) mtrl: ``per_task_grads`` (vmap over the task axis) + mtrl's PCGrad + ``write_grads``;
(b) mtrl's ``per_task_grads(mode="loop")``: a forward and a backward per task on its own samples;
(c) the way facebookresearch/mtrl, the CAGrad MTRL code and LibMTL get them: one forward of all
    T x B samples, per-task losses, T x ``autograd.grad(loss[t], retain_graph=True)`` through
    that one graph, then the projection loop on the flat [T, P] matrix;
(d) torchjd ``autojac.backward(losses)`` + ``jac_to_grad(params, PCGrad())``;
(e) torchjd's autogram ``Engine`` (Gramian without the Jacobian) + ``PCGradWeighting``, then
    ``losses.backward(weights)``. ``batch_dim=None``: the ensemble layers put their batch on
    dim 1, which torchjd's batched path does not take; ``mtl_backward`` needs task-specific
    heads, which the one-hot conditioned ``mtsac`` preset does not have.

Before timing, all five surgery paths run with one fixed PCGrad task order (torchjd's own
``torch.randperm`` draws, replayed for the others) and must give the same direction.
torchjd is not a project dependency; install it beside this script (see
requirements-peers.txt). Without it (d) and (e) are skipped.

    python benchmarks/peers.py            # --quick: T = 10 and 50, CPU
    python benchmarks/peers.py --full
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent / ".peers"))  # torchjd, if installed
from common import interleaved_times, load_line, machine_line
from update_cost import make_agent, random_batch

from mtrl.agents.sac import per_task_loss
from mtrl.surgery import get_aggregator, per_task_grads, write_grads
from mtrl.surgery.aggregators.pcgrad import PCGrad

try:
    import torchjd
    from torchjd.aggregation import PCGrad as JDPCGrad
    from torchjd.aggregation import PCGradWeighting
    from torchjd.autogram import Engine
    from torchjd.autojac import backward as jd_backward
    from torchjd.autojac import jac_to_grad
except ImportError:
    torchjd = None

INSTALL = (
    ".venv/bin/pip install --target benchmarks/.peers --no-deps "
    "-r benchmarks/requirements-peers.txt"
)
NAMES = {
    "fused": "(0) fused mean-loss backward, no surgery",
    "mtrl": "(a) mtrl: vmap engine + pcgrad",
    "loop": "(b) mtrl mode=loop + pcgrad",
    "shared": "(c) loop on one graph + [T,P] pcgrad",
    "autojac": "(d) torchjd autojac + PCGrad",
    "autogram": "(e) torchjd autogram + PCGradWeighting",
}
SLOW = ("loop", "shared", "autojac", "autogram")


class FixedOrderPCGrad(PCGrad):
    """mtrl's PCGrad visiting the other tasks in a given order instead of a random one."""

    def __init__(self, order: np.ndarray) -> None:
        super().__init__()
        self.order = order

    def random_order(self, tasks: int) -> np.ndarray:
        return self.order


def torch_randperm_order(tasks: int, seed: int) -> np.ndarray:
    """The task orders torchjd's PCGrad draws after ``torch.manual_seed(seed)``, as [T, T-1]."""
    torch.manual_seed(seed)
    perms = [torch.randperm(tasks).tolist() for _ in range(tasks)]
    return np.array([[j for j in perm if j != i] for i, perm in enumerate(perms)])


def flat_pcgrad(G: Tensor, order: np.ndarray) -> Tensor:
    """PCGrad on the flat [T, P] matrix, as the loop-based codes do it; sum of projected rows."""
    projected = G.clone()
    sq_norms = (G * G).sum(dim=1)
    for k in range(order.shape[1]):
        j = torch.as_tensor(order[:, k], device=G.device)
        dots = (projected * G[j]).sum(dim=1)
        step = torch.where((dots < 0) & (sq_norms[j] > 0), dots / sq_norms[j], 0.0)
        projected -= step[:, None] * G[j]
    return projected.sum(dim=0)


class CriticStep:
    """One MT-SAC critic and batch; every method writes its PCGrad direction into its own copy.

    :param tasks: T (10 or 50: the shapes of experiments/mt10-*, mt50-*).
    :param device: where the networks and the batch live.
    """

    def __init__(self, tasks: int, device: torch.device) -> None:
        agent, batch_size = make_agent("mean", tasks, device)
        batch = random_batch(tasks, batch_size, device)
        self.tasks, self.batch_size = tasks, batch_size
        # functional: takes any copy's parameters
        self.task_loss = per_task_loss(agent._critic_losses, has_aux=False)
        # Targets pulled up or down by task (+-3 alternately) so that tasks' gradients conflict
        # and PCGrad projects (on random targets alone every pair agrees at initialisation).
        sign = 1.0 - 2.0 * (torch.arange(tasks, device=device) % 2)
        self.tb = {
            "obs": batch["obs"],
            "action": batch["action"],
            "target": agent.critic_targets(batch) + 3.0 * sign[:, None],
        }
        self.critics = {name: copy.deepcopy(agent.critic) for name in NAMES}
        self.engine = Engine(self.critics["autogram"], batch_dim=None) if torchjd else None
        self.rng = np.random.default_rng(0)
        self.pcgrad = get_aggregator("pcgrad", seed=0)

    def losses(self, critic: nn.Module) -> Tensor:
        """Per-task losses [T] from one forward of all T x B samples (one shared graph)."""
        T, B = self.tasks, self.batch_size
        obs, act = self.tb["obs"].reshape(T * B, -1), self.tb["action"].reshape(T * B, -1)
        q = critic(obs, act).view(-1, T, B)
        return 0.5 * ((q - self.tb["target"]) ** 2).mean(dim=-1).sum(dim=0)

    def fused(self, seed: int | None = None) -> None:
        critic = self.critics["fused"]
        critic.zero_grad(set_to_none=True)
        self.losses(critic).mean().backward()

    def _engine(self, name: str, mode: str, seed: int | None) -> None:
        critic = self.critics[name]
        params = dict(critic.named_parameters())
        G = per_task_grads(self.task_loss, params, self.tb, mode=mode, flat=False)
        agg = (
            self.pcgrad
            if seed is None
            else FixedOrderPCGrad(torch_randperm_order(self.tasks, seed))
        )
        critic.zero_grad(set_to_none=True)
        write_grads(params, agg.aggregate(G).direction)

    def mtrl(self, seed: int | None = None) -> None:
        self._engine("mtrl", "vmap", seed)

    def loop(self, seed: int | None = None) -> None:
        self._engine("loop", "loop", seed)

    def shared(self, seed: int | None = None) -> None:
        critic = self.critics["shared"]
        params = list(critic.parameters())
        losses = self.losses(critic)
        rows = []
        for t in range(self.tasks):
            grads = torch.autograd.grad(losses[t], params, retain_graph=t < self.tasks - 1)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        G = torch.stack(rows)
        if seed is not None:
            visit = torch_randperm_order(self.tasks, seed)
        else:
            keys = self.rng.random((self.tasks, self.tasks))
            np.fill_diagonal(keys, np.inf)
            visit = np.argsort(keys, axis=1)[:, :-1]
        critic.zero_grad(set_to_none=True)
        write_grads(params, flat_pcgrad(G, visit))

    def autojac(self, seed: int | None = None) -> None:
        critic = self.critics["autojac"]
        critic.zero_grad(set_to_none=True)
        params = list(critic.parameters())
        jd_backward(self.losses(critic), inputs=params)
        if seed is not None:
            torch.manual_seed(seed)  # torchjd's PCGrad then draws torch_randperm_order(T, seed)
        jac_to_grad(params, JDPCGrad())

    def autogram(self, seed: int | None = None) -> None:
        critic = self.critics["autogram"]
        critic.zero_grad(set_to_none=True)
        losses = self.losses(critic)
        gramian = self.engine.compute_gramian(losses)
        if seed is not None:
            torch.manual_seed(seed)
        losses.backward(PCGradWeighting()(gramian))

    def methods(self) -> dict[str, Callable[..., None]]:
        names = list(NAMES) if torchjd else [n for n in NAMES if n not in ("autojac", "autogram")]
        return {name: getattr(self, name) for name in names}

    def check(self, seed: int = 3) -> tuple[dict[str, float], float]:
        """Relative differences of each surgery path's direction from (a), one fixed task order,
        and how far (a) itself moves with another order (the size of a real disagreement)."""
        out = {}
        for name, fn in self.methods().items():
            if name != "fused":
                fn(seed)
        ref = torch.cat([p.grad.reshape(-1) for p in self.critics["mtrl"].parameters()])
        self.mtrl(seed + 1)  # another order: how much the order alone moves the direction
        other = torch.cat([p.grad.reshape(-1) for p in self.critics["mtrl"].parameters()])
        for name in self.methods():
            if name not in ("fused", "mtrl"):
                got = torch.cat([p.grad.reshape(-1) for p in self.critics[name].parameters()])
                out[name] = ((got - ref).norm() / ref.norm()).item()
        return out, ((other - ref).norm() / ref.norm()).item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="few rounds (the default)")
    mode.add_argument("--full", action="store_true", help="more rounds")
    parser.add_argument("--tasks", type=int, nargs="+", choices=[10, 50], default=[10, 50])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_line())
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    if torchjd is None:
        print(f"torchjd not found: (d) and (e) are skipped. To install it here: {INSTALL}")
    else:
        print(f"torchjd {version('torchjd')} from {Path(torchjd.__file__).parent.parent}")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for tasks in args.tasks:
        rounds = (20 if args.full else 6) if tasks <= 10 else (6 if args.full else 3)
        slow_rounds = rounds if tasks <= 10 else (3 if args.full else 1)
        step = CriticStep(tasks, device)
        print(f"\nT = {tasks}: MT-SAC twin critic 3 x 400, {step.batch_size} samples per task")
        check, sensitivity = step.check()
        worst = max(check.values())
        status = "agree" if worst < 1e-4 else "DIFFER"
        print(
            f"check, one fixed PCGrad task order: directions {status} with (a) "
            + ", ".join(f"{n} {d:.1e}" for n, d in check.items())
            + f" (relative norm of the difference; another order moves (a) by {sensitivity:.1e})"
        )
        if worst >= 1e-4:
            raise SystemExit("the implementations disagree: not timing them")
        step.fused()  # the check ran (and so warmed up) every other method once
        times = interleaved_times(
            step.methods(),
            rounds,
            warmup=0,
            sync=sync,
            skip=lambda name, r, last=slow_rounds: name in SLOW and r >= last,
        )
        print(f"{load_line()}; {rounds} rounds ({slow_rounds} for (b)-(e)), median")
        print(f"{'method':44s} {'ms':>9s} {'x (a)':>7s}")
        for name, seconds in times.items():
            print(f"{NAMES[name]:44s} {seconds * 1e3:9.1f} {seconds / times['mtrl']:7.2f}")


if __name__ == "__main__":
    main()
