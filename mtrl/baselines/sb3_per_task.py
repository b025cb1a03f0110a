"""One Stable-Baselines3 SAC per task: the single-task reference of MTRL papers, on mtrl suites.

Selected by ``agent.algorithm=sb3-sac-per-task`` (preset ``agents/sb3-sac-per-task.yaml``, or any
agent preset plus ``agent.algorithm=sb3-sac-per-task``). Task i gets its own SB3 SAC on its own
env, ``suite.make_env(i)`` (the constant one-hot stays in the observation), with the run's
hyperparameters:

================================  ==========================================================
mtrl                              SB3 SAC
================================  ==========================================================
agent.hidden, agent.critics       ``policy_kwargs={"net_arch": hidden, "n_critics": critics}``
agent.critic_lr/actor_lr/alpha_lr one learning rate per optimizer (SB3's ``learning_rate`` is
                                  ``critic_lr``; the actor's and temperature's are set apart)
agent.gamma, tau, batch_size      ``gamma``, ``tau``, ``batch_size`` (per task, as in MT-SAC)
agent.init_alpha, target_entropy  ``ent_coef="auto_<init_alpha>"``, ``target_entropy`` (None:
                                  ``"auto"``, i.e. -|A|)
buffer_size, warmup, utd          ``buffer_size`` (per task), ``learning_starts``,
                                  ``gradient_steps`` with ``train_freq=1``
seed, device, torch_threads       ``seed=task_seed(seed, i)``, ``device``, torch threads
================================  ==========================================================

The tasks are interleaved: each SAC learns in turn up to the next step at which something is due
(a log row, an evaluation, a checkpoint), so every row is written with all tasks at the same
step, on the same schedule as MT-SAC. Evaluation is mtrl's own ``evaluate()`` with row i of the
observations acted on by SAC i (deterministic), so the protocol is identical to MT-SAC's.
Each model is saved atomically as ``models/<i>-<task>.zip`` (``SAC.load`` reads it) at every
checkpoint step and at the end; runs cannot be resumed.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.logger import Logger as SB3Logger
from stable_baselines3.common.utils import update_learning_rate
from tqdm import tqdm

from mtrl.checkpoint import atomic_write
from mtrl.config import TrainConfig
from mtrl.envs import TaskSuite, load_suite
from mtrl.envs.wrappers import task_ids
from mtrl.errors import MtrlError, one_line
from mtrl.evaluation import EvalResult, Policy, eval_seed, run_evaluator
from mtrl.logging import Logger, Sink
from mtrl.logging.episodes import EpisodeTracker
from mtrl.rollout import task_seed
from mtrl.rollout.alarm import Expired, time_limit
from mtrl.rundir import (
    RunInterrupted,
    StopSignals,
    check_sinks,
    create_run_dir,
    due_at,
    make_device,
    method_of,
    next_due,
    open_sinks,
    progress_postfix,
    row_extras,
    run_name,
    run_summary,
    write_summary,
    write_system,
)

MODELS = "models"
"""Folder of the run directory holding one SB3 zip per task."""

SB3_METRICS = {
    "train/critic_loss": "critic_loss",
    "train/actor_loss": "actor_loss",
    "train/ent_coef": "alpha",
    "train/ent_coef_loss": "alpha_loss",
}
"""SB3's training keys -> mtrl's ``train/<name>/<task>`` names."""


class PerTaskSAC(SAC):
    """SB3's SAC with a learning rate per optimizer (SB3 has one for all three).

    :param lrs: learning rates of the actor, the critic and the temperature; None keeps SB3's
        ``learning_rate`` schedule for all.
    """

    def __init__(self, *args: Any, lrs: tuple[float, float, float] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lrs = lrs

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)
        if self.lrs is None:
            return
        for optimizer, lr in zip(
            (self.actor.optimizer, self.critic.optimizer, self.ent_coef_optimizer),
            self.lrs,
            strict=True,
        ):
            if optimizer is not None:
                update_learning_rate(optimizer, lr)


class LossRecorder(SB3Logger):
    """An SB3 logger that writes nothing and keeps the means of SAC's losses for mtrl's rows."""

    def __init__(self) -> None:
        super().__init__(folder=None, output_formats=[])
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.updates = 0
        """Gradient updates so far (SB3's ``train/n_updates``)."""

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        super().record(key, value, exclude)
        if key == "train/n_updates":
            self.updates = int(value)
        name = SB3_METRICS.get(key)
        if name is not None:  # SB3 records each loss's mean over one train() call's updates
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
            self.counts[name] = self.counts.get(name, 0) + 1

    def take(self) -> dict[str, float]:
        """Means since the last ``take``; clears them."""
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return means


class TaskEnv(gym.Wrapper):
    """Task i's suite env as its SAC sees it: counts training episodes, times the env, and turns
    an env's exception or hang (longer than ``timeout`` seconds) into a one-line error naming
    the task."""

    def __init__(
        self,
        env: gym.Env,
        task: int,
        name: str,
        episodes: EpisodeTracker,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(env)
        self.task, self.name, self.episodes = task, name, episodes
        self.timeout = timeout
        self.seconds = 0.0
        self._return, self._success = 0.0, False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._return, self._success = 0.0, False
        return self._guard("reset", lambda: self.env.reset(**kwargs))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._guard(
            "step", lambda: self.env.step(action)
        )
        self._return += float(reward)
        self._success = self._success or bool(info.get("success", False))
        if terminated or truncated:
            self.episodes.add(self.task, self._return, self._success)
        return obs, reward, terminated, truncated, info

    def _guard(self, phase: str, call: Any) -> Any:
        start = time.perf_counter()
        try:
            with time_limit(self.timeout):
                return call()
        except Expired:
            raise MtrlError(
                f"env of task {self.name!r} (task {self.task}) did not return from {phase} "
                f"within {self.timeout:g} s (step_timeout)"
            ) from None
        except Exception as exc:
            raise MtrlError(
                f"env of task {self.name!r} (task {self.task}) raised during {phase}: "
                f"{one_line(exc)}"
            ) from exc
        finally:
            self.seconds += time.perf_counter() - start


def model_file(task: int, name: str) -> str:
    """``<i>-<task name>.zip`` with characters unsafe in file names replaced by ``_``."""
    return f"{task:02d}-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.zip"


def dispatch_policy(models: Sequence[SAC]) -> Policy:
    """Observations [N, obs] -> actions [N, act]: the rows of task i (by their one-hot id, the
    last T values) by model i, deterministically; rows in any order and number per task."""
    num_tasks = len(models)

    def policy(obs: np.ndarray) -> np.ndarray:
        tasks = task_ids(obs, num_tasks)
        actions = np.empty((len(obs), *models[0].action_space.shape), dtype=np.float32)
        for i in np.unique(tasks):
            rows = tasks == i
            actions[rows] = models[i].predict(obs[rows], deterministic=True)[0]
        return actions

    return policy


def is_finite(model: SAC) -> bool:
    """True if every parameter of the SAC (and its temperature) is finite."""
    tensors = [*model.policy.parameters()]
    if getattr(model, "log_ent_coef", None) is not None:
        tensors.append(model.log_ent_coef)
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class SB3PerTaskRunner:
    """One training run of one SB3 SAC per task of a suite, written like an MT-SAC run.

    :param cfg: the resolved run config (``agent.algorithm=sb3-sac-per-task``).
    :param run_dir: where outputs go; a new ``<out>/<run name>`` when None.
    :param resume: not supported (a one-line error).
    :param sinks: sinks to log to besides those the config asks for.
    """

    outputs: ClassVar[str] = "config.yaml, metrics.jsonl, models/, summary.json"

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path | None = None,
        resume: bool = False,
        sinks: Sequence[Sink] = (),
    ) -> None:
        if resume:
            raise MtrlError(f"runs of agent.algorithm={cfg.agent.algorithm} cannot be resumed")
        self.cfg = cfg
        self.device = make_device(cfg.device)
        check_sinks(cfg)
        self.extra_sinks = list(sinks)
        self._named = run_dir is None  # run() claims a unique directory near this name
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg.out) / run_name(cfg)
        self.suite: TaskSuite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        if cfg.num_workers:
            print(
                f"note: agent.algorithm={cfg.agent.algorithm} steps each task's env in this "
                f"process; num_workers={cfg.num_workers} is not used",
                file=sys.stderr,
            )
        self.episodes = EpisodeTracker()
        self.episodes.reset(self.suite.num_tasks)
        self.envs: list[TaskEnv] = []
        self.recorders: list[LossRecorder] = []
        self.models = [self._make_model(i) for i in range(self.suite.num_tasks)]
        self.step = 0
        self.eval_count = 0
        self.last_eval: EvalResult | None = None
        self.evaluator = run_evaluator(self.suite, cfg)
        """The run's evaluations, as MT-SAC's trainer makes them."""
        self.timers = {"env": 0.0, "update": 0.0, "eval": 0.0, "wall": 0.0}
        """Cumulative seconds: stepping the training envs, the rest of SB3's ``learn`` (acting,
        replay, gradient updates), evaluating, and all of ``run``."""

    def _make_model(self, task: int) -> PerTaskSAC:
        cfg, agent = self.cfg, self.cfg.agent
        name = self.suite.task_names[task]
        env = TaskEnv(self.suite.make_env(task), task, name, self.episodes, cfg.step_timeout)
        target_entropy: Any = "auto" if agent.target_entropy is None else agent.target_entropy
        model = PerTaskSAC(
            "MlpPolicy",
            env,
            learning_rate=agent.critic_lr,
            lrs=(agent.actor_lr, agent.critic_lr, agent.alpha_lr),
            buffer_size=cfg.buffer_size,
            learning_starts=cfg.warmup,
            batch_size=agent.batch_size,
            tau=agent.tau,
            gamma=agent.gamma,
            train_freq=1,
            gradient_steps=cfg.utd,
            ent_coef=f"auto_{agent.init_alpha}",
            target_entropy=target_entropy,
            policy_kwargs={"net_arch": list(agent.hidden), "n_critics": agent.critics},
            seed=task_seed(cfg.seed, task),
            device=self.device,
            verbose=0,
        )
        recorder = LossRecorder()
        model.set_logger(recorder)
        self.envs.append(env)
        self.recorders.append(recorder)
        return model

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train every task to ``cfg.steps`` env steps; returns the summary (summary.json)."""
        cfg = self.cfg
        self.run_dir = create_run_dir(cfg, self.run_dir, unique=self._named)
        print(f"run directory: {self.run_dir}")
        logger = Logger(
            open_sinks(cfg, self.run_dir, self.suite.name, None, self.extra_sinks),
            self.suite.task_names,
        )
        write_system(self.run_dir, self.device, logger)
        bar = tqdm(
            total=cfg.steps,
            unit="step",
            disable=not cfg.logger.progress,
            desc=f"{self.suite.name}/{method_of(cfg)}",
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )
        self._started = time.perf_counter()
        try:
            with StopSignals() as signals:
                while self.step < cfg.steps:
                    stop = next_due(cfg, self.step)
                    self._learn(stop - self.step)
                    bar.update(stop - self.step)
                    self.step = stop
                    self._periodic(logger, bar)
                    if signals.received and self.step < cfg.steps:
                        models = self.save()
                        raise RunInterrupted(
                            f"stopped by {signals.name} at step {self.step}; the models are "
                            f"saved in {models} (runs of agent.algorithm={cfg.agent.algorithm} "
                            "cannot be resumed)",
                            signals.received,
                        )
            self.save()
        finally:
            self.evaluator.close()
            bar.close()
            logger.close()
            for model in self.models:
                if model.env is not None:
                    model.env.close()
        self.timers["wall"] = time.perf_counter() - self._started
        assert self.last_eval is not None
        summary = run_summary(
            cfg, self.suite.name, self.step, self.last_eval, self.timers["wall"], self.run_dir
        )
        write_summary(self.run_dir, summary)
        return summary

    def _learn(self, steps: int) -> None:
        """``steps`` more env steps (and their updates) for every task's SAC, in turn."""
        start = time.perf_counter()
        env_before = sum(env.seconds for env in self.envs)
        for task, model in enumerate(self.models):
            try:
                model.learn(steps, reset_num_timesteps=False)
            except ValueError as exc:  # torch's distributions reject NaN parameters
                if is_finite(model):
                    raise
                self._diverged(task, exc)
            if not is_finite(model):
                self._diverged(task, None)
        env_seconds = sum(env.seconds for env in self.envs) - env_before
        self.timers["env"] += env_seconds
        self.timers["update"] += time.perf_counter() - start - env_seconds

    def _diverged(self, task: int, exc: Exception | None) -> None:
        saved = self.run_dir / MODELS
        kept = f"; the models saved last in {saved} are intact" if saved.is_dir() else ""
        raise MtrlError(
            f"training diverged by step {self.models[task].num_timesteps}: "
            f"non-finite (NaN/inf) parameters in the SAC of task "
            f"{self.suite.task_names[task]!r}{kept} (try a lower learning rate)"
        ) from exc

    def _periodic(self, logger: Logger, bar: tqdm) -> None:
        """Evaluate, log and save as MT-SAC's trainer does at this step."""
        due = due_at(self.cfg, self.step)
        if due.evaluate:
            self.evaluate()
        if due.log:
            row = self._log(logger, due.evaluate)
            postfix = progress_postfix(row, self.suite.num_tasks, self.last_eval)
            bar.set_postfix(postfix, refresh=False)
        if due.checkpoint:
            self.save()

    def evaluate(self) -> EvalResult:
        """Deterministic evaluation on the run's evaluation envs: mtrl's protocol, row i acted on
        by SAC i."""
        start = time.perf_counter()
        seed = eval_seed(self.cfg.seed, self.eval_count)
        result = self.evaluator(dispatch_policy(self.models), seed)
        self.eval_count += 1
        self.timers["eval"] += time.perf_counter() - start
        self.last_eval = result
        return result

    def _log(self, logger: Logger, evaluated: bool) -> dict[str, float]:
        """One row: SAC's loss means per task, training episodes, timings, the evaluation."""
        means = [recorder.take() for recorder in self.recorders]
        for name in SB3_METRICS.values():
            if all(name in m for m in means):
                logger.record(f"train/{name}", torch.tensor([m[name] for m in means]))
        extra = row_extras(self.last_eval, evaluated, self.episodes, self.suite.num_tasks)
        extra.update(self._perf())
        return logger.dump(self.step, extra)

    def _perf(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self.timers["wall"] = elapsed
        return {
            "perf/env_steps_per_s": self.step * self.suite.num_tasks / elapsed,
            "perf/updates_per_s": sum(r.updates for r in self.recorders) / elapsed,
            **{f"perf/time_{k}_s": v for k, v in self.timers.items()},
        }

    def save(self) -> Path:
        """Write every task's model atomically to ``<run_dir>/models/<i>-<task>.zip``."""
        folder = self.run_dir / MODELS
        for i, (model, name) in enumerate(zip(self.models, self.suite.task_names, strict=True)):
            atomic_write(folder / model_file(i, name), model.save)
        return folder


def load_policy(path: str | Path, cfg: TrainConfig, device: torch.device) -> tuple[Policy, int]:
    """The deterministic policy of a finished run (its directory) and its step, for ``mtrl eval``."""
    folder = Path(path) / MODELS
    if not folder.is_dir():
        raise MtrlError(f"{path} holds no {MODELS}/ folder (give the run directory)")
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
    models = []
    for i, name in enumerate(suite.task_names):
        file = folder / model_file(i, name)
        if not file.is_file():
            raise MtrlError(f"model of task {name!r} not found: {file}")
        models.append(PerTaskSAC.load(file, device=device))
    return dispatch_policy(models), min(int(m.num_timesteps) for m in models)
