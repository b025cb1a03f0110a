"""The training loop: rollout -> replay -> MT-SAC updates through surgery -> eval -> log -> checkpoint.

The trainer wires the parts explicitly; the parts do not import the trainer or each other
sideways. A run is a function of its resolved config and writes only under its run directory.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from mtrl.agents import MTSAC
from mtrl.checkpoint import load_checkpoint, save_checkpoint
from mtrl.config import TrainConfig, config_from_dict, config_to_dict
from mtrl.envs import TaskSuite, load_suite
from mtrl.errors import MtrlError
from mtrl.evaluation import EvalResult, eval_seed, evaluate
from mtrl.logging import JsonlSink, Logger
from mtrl.replay import MultiTaskReplay
from mtrl.rollout import Rollout
from mtrl.surgery import NonFiniteGradientError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def run_name(cfg: TrainConfig) -> str:
    """``<suite>__<aggregator>__seed<k>__<time>``: seeds of one method sort together."""
    suite = Path(cfg.suite).stem
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{suite}__{cfg.surgery.name}__seed{cfg.seed}__{stamp}"


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config saved in a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise MtrlError(f"{run_dir} is not a run directory (no {CONFIG})")
    return config_from_dict(yaml.safe_load(path.read_text()))


def make_device(name: str) -> torch.device:
    """The torch device for ``name``; asking for CUDA without one is a user error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MtrlError(f"device={name} was asked for, but torch sees no CUDA device")
    return torch.device(name)


@dataclass
class EpisodeTracker:
    """Training episode statistics per task between log points."""

    returns: list[list[float]] = field(default_factory=list)
    successes: list[list[float]] = field(default_factory=list)

    def reset(self, tasks: int) -> None:
        self.returns = [[] for _ in range(tasks)]
        self.successes = [[] for _ in range(tasks)]

    def metrics(self) -> dict[str, float]:
        done = [i for i, r in enumerate(self.returns) if r]
        if not done:
            return {}
        return {
            "train/episode_return_mean": float(np.mean([np.mean(self.returns[i]) for i in done])),
            "train/success_mean": float(np.mean([np.mean(self.successes[i]) for i in done])),
        }


