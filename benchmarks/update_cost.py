"""Time per full MT-SAC training update (critic + actor + temperatures) per aggregator.

Builds the agents exactly as ``experiments/mt{T}-{mtsac,pcgrad,cagrad}.yaml`` do (agent preset
``mtsac-metaworld``: actor and twin critic 3 x 400, batch 128 per task, gradient clip 1.0; PCGrad
mean with a shared order; CAGrad c = 0.9 on MT10, 0.5 on MT50), and every other registered
aggregator as ``mt{T}-mtsac`` with ``surgery=NAME`` (its default options; ``--methods`` picks
some), on an MT10-shaped (T = 10, obs 39 + 10, act 4) and an MT50-shaped (T = 50, obs 39 + 50)
random batch, and times ``MTSAC.update(batch)``, the methods taking turns in every round.
Besides ``mean`` (mtrl's per-task path, aggregated by averaging) it times ``plain``: an
ordinary fused MT-SAC update (one backward of the mean loss over all T x B samples, no
per-task gradients), checked first to give the same parameters as ``mean``.

    python benchmarks/update_cost.py                 # --quick: both shapes, CPU
    python benchmarks/update_cost.py --full
    python benchmarks/update_cost.py --device cuda
    python benchmarks/update_cost.py --inductor      # also plain with torch.compile'd networks
    python benchmarks/update_cost.py --ops-only      # only count each update's ops (seconds)
    python benchmarks/update_cost.py --device cuda --compile-solvers   # + compiled solvers
    python benchmarks/update_cost.py --device cuda --fused-solvers     # + Triton solvers
    python benchmarks/update_cost.py --device cuda --profile   # each graph's costliest kernels

Before the timing it counts each method's aten ops per update as a CUDA graph records them
(device solvers, deferred finite checks; views, which launch nothing, left out): replayed from
a graph every op is one or a few kernel launches, so on a GPU the graph path's cost over
``mean`` follows the extra ops (BENCHMARKS.md relates the two on the H100).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_times, load_line, machine_line

from mtrl.agents import MTSAC, polyak_update
from mtrl.agents.graphed import WARMUP_UPDATES, GraphedUpdate, graph_blocker, make_updater
from mtrl.agents.networks import squashed_sample
from mtrl.config import resolve_config
from mtrl.surgery import aggregator_class, list_aggregators, option_specs
from mtrl.surgery.aggregators import Weighting

OBS, ACT = 39, 4
EXPERIMENT = {"mean": "mtsac", "pcgrad": "pcgrad", "cagrad": "cagrad"}
"""Methods with an experiment preset use its settings; the others are mt{T}-mtsac + surgery=NAME."""
TARGETS = {
    "cpu": {"pcgrad": 1.3, "cagrad": 1.3},
    "cuda": {"pcgrad": 1.15, "cagrad": 1.25, "*": 1.3},
}
"""Targets for the fast path: time per update relative to ``mean`` ("*": every other gradient
method whose solver runs on the device)."""
LOSS_TARGET = 1.05
"""Loss-balancing methods (one fused backward) should cost what mean costs."""
PATHS = {"eager": "vmap", "fast": "auto", "graph": "auto"}
"""How per-task gradients are formed on each path (``agent.task_grads``); ``graph`` is the fast
path replayed from a CUDA graph (``compile=true``, GPU only)."""
PUBLISHED = {"pcgrad": 9.7 / 7.3, "cagrad": 20.9 / 7.3}
"""Nash-MTL paper, MT10, seconds per episode relative to MT-SAC (end to end)."""

Batch = dict[str, Tensor]


def random_batch(tasks: int, batch: int, device: torch.device, seed: int = 0) -> Batch:
    """A replay-shaped batch [T, B, ...]: random observations with the one-hot task id at the end."""
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(tasks)[:, None, :].expand(tasks, batch, tasks)
    out = {
        "obs": torch.cat([torch.randn(tasks, batch, OBS, generator=gen), eye], dim=-1),
        "action": torch.rand(tasks, batch, ACT, generator=gen) * 2 - 1,
        "reward": torch.randn(tasks, batch, generator=gen),
        "next_obs": torch.cat([torch.randn(tasks, batch, OBS, generator=gen), eye], dim=-1),
        "terminated": (torch.rand(tasks, batch, generator=gen) < 0.01).float(),
    }
    return {k: v.to(device) for k, v in out.items()}


def _is_loss_method(name: str) -> bool:
    return name != "plain" and aggregator_class(name).kind == "loss"


def _has_paths(name: str) -> bool:
    """Methods that form per-task gradients, so the eager and fast paths differ."""
    return name not in ("plain", "mean", "sum") and aggregator_class(name).kind == "gradient"


def make_agent(
    method: str, tasks: int, device: torch.device, path: str = "fast", network: str = "mlp"
) -> tuple[MTSAC, int]:
    """The agent of ``experiments/mt{tasks}-<method>.yaml`` (same seed) and its batch size,
    with architecture ``network``."""
    experiment = EXPERIMENT.get(method)
    overrides = [] if experiment or method == "plain" else [f"surgery={method}"]
    overrides += [f"agent.task_grads={PATHS[path]}", f"agent.network={network}"]
    cls = None if method == "plain" else aggregator_class(method)
    # FairGrad's ``solver`` names its algorithm: it takes its device path in a graph by itself
    placed = (
        cls is not None and getattr(cls, "placement", Weighting.placement) is Weighting.placement
    )
    if path == "graph" and placed and cls.device_solver and "solver" in option_specs(method):
        overrides.append("surgery.solver=device")  # what solver=auto takes in a graph
    cfg = resolve_config(f"mt{tasks}-{experiment or 'mtsac'}", overrides)
    torch.manual_seed(0)
    graph = path == "graph"
    agent = MTSAC(
        OBS + tasks,
        ACT,
        tasks,
        cfg.agent,
        cfg.surgery,
        device,
        seed=0,
        defer_checks=True if graph else None,
        capturable=graph and device.type == "cuda",  # CPU: what a graph records, uncaptured
    )
    for aggregator in agent.aggregators.values():
        aggregator.in_cuda_graph = graph  # the device paths a graph takes (IMTL-G's Jacobi)
    return agent, cfg.agent.batch_size


VIEW_OPS = frozenset(
    [
        "alias",
        "as_strided",
        "detach",
        "diagonal",
        "empty",
        "empty_like",
        "empty_strided",
        "expand",
        "lift_fresh",
        "movedim",
        "narrow",
        "permute",
        "_record_function_enter_new",
        "_record_function_exit",
        "_reshape_alias",
        "reshape",
        "select",
        "slice",
        "split",
        "split_with_sizes",
        "squeeze",
        "squeeze_",
        "t",
        "transpose",
        "unbind",
        "unflatten",
        "unsqueeze",
        "unsqueeze_",
        "view",
        "_unsafe_view",
    ]
)
"""Aten ops that launch no kernel (views, allocations, profiler marks): not counted."""


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ not in VIEW_OPS
        return func(*args, **(kwargs or {}))


def count_update_ops(
    method: str, tasks: int, device: torch.device, network: str = "mlp", kernels: bool = False
) -> int | None:
    """Aten ops (views left out) of one update of ``method`` as a CUDA graph records it, run
    eagerly on ``device``; ``plain``: the fused update; None where the update is not captured
    (a solver on the host, IMTL-G above 16 tasks). The second update is counted (the first
    creates the optimizers' state). On the CPU wide Gramians at T < 16 take chunked products:
    3 ops more per network than on a GPU. ``kernels`` (CUDA): count instead the GPU kernels and
    copies the update launches, as torch.profiler records them (a library call such as a
    batched Cholesky factorisation can launch several)."""
    agent, batch_size = make_agent(method, tasks, device, "graph", network)
    aggregators = agent.aggregators.values()
    if not all(a.runs_on_device() and a.capture_blocker_for(tasks) is None for a in aggregators):
        return None
    batch = random_batch(tasks, batch_size, device)
    update = (
        (lambda: plain_update(agent, batch)) if method == "plain" else (lambda: agent.update(batch))
    )
    with warnings.catch_warnings():  # capturable optimizers stepping outside a graph
        warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
        update()
        if kernels:
            return len(_gpu_events(update))
        with _OpCounter() as counter:
            update()
    return counter.count


def _gpu_events(update: Callable[[], object], calls: int = 1) -> list[Any]:
    """The GPU activities (kernels, copies, fills) of ``calls`` calls of ``update``, as
    torch.profiler records them."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            update()
        torch.cuda.synchronize()
    return [event for event in prof.events() if event.device_type == DeviceType.CUDA]


def print_kernel_profile(name: str, update: Callable[[], object], replays: int = 5) -> None:
    """The GPU kernels of ``replays`` calls of ``update`` (a graph variant) by total time, as
    torch.profiler records them: per call the kernel count, the summed kernel time, and the
    eight costliest kernels (launches and us per call); where the time goes once launches are
    replayed from a graph."""
    totals: dict[str, list[float]] = {}
    for event in _gpu_events(update, replays):
        entry = totals.setdefault(event.name, [0, 0.0])
        entry[0] += 1
        entry[1] += event.time_range.elapsed_us()
    count = sum(n for n, _ in totals.values()) / replays
    busy = sum(us for _, us in totals.values()) / replays
    print(f"profile {name}: {count:.0f} kernels, {busy:.0f} us of kernel time per update")
    for kernel, (n, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"    {us / replays:8.1f} us  {n / replays:6.1f} x  {kernel[:90]}")


def print_ops(methods: list[str], tasks: int, device: torch.device, network: str) -> None:
    """One line: each method's ops per update and its extra over ``mean``; on a GPU a second
    line with the kernels it launches (torch.profiler)."""
    counts = {"ops per update as a graph records them": False}
    if device.type == "cuda":
        counts["GPU kernels per update, profiled eagerly"] = True
    for title, kernels in counts.items():
        try:
            ops = {m: count_update_ops(m, tasks, device, network, kernels) for m in methods}
        except Exception as exc:  # a profiler without CUPTI, say: the timing still runs
            print(f"{title}: not counted ({type(exc).__name__}: {exc})")
            continue
        base = ops["mean"]
        assert base is not None
        cells = [f"{m} {n} ({n - base:+d})" if n else f"{m} not captured" for m, n in ops.items()]
        print(f"{title} (+/- mean): {', '.join(cells)}")


def graph_update(
    agent: MTSAC, compile_solvers: bool = False, fused_solvers: bool = False
) -> GraphedUpdate | None:
    """The agent's update replayed from a CUDA graph, or None where the capture is blocked."""
    update = make_updater(agent, "auto", compile_solvers, fused_solvers)
    return update if isinstance(update, GraphedUpdate) else None


VARIANT_WORDS = {
    "graph+c": "compiled solvers",
    "graph+f": "fused solvers",
    "graph+fc": "fused, compiled solvers",
}

GRAPH_VARIANTS = {
    "graph": (False, False),
    "graph+c": (True, False),
    "graph+f": (False, True),
    "graph+fc": (True, True),
}
"""The graph path's variants: (compile_solvers, fused_solvers)."""


def graph_variants(method: str, compile_solvers: bool, fused_solvers: bool) -> list[str]:
    """The variants of ``GRAPH_VARIANTS`` timed for ``method``: the plain graph, and those
    with its solver compiled and/or fused where asked and where it has one."""
    compiled = compile_solvers and _compiles(method)
    fused = fused_solvers and _compiles(method) and aggregator_class(method).fusable
    return [
        key for key, (c, f) in GRAPH_VARIANTS.items() if (compiled or not c) and (fused or not f)
    ]


def _compiles(method: str) -> bool:
    """Methods with a device solver, which ``compile_solvers=true`` compiles (PCGrad's after
    its random draws)."""
    if method in ("plain", "mean", "sum"):  # plain is no aggregator; mean and sum solve nothing
        return False
    return aggregator_class(method).device_solver


def check_graph_equals_eager(
    method: str,
    tasks: int,
    device: torch.device,
    updates: int,
    compile_solvers: bool = False,
    fused_solvers: bool = False,
) -> float:
    """Largest parameter difference between ``updates`` eager updates and as many through the
    CUDA graph (warm-up, capture, replays), from one state and one random stream. The eager
    updates run the same solvers, compiled and fused as the graph's (rounding differences
    between solvers become steps of up to lr through Adam on parameters whose gradient is ~0,
    which would hide what this checks: the capture)."""
    agent = make_agent(method, tasks, device, "graph")[0]
    for aggregator in agent.aggregators.values():
        aggregator.compile_solver = compile_solvers and _compiles(method)
        aggregator.fused_solver = fused_solvers and aggregator.fusable
    graphed = copy.deepcopy(agent)
    update = graph_update(graphed, compile_solvers, fused_solvers)
    assert update is not None, graph_blocker(graphed)
    batches = [random_batch(tasks, 128, device, seed=i) for i in range(updates)]
    for fn in (agent.update, update):
        torch.cuda.manual_seed(11)
        for batch in batches:
            fn(batch)
    torch.cuda.synchronize()
    return max_parameter_difference(agent, graphed)


def _clip(agent: MTSAC, module: torch.nn.Module) -> None:
    if agent.cfg.grad_clip is not None:  # as MTSAC does: each network's gradient, before its step
        torch.nn.utils.clip_grad_norm_(module.parameters(), agent.cfg.grad_clip)


def plain_update(agent: MTSAC, batch: Batch) -> None:
    """An ordinary MT-SAC update: each loss is the mean over all T x B samples, one backward each.

    Same losses, temperatures and target update as ``MTSAC.update`` with ``mean``, without
    per-task gradients (tests/agents/test_mtsac.py checks the two agree).
    """
    T, B = batch["reward"].shape
    obs, act = batch["obs"].reshape(T * B, -1), batch["action"].reshape(T * B, -1)
    target = agent.critic_targets(batch)
    q = agent.critic(obs, act).view(-1, T, B)
    critic_loss = 0.5 * ((q - target) ** 2).mean(dim=-1).sum(0).mean()
    agent.critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    _clip(agent, agent.critic)
    agent.critic_opt.step()

    alpha = agent.log_alpha.exp().detach()
    action, log_prob = squashed_sample(*agent.actor(obs))
    agent.critic.requires_grad_(False)
    try:
        q_pi = agent.critic(obs, action).min(dim=0).values.view(T, B)
    finally:
        agent.critic.requires_grad_(True)
    actor_loss = (alpha[:, None] * log_prob.view(T, B) - q_pi).mean()
    agent.actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    _clip(agent, agent.actor)
    agent.actor_opt.step()

    task_log_prob = log_prob.view(T, B).mean(dim=1).detach()
    alpha_loss = -(agent.log_alpha * (task_log_prob + agent.target_entropy)).sum()
    agent.alpha_opt.zero_grad(set_to_none=True)
    alpha_loss.backward()
    agent.alpha_opt.step()
    polyak_update(agent.critic, agent.critic_target, agent.cfg.tau)


def check_plain_equals_mean(agent: MTSAC, batch: Batch) -> float:
    """Largest parameter difference after one ``plain`` and one ``mean`` update from one state."""
    ours, ref = copy.deepcopy(agent), copy.deepcopy(agent)
    torch.manual_seed(7)
    ours.update(batch)
    torch.manual_seed(7)
    plain_update(ref, batch)
    return max_parameter_difference(ours, ref)


def max_parameter_difference(a: MTSAC, b: MTSAC) -> float:
    """Largest absolute difference between the networks, targets and temperatures of two agents."""
    diffs = [
        (x - y).abs().max().item()
        for net in ("actor", "critic", "critic_target")
        for x, y in zip(getattr(a, net).parameters(), getattr(b, net).parameters(), strict=True)
    ]
    return max([*diffs, (a.log_alpha - b.log_alpha).abs().max().item()])


def bench(
    tasks: int,
    device: torch.device,
    rounds: int,
    methods: list[str],
    network: str = "mlp",
    inductor: bool = False,
    compile_solvers: bool = False,
    fused_solvers: bool = False,
    profile: bool = False,
) -> dict[str, float]:
    """Median seconds per update of every method (``NAME`` on the fast path, ``NAME/eager`` on
    the eager one for methods with per-task gradients, ``NAME/graph`` replayed from a CUDA
    graph), on one batch of the mt{tasks} shape; with ``inductor`` also ``plain/inductor``
    (``compiled_plain``); with ``compile_solvers`` also ``NAME/graph+c``, the graph with the
    device solvers compiled (``compile_solvers=true``; PCGrad's after its random draws); with
    ``fused_solvers`` also ``NAME/graph+f``, with the interior-point solvers as Triton kernels
    (and ``NAME/graph+fc`` with both); ``profile`` prints each graph variant's kernels
    (``print_kernel_profile``) before the timing."""
    agents = {m: make_agent(m, tasks, device, network=network) for m in methods}
    agents |= {
        f"{m}/eager": make_agent(m, tasks, device, "eager", network)
        for m in methods
        if _has_paths(m)
    }
    batch = random_batch(tasks, agents["mean"][1], device)
    diff = check_plain_equals_mean(agents["mean"][0], batch)
    tol = 1e-4 if device.type == "cpu" else 1e-3
    if diff > tol:
        raise SystemExit(f"plain and mean updates differ by {diff:.2e} (> {tol}): fix plain_update")
    print(f"check: plain and mean updates agree (max parameter difference {diff:.1e})")
    fns = {
        m: (lambda a=a: plain_update(a, batch)) if m == "plain" else (lambda a=a: a.update(batch))
        for m, (a, _) in agents.items()
    }
    if device.type == "cuda":
        for m in methods:
            for variant in graph_variants(m, compile_solvers, fused_solvers):
                key, (compiled, fused) = f"{m}/{variant}", GRAPH_VARIANTS[variant]
                agent = make_agent(m, tasks, device, "graph", network)[0]
                update = graph_update(agent, compiled, fused)
                if m != "plain" and update is not None:
                    start = time.perf_counter()
                    for _ in range(WARMUP_UPDATES + 2):  # warm-up and capture, before the timing
                        update(batch)
                    if compiled or fused:
                        print(
                            f"{key}: compile, warm-up and capture {time.perf_counter() - start:.1f} s"
                        )
                    fns[key] = lambda u=update: u(batch)
    if profile:
        for key, fn in fns.items():
            if "/graph" in key:
                try:
                    print_kernel_profile(key, fn)
                except Exception as exc:  # a profiler without CUPTI, say: the timing still runs
                    print(f"profile {key}: not profiled ({type(exc).__name__}: {exc})")
    if inductor:
        fns["plain/inductor"] = compiled_plain(agents["mean"][0], batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return interleaved_times(fns, rounds, warmup=2, sync=sync)


def compiled_plain(agent: MTSAC, batch: Batch) -> Callable[[], None]:
    """``plain_update`` of a copy of ``agent`` whose actor, critic and target are compiled by
    torch.compile (Inductor, default mode), compiled and warmed up before it is returned."""
    compiled = copy.deepcopy(agent)
    for module in (compiled.actor, compiled.critic, compiled.critic_target):
        module.compile()
    start = time.perf_counter()
    for _ in range(3):
        plain_update(compiled, batch)
    print(f"torch.compile: compile and 3 warm-up updates {time.perf_counter() - start:.1f} s")
    return lambda: plain_update(compiled, batch)


def print_table(
    times: dict[str, float], methods: list[str], targets: dict[str, float], graphs: bool
) -> None:
    """One row per method: eager, fast (and graph) ms, and the ratios the targets are set on
    (to ``mean`` on the same path: the graph path where there is one)."""
    head = f"{'method':12s} {'eager ms':>9s} {'fast ms':>8s} "
    head += f"{'graph ms':>9s} " if graphs else ""
    print(head + f"{'eager/fast':>10s} {'x mean':>7s} {'x plain':>8s} {'target':>7s} {'peers':>6s}")
    base = times.get("mean/graph", times["mean"]) if graphs else times["mean"]
    for m in methods:
        if _is_loss_method(m):
            limit = LOSS_TARGET
        else:
            limit = targets.get(m) or (targets.get("*") if _has_paths(m) else None)
        target = f"<={limit:.2f}" if limit else ""
        peer = f"{PUBLISHED[m]:.2f}" if m in PUBLISHED else ""
        eager = times.get(f"{m}/eager", times[m])
        best = times.get(f"{m}/graph", times[m])
        row = f"{m:12s} {eager * 1e3:9.1f} {times[m] * 1e3:8.1f} "
        if graphs:
            row += f"{best * 1e3:9.2f} " if f"{m}/graph" in times else f"{'-':>9s} "
        print(
            row + f"{eager / times[m]:10.2f} {best / base:7.2f} "
            f"{times[m] / times['plain']:8.2f} {target:>7s} {peer:>6s}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="15 rounds (the default)")
    mode.add_argument("--full", action="store_true", help="50 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (each method once per round)")
    parser.add_argument("--tasks", type=int, nargs="+", choices=[10, 50], default=[10, 50])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index>")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--network", default="mlp", help="actor/critic architecture (agent.network; default mlp)"
    )
    parser.add_argument(
        "--inductor",
        action="store_true",
        help="also time plain with the networks compiled by torch.compile (Inductor)",
    )
    parser.add_argument(
        "--ops-only", action="store_true", help="count each update's ops; time nothing"
    )
    parser.add_argument(
        "--compile-solvers",
        action="store_true",
        help="GPU: also time the graph with the device solvers compiled (compile_solvers=true)",
    )
    parser.add_argument(
        "--fused-solvers",
        action="store_true",
        help="GPU: also time the graph with the interior-point solvers as Triton kernels "
        "(fused_solvers=true)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="GPU: print each graph variant's costliest kernels (torch.profiler) before timing",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="aggregators to time besides plain and mean (default: every registered one)",
    )
    args = parser.parse_args(argv)
    if (args.compile_solvers or args.fused_solvers or args.profile) and not args.device.startswith(
        "cuda"
    ):
        parser.error(
            "--compile-solvers, --fused-solvers and --profile are about CUDA-graph updates: "
            "they need --device cuda"
        )
    names = args.methods or [n for n in list_aggregators() if n != "mean"]
    methods = ["plain", "mean", *[n for n in names if n not in ("plain", "mean")]]
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (50 if args.full else 15)
    device = torch.device(args.device)
    print(machine_line())
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"device {device}, {rounds} rounds, methods take turns; median ms per MTSAC.update")
    print(f"eager: agent.task_grads={PATHS['eager']}; fast: agent.task_grads={PATHS['fast']}")
    print(f"network: agent.network={args.network}")
    targets = TARGETS["cuda" if device.type == "cuda" else "cpu"]
    graphs = device.type == "cuda"
    if graphs:
        print("graph: the fast path captured in a CUDA graph and replayed (compile=true)")
    for tasks in args.tasks:
        print(f"\nMT{tasks}-shaped batch: T = {tasks}, obs {OBS}+{tasks}, act {ACT}; {load_line()}")
        print_ops(methods, tasks, device, args.network)
        if args.ops_only:
            continue
        if graphs:
            for m in methods[1:]:  # plain has no graph path
                blocker = graph_blocker(make_agent(m, tasks, device, "graph")[0])
                if blocker is not None:
                    print(f"check: {m}: not captured ({blocker})")
                    continue
                for variant in graph_variants(m, args.compile_solvers, args.fused_solvers):
                    diff = check_graph_equals_eager(m, tasks, device, 8, *GRAPH_VARIANTS[variant])
                    print(
                        f"check: {m}/{variant}: 8 graph updates vs eager, "
                        f"max parameter difference {diff:.1e}"
                    )
        times = bench(
            tasks,
            device,
            rounds,
            methods,
            args.network,
            args.inductor,
            args.compile_solvers,
            args.fused_solvers,
            args.profile,
        )
        print_table(times, methods, targets, graphs)
        for m in methods:
            for variant, what in VARIANT_WORDS.items():
                if f"{m}/{variant}" in times:
                    ms = times[f"{m}/{variant}"] * 1e3
                    ratio = times[f"{m}/{variant}"] / times["mean/graph"]
                    print(f"{m}, graph with {what}: {ms:.2f} ms ({ratio:.2f}x mean's graph)")
        if args.inductor:
            ms, ratio = times["plain/inductor"] * 1e3, times["plain/inductor"] / times["plain"]
            print(f"plain, networks compiled by torch.compile: {ms:.1f} ms ({ratio:.2f}x plain)")
        print(f"({load_line()})")
    print(
        "\npeers: published end-to-end time on MT10 relative to MT-SAC (Nash-MTL paper, "
        "seconds per episode: MT-SAC 7.3, PCGrad 9.7, CAGrad 20.9)"
    )


if __name__ == "__main__":
    main()
