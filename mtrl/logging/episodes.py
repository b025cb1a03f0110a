"""Training episode statistics per task between log points (``train/episode_return_mean``...)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeTracker:
    """Returns and successes of the training episodes that ended since the last ``reset``."""

    returns: list[list[float]] = field(default_factory=list)
    successes: list[list[float]] = field(default_factory=list)

    def reset(self, tasks: int) -> None:
        self.returns = [[] for _ in range(tasks)]
        self.successes = [[] for _ in range(tasks)]

    def add(self, task: int, episode_return: float, success: bool) -> None:
        """Count one finished episode of ``task``."""
        self.returns[task].append(float(episode_return))
        self.successes[task].append(float(success))

    def metrics(self) -> dict[str, float]:
        """Means per task, then over the tasks that finished an episode; {} if none did."""
        done = [i for i, r in enumerate(self.returns) if r]
        if not done:
            return {}
        return {
            "train/episode_return_mean": float(np.mean([np.mean(self.returns[i]) for i in done])),
            "train/success_mean": float(np.mean([np.mean(self.successes[i]) for i in done])),
        }
