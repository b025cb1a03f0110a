"""How tasks are cut into contiguous worker shards of about equal step cost.

Meta-World tasks differ up to 4x in step time (``stick-pull`` 0.76 ms, ``handle-press-side``
0.19 ms here), and MT50's second half is 60% slower than its first: cutting by task count
would leave one worker idle while the other finishes. So cuts balance estimated cost.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

# Milliseconds per env step of each Meta-World v3 task (wrapped by mtrl.envs, random actions),
# measured on a 2-core Intel Xeon VM with mujoco 3.3.0; only the ratios matter.
META_WORLD_STEP_MS: dict[str, float] = {
    "assembly-v3": 0.30,
    "basketball-v3": 0.26,
    "bin-picking-v3": 0.27,
    "box-close-v3": 0.30,
    "button-press-topdown-v3": 0.20,
    "button-press-topdown-wall-v3": 0.19,
    "button-press-v3": 0.20,
    "button-press-wall-v3": 0.20,
    "coffee-button-v3": 0.22,
    "coffee-pull-v3": 0.68,
    "coffee-push-v3": 0.68,
    "dial-turn-v3": 0.21,
    "disassemble-v3": 0.30,
    "door-close-v3": 0.30,
    "door-lock-v3": 0.21,
    "door-open-v3": 0.32,
    "door-unlock-v3": 0.22,
    "hand-insert-v3": 0.50,
    "drawer-close-v3": 0.21,
    "drawer-open-v3": 0.21,
    "faucet-open-v3": 0.20,
    "faucet-close-v3": 0.20,
    "hammer-v3": 0.30,
    "handle-press-side-v3": 0.19,
    "handle-press-v3": 0.20,
    "handle-pull-side-v3": 0.24,
    "handle-pull-v3": 0.23,
    "lever-pull-v3": 0.30,
    "pick-place-wall-v3": 0.68,
    "pick-out-of-hole-v3": 0.26,
    "pick-place-v3": 0.66,
    "plate-slide-v3": 0.30,
    "plate-slide-side-v3": 0.30,
    "plate-slide-back-v3": 0.31,
    "plate-slide-back-side-v3": 0.31,
    "peg-insert-side-v3": 0.40,
    "peg-unplug-side-v3": 0.31,
    "soccer-v3": 0.69,
    "stick-push-v3": 0.74,
    "stick-pull-v3": 0.76,
    "push-v3": 0.66,
    "push-wall-v3": 0.70,
    "push-back-v3": 0.67,
    "reach-v3": 0.31,
    "reach-wall-v3": 0.31,
    "shelf-place-v3": 0.71,
    "sweep-into-v3": 0.71,
    "sweep-v3": 0.50,
    "window-open-v3": 0.20,
    "window-close-v3": 0.21,
}


def estimated_costs(task_names: Sequence[str]) -> list[float]:
    """Relative step cost of each task: the Meta-World table, else the median of the known.

    Suites with no task in the table get equal costs (cut by task count).
    """
    known = [META_WORLD_STEP_MS[n] for n in task_names if n in META_WORLD_STEP_MS]
    default = statistics.median(known) if known else 1.0
    return [META_WORLD_STEP_MS.get(n, default) for n in task_names]


def shard_bounds(costs: Sequence[float], num_workers: int) -> list[tuple[int, int]]:
    """Cut tasks into ``num_workers`` non-empty contiguous ``[start, stop)`` ranges.

    The cuts minimise the largest shard cost (the time of a lockstep vector step); among
    equal maxima the first found wins, so the result is deterministic.
    """
    n = len(costs)
    if not 1 <= num_workers <= n:
        raise ValueError(f"need 1 <= num_workers <= {n} tasks, got {num_workers}")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    inf = float("inf")
    # best[k][j]: smallest max cost cutting tasks[:j] into k shards; cut[k][j]: last cut.
    best = [[inf] * (n + 1) for _ in range(num_workers + 1)]
    cut = [[0] * (n + 1) for _ in range(num_workers + 1)]
    best[0][0] = 0.0
    for k in range(1, num_workers + 1):
        for j in range(k, n - (num_workers - k) + 1):
            for i in range(k - 1, j):
                value = max(best[k - 1][i], prefix[j] - prefix[i])
                if value < best[k][j] - 1e-12:
                    best[k][j], cut[k][j] = value, i
    bounds = []
    j = n
    for k in range(num_workers, 0, -1):
        i = cut[k][j]
        bounds.append((i, j))
        j = i
    return bounds[::-1]