class Trainer:
    """One training run of MT-SAC with gradient surgery on a task suite.

    :param cfg: the resolved run config.
    :param run_dir: where outputs go; a new ``<out>/<run name>`` when None.
    :param resume: continue from ``run_dir/checkpoint.pt``.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False):
        self.cfg = cfg
        self.device = make_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg.out) / run_name(cfg)
        self.resume = resume
        self.suite: TaskSuite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.action_rng = np.random.default_rng(cfg.seed)
        s = self.suite
        self.agent = MTSAC(
            s.obs_dim,
            s.act_dim,
            s.num_tasks,
            cfg.agent,
            cfg.surgery,
            self.device,
            s.task_names,
            seed=cfg.seed,
        )
        self.replay = MultiTaskReplay(
            s.num_tasks, cfg.buffer_size, s.obs_dim, s.act_dim, self.device, seed=cfg.seed
        )
        self.step = 0
        self.eval_count = 0
        self.last_eval: EvalResult | None = None
        self.episodes = EpisodeTracker()
        self.episodes.reset(s.num_tasks)
        self.timers = {"env": 0.0, "update": 0.0, "eval": 0.0}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, obs: np.ndarray, rollout: Rollout) -> dict[str, Any]:
        """Everything needed to continue: agent, replay, RNGs, counters, envs, observations."""
        return {
            "step": self.step,
            "eval_count": self.eval_count,
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict() if self.cfg.checkpoint.replay else None,
            "obs": torch.from_numpy(obs),
            "envs": rollout.get_state(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": self.action_rng.bit_generator.state,
                "python": random.getstate(),
            },
            "timers": dict(self.timers),
        }

    def save(self, obs: np.ndarray, rollout: Rollout) -> Path:
        """Write the checkpoint atomically into the run directory."""
        return save_checkpoint(self.checkpoint_state(obs, rollout), self.run_dir / CHECKPOINT)

    def restore(self) -> dict[str, Any]:
        """Load the run directory's checkpoint into the agent, replay, RNGs and counters."""
        state = load_checkpoint(self.run_dir / CHECKPOINT, map_location=self.device)
        self.agent.load_state_dict(state["agent"])
        if state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            print(
                "note: the checkpoint holds no replay buffer (checkpoint.replay=false); "
                "the resumed run refills it, so it will not match an uninterrupted run",
                file=sys.stderr,
            )
        self.step, self.eval_count = int(state["step"]), int(state["eval_count"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.action_rng.bit_generator.state = state["rng"]["numpy"]
        random.setstate(_as_tuple(state["rng"]["python"]))
        self.timers.update(state["timers"])
        return state

    def _resume_envs(self, rollout: Rollout, state: dict[str, Any], obs: np.ndarray) -> np.ndarray:
        """Put the envs back where the checkpoint left them, where the suite's envs allow it."""
        if state["envs"] is None:
            print(
                f"note: the envs of suite {self.suite.name!r} cannot save their state; "
                "their episodes restart on resume",
                file=sys.stderr,
            )
            return obs
        rollout.set_state(state["envs"])
        return state["obs"].cpu().numpy()

    # ------------------------------------------------------------------ the loop
    def _prepare_run_dir(self) -> None:
        if self.resume:
            if not (self.run_dir / CHECKPOINT).is_file():
                raise MtrlError(f"cannot resume: no {CHECKPOINT} in {self.run_dir}")
            return
        if (self.run_dir / CONFIG).exists():
            raise MtrlError(f"run directory {self.run_dir} already holds a run; use resume=")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG).write_text(
            yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
        )

    def evaluate(self) -> EvalResult:
        """Deterministic evaluation of the current policy on fresh envs."""
        start = time.perf_counter()
        result = evaluate(
            lambda o: self.agent.act(o, deterministic=True),
            self.suite,
            self.cfg.eval.episodes,
            eval_seed(self.cfg.seed, self.eval_count),
            self.cfg.eval.num_workers,
        )
        self.eval_count += 1
        self.timers["eval"] += time.perf_counter() - start
        self.last_eval = result
        return result

    def run(self) -> dict[str, Any]:
        """Train to ``cfg.steps`` env steps per task; returns the summary written to summary.json."""
        cfg = self.cfg
        self._prepare_run_dir()
        saved = self.restore() if self.resume else None
        logger = Logger(self._sinks(), self.suite.task_names)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            unit="step",
            disable=not cfg.logger.progress,
            desc=f"{self.suite.name}/{cfg.surgery.name}",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,  # keep log files short
        )
        started = time.perf_counter()
        steps_at_start = self.step
        try:
            with Rollout(self.suite, num_workers=cfg.num_workers, seed=cfg.seed) as rollout:
                obs = rollout.reset()
                if saved is not None:
                    obs = self._resume_envs(rollout, saved, obs)
                while self.step < cfg.steps:
                    obs = self._vector_step(rollout, obs, logger)
                    self.step += 1
                    bar.update(1)
                    self._periodic(rollout, obs, logger, bar, started, steps_at_start)
                if self.last_eval is None or cfg.eval.every == 0 or self.step % cfg.eval.every:
                    self.evaluate()
                    logger.dump(self.step, self.last_eval.metrics())
                self.save(obs, rollout)
        except KeyboardInterrupt:
            if (self.run_dir / CHECKPOINT).is_file():
                print(
                    f"\ninterrupted at step {self.step}; continue from the last checkpoint with: "
                    f"mtrl train resume={self.run_dir}",
                    file=sys.stderr,
                )
            raise
        except NonFiniteGradientError as exc:
            raise MtrlError(
                f"training diverged at step {self.step}: {exc}; the last checkpoint in "
                f"{self.run_dir} is intact (try a lower learning rate or agent.grad_clip)"
            ) from exc
        finally:
            bar.close()
            logger.close()
        summary = self.summary(time.perf_counter() - started)
        (self.run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))
        return summary

    def _sinks(self) -> list:
        """The metrics file always; W&B when ``logger.wandb`` is not off."""
        cfg = self.cfg
        sinks: list = [
            JsonlSink(self.run_dir / METRICS, keep_until=self.step if self.resume else None)
        ]
        if cfg.logger.wandb != "off":
            from mtrl.logging.wandb_sink import WandbSink

            sinks.append(
                WandbSink(
                    cfg.logger.wandb,
                    self.run_dir,
                    project=cfg.logger.project,
                    entity=cfg.logger.entity,
                    name=self.run_dir.name,
                    group=cfg.name or None,
                    tags=[cfg.surgery.name, self.suite.name],
                    config=config_to_dict(cfg),
                )
            )
        return sinks

    def _vector_step(self, rollout: Rollout, obs: np.ndarray, logger: Logger) -> np.ndarray:
        cfg = self.cfg
        s = self.suite
        if self.step < cfg.warmup:
            actions = self.action_rng.uniform(-1.0, 1.0, (s.num_tasks, s.act_dim)).astype(
                np.float32
            )
        else:
            actions = self.agent.act(obs)
        start = time.perf_counter()
        result = rollout.step(actions)
        self.timers["env"] += time.perf_counter() - start
        self.replay.add(
            obs, actions, result.reward, result.next_obs, result.terminated, result.truncated
        )
        for ep in result.episodes:
            self.episodes.returns[ep.task].append(ep.episode_return)
            self.episodes.successes[ep.task].append(float(ep.success))
        # after a resume from a checkpoint without replay, refill a little before updating
        refilled = len(self.replay) >= max(1, min(cfg.warmup, cfg.agent.batch_size))
        if self.step >= cfg.warmup and refilled:
            start = time.perf_counter()
            log_now = (self.step + 1) % cfg.logger.every == 0
            for k in range(cfg.utd):
                batch = self.replay.sample(cfg.agent.batch_size)
                metrics = self.agent.update(batch, diagnostics=log_now and k == cfg.utd - 1)
                diagnostics = metrics.pop("diagnostics", None)
                logger.record_many(metrics, prefix="train/")
                if diagnostics:
                    for net, d in diagnostics.items():
                        logger.record(f"surgery/{net}/conflict_fraction", d.conflict_fraction)
                        logger.record(f"surgery/{net}/direction_norm", d.direction_norm)
                        logger.record(f"surgery/{net}/grad_norm", d.task_norms)
            self.timers["update"] += time.perf_counter() - start
        return result.obs

    def _periodic(
        self,
        rollout: Rollout,
        obs: np.ndarray,
        logger: Logger,
        bar: tqdm,
        started: float,
        steps_at_start: int,
    ) -> None:
        cfg = self.cfg
        step = self.step
        extra: dict[str, float] = {}
        if cfg.eval.every and step % cfg.eval.every == 0:
            extra.update(self.evaluate().metrics())
        if step % cfg.logger.every == 0 or extra:
            elapsed = time.perf_counter() - started
            sps = (step - steps_at_start) / max(elapsed, 1e-9)
            extra.update(self.episodes.metrics())
            extra["perf/env_steps_per_s"] = sps * self.suite.num_tasks
            extra.update({f"perf/time_{k}_s": v for k, v in self.timers.items()})
            self.episodes.reset(self.suite.num_tasks)
            logger.dump(step, extra)
            postfix = {"sps": f"{sps:.0f}"}
            if self.last_eval is not None:
                postfix["success"] = f"{self.last_eval.success_mean:.2f}"
            bar.set_postfix(postfix, refresh=False)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
            self.save(obs, rollout)

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Final per-task and mean eval success and return, with where the outputs are."""
        ev = self.last_eval
        assert ev is not None
        return {
            "experiment": self.cfg.name,
            "suite": self.suite.name,
            "aggregator": self.cfg.surgery.name,
            "seed": self.cfg.seed,
            "steps": self.step,
            "eval_episodes": ev.episodes,
            "success_mean": ev.success_mean,
            "return_mean": ev.return_mean,
            "success": dict(zip(ev.task_names, ev.success.tolist(), strict=True)),
            "return": dict(zip(ev.task_names, ev.returns.tolist(), strict=True)),
            "wall_s": wall_s,
            "run_dir": str(self.run_dir),
        }


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples where a checkpoint round-trip may give lists."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value
