"""Cost of per-task gradients and aggregation for MT-SAC sized networks, as ratios.

For an MLP (39 + T) -> 400 -> 400 -> 400 -> 1 and 128 samples per task it times, in one run:
(a) one backward of the mean loss (the floor: no per-task gradients),
(b) the vectorised engine ``per_task_grads`` (vmap over the task axis), keeping G in
    per-parameter blocks as MT-SAC does ((b') also concatenates them into a flat [T, P]),
(c) the per-task loop of ``autograd.grad(loss[i], retain_graph=True)`` on one shared graph
    (the way LibMTL, facebookresearch/mtrl and the CAGrad code get per-task gradients),
(d) each registered aggregator on the resulting G,
and prints every time as a ratio to (a).

    python benchmarks/surgery.py            # T = 10 and 50, 20 repeats
    python benchmarks/surgery.py --full     # T = 10, 50 and 100, 100 repeats
    python benchmarks/surgery.py --tasks 10 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, median_time

from mtrl.surgery import aggregator_class, get_aggregator, list_aggregators, per_task_grads

OBS, HIDDEN, BATCH = 39, 400, 128


def critic_like(tasks: int) -> nn.Module:
    """An MT-SAC sized critic: (obs + one-hot) -> 3 x 400 ReLU -> 1."""
    return nn.Sequential(
        nn.Linear(OBS + tasks, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, 1),
    )


def bench(tasks: int, repeats: int) -> list[tuple[str, float]]:
    """Times (seconds) of every way to get and combine T per-task gradients."""
    torch.manual_seed(0)
    model = critic_like(tasks)
    params = dict(model.named_parameters())
    x = torch.randn(tasks, BATCH, OBS + tasks)
    y = torch.randn(tasks, BATCH, 1)

    def loss_fn(p, batch):
        xb, yb = batch
        return ((functional_call(model, p, (xb,)) - yb) ** 2).mean()

    def mean_backward():
        model.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()

    def engine():  # per-parameter blocks, as MT-SAC uses it: no [T, P] concatenation
        return per_task_grads(loss_fn, params, (x, y), flat=False)

    def engine_flat():
        return per_task_grads(loss_fn, params, (x, y))

    def shared_graph_loop():
        losses = ((model(x) - y) ** 2).mean(dim=(1, 2))
        plist = list(params.values())
        rows = [
            torch.cat(
                [g.flatten() for g in torch.autograd.grad(losses[t], plist, retain_graph=True)]
            )
            for t in range(tasks)
        ]
        return torch.stack(rows)

    rows = [("(a) backward of the mean loss", median_time(mean_backward, repeats))]
    rows.append(("(b) vectorised engine (vmap, blocks)", median_time(engine, repeats)))
    rows.append(("(b') vectorised engine, flat [T, P]", median_time(engine_flat, repeats)))
    loop_repeats = max(1, repeats // 4) if tasks > 20 else repeats
    rows.append(
        ("(c) loop of autograd.grad on one graph", median_time(shared_graph_loop, loop_repeats, 1))
    )
    G = engine()
    for name in list_aggregators():
        if aggregator_class(name).kind != "gradient":
            continue  # loss methods weight the losses, not G: see update_cost.py
        agg = get_aggregator(name, seed=0)
        rows.append((f"(d) aggregator {name}", median_time(lambda agg=agg: agg(G), repeats)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 50], help="values of T")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--full", action="store_true", help="100 repeats, T = 10, 50, 100")
    args = parser.parse_args(argv)
    if args.full and args.tasks == [10, 50]:
        args.tasks = [10, 50, 100]
    args.repeats = args.repeats or (100 if args.full else 20)
    print(machine_line())
    for tasks in args.tasks:
        rows = bench(tasks, args.repeats)
        base = rows[0][1]
        engine = rows[1][1]
        print(f"\nT = {tasks}, {BATCH} samples per task, MLP {OBS + tasks}->{HIDDEN}x3->1")
        print(f"{'measurement':44s} {'ms':>9s} {'x (a)':>7s}")
        for name, seconds in rows:
            print(f"{name:44s} {seconds * 1e3:9.2f} {seconds / base:7.2f}")
        for name, seconds in rows[4:]:
            total = (engine + seconds) / base
            print(f"(b)+(d) {name[15:]:36s} {'':9s} {total:7.2f}")


if __name__ == "__main__":
    main()
