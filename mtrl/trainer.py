"""The training loop: rollout -> replay -> MT-SAC updates through surgery -> eval -> log -> checkpoint.

The trainer wires the parts explicitly; the parts do not import the trainer or each other
sideways. A run is a function of its resolved config and writes only under its run directory.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mtrl.agents import MTSAC
from mtrl.agents.graphed import make_updater
from mtrl.checkpoint import load_checkpoint, save_checkpoint
from mtrl.config import TrainConfig
from mtrl.envs import TaskSuite, load_suite
from mtrl.errors import MtrlError
from mtrl.evaluation import EvalResult, Policy, eval_seed, run_evaluator
from mtrl.logging import Logger, Sink
from mtrl.logging.episodes import EpisodeTracker
from mtrl.logging.figures import cosine_heatmap
from mtrl.replay import MultiTaskReplay
from mtrl.rollout import NonFiniteEnvError, Rollout
from mtrl.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SUMMARY,
    SYSTEM,
    TENSORBOARD,
    RunInterrupted,
    StopSignals,
    check_sinks,
    create_run_dir,
    due_at,
    logged_eval,
    make_device,
    open_sinks,
    progress_postfix,
    read_run_config,
    read_summary,
    row_extras,
    run_name,
    run_summary,
    write_summary,
    write_system,
)
from mtrl.surgery import NonFiniteGradientError

__all__ = [  # the run-directory names stay importable from here
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "SUMMARY",
    "SYSTEM",
    "TENSORBOARD",
    "EpisodeTracker",
    "Trainer",
    "load_policy",
    "make_device",
    "read_run_config",
    "run_name",
]


class Trainer:
    """One training run of MT-SAC with gradient surgery on a task suite.

    :param cfg: the resolved run config.
    :param run_dir: where outputs go; a new ``<out>/<run name>`` when None (``run_dir`` is then
        final once ``run`` made it: another run may have taken the name first).
    :param resume: continue from ``run_dir/checkpoint.pt``.
    :param sinks: sinks to log to besides those the config asks for (e.g. a tuner's reporter).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path | None = None,
        resume: bool = False,
        sinks: Sequence[Sink] = (),
    ):
        if cfg.agent.algorithm != "mtsac":
            raise MtrlError(
                f"Trainer runs agent.algorithm=mtsac, not {cfg.agent.algorithm!r}: "
                "build runs with mtrl.runners.make_runner(cfg)"
            )
        self.cfg = cfg
        self.device = make_device(cfg.device)
        check_sinks(cfg)  # fail before the (possibly slow) suite is built
        self.extra_sinks = list(sinks)
        self._named = run_dir is None  # run() claims a unique directory near this name
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
            defer_checks=None if cfg.finite_checks == "auto" else cfg.finite_checks == "deferred",
        )
        self.update = make_updater(self.agent, cfg.compile, cfg.compile_solvers, cfg.fused_solvers)
        """One gradient update: ``agent.update`` or its CUDA graph replay (``compile``)."""
        self.checked_step = 0
        """The last step at which the updates were known to be finite (deferred checks)."""
        self._in_update = False
        """True while this step's updates run (a divergence raised there is at step + 1)."""
        self.replay = MultiTaskReplay(
            s.num_tasks, cfg.buffer_size, s.obs_dim, s.act_dim, self.device, seed=cfg.seed
        )
        self.step = 0
        self.eval_count = 0
        self.last_eval: EvalResult | None = None
        self.last_eval_step: int | None = None
        self.evaluator = run_evaluator(s, cfg)
        """The run's evaluations (their envs kept between them with ``eval.keep_envs``)."""
        self.logger: Logger | None = None
        """The run's logger while ``run`` is under way (its running means go into checkpoints)."""
        self.saved_step: int | None = None
        """The step of the checkpoint in the run directory (None before the first)."""
        self.episodes = EpisodeTracker()
        self.episodes.reset(s.num_tasks)
        self.timers = {"env": 0.0, "update": 0.0, "surgery": 0.0, "eval": 0.0, "wall": 0.0}
        """Cumulative seconds over the whole run (kept across resumes); surgery is within update,
        wall counts everything from the start of ``run`` (of every resumed part)."""
        self._wall_mark = time.perf_counter()
        self.last_cosine: dict[str, Tensor] = {}
        """The latest cosine matrix of task gradients per network, drawn at each evaluation."""
        # throughput is measured from where this process started (or resumed) the run
        self._started, self._steps_at_start, self._updates = time.perf_counter(), 0, 0

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
                "torch_cuda": (
                    torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
                ),
                "numpy": self.action_rng.bit_generator.state,
                "python": random.getstate(),
            },
            "timers": dict(self.timers),
            # training episodes and recorded means since the last log row: a checkpoint between
            # rows (SIGTERM) keeps them
            "episodes": {"returns": self.episodes.returns, "successes": self.episodes.successes},
            "logger": self.logger.state_dict() if self.logger is not None else None,
        }

    def check_finite(self) -> None:
        """Raise for a non-finite update since the last check (deferred checks; else a no-op)."""
        try:
            self.agent.raise_if_non_finite()
        except NonFiniteGradientError as exc:
            exc.deferred = True  # found now, happened since the last check
            raise
        self.checked_step = self.step

    def save(self, obs: np.ndarray, rollout: Rollout) -> Path:
        """Write the checkpoint atomically into the run directory, never after a non-finite
        update."""
        self.check_finite()
        self._tick()
        path = save_checkpoint(self.checkpoint_state(obs, rollout), self.run_dir / CHECKPOINT)
        self.saved_step = self.step
        return path

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
        self.saved_step = self.step
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if self.device.type == "cuda" and state["rng"].get("torch_cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["torch_cuda"].cpu(), self.device)
        self.action_rng.bit_generator.state = state["rng"]["numpy"]
        random.setstate(_as_tuple(state["rng"]["python"]))
        self.timers.update(state["timers"])
        if "episodes" in state:  # not in checkpoints of older versions
            self.episodes.returns = [list(r) for r in state["episodes"]["returns"]]
            self.episodes.successes = [list(r) for r in state["episodes"]["successes"]]
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
        self.run_dir = create_run_dir(self.cfg, self.run_dir, unique=self._named)
        print(f"run directory: {self.run_dir}")

    def _resume_point(self) -> dict[str, Any] | None:
        """After ``restore``: the summary of a run already at ``cfg.steps`` (nothing to do), or
        None when training (or the final evaluation) is left; ``steps`` below the checkpoint's
        step is an error. Brings back the latest evaluation logged (the progress bar shows it).
        """
        steps = self.cfg.steps
        if self.step > steps:
            raise MtrlError(
                f"steps={steps} is below the step of the checkpoint in {self.run_dir} "
                f"({self.step}); resume with steps={self.step} or more"
            )
        names = self.suite.task_names
        found = logged_eval(self.run_dir, self.step, names, self.cfg.eval.episodes)
        if found is not None:
            self.last_eval_step, self.last_eval = found
        if self.step < steps:
            print(f"resuming from step {self.step} in {self.run_dir}")
            return None
        summary = read_summary(self.run_dir)
        if summary is None and self.last_eval_step == self.step:
            # stopped after its final checkpoint but before its summary: finish that
            summary = self.summary(self.timers["wall"])
            write_summary(self.run_dir, summary)
        if summary is not None:
            print(
                f"run {self.run_dir} is complete at step {self.step}: nothing to do "
                "(resume with a larger steps= to train on)"
            )
        return summary

    def evaluate(self) -> EvalResult:
        """Deterministic evaluation of the current policy on the run's evaluation envs."""
        start = time.perf_counter()

        def policy(obs: np.ndarray) -> np.ndarray:
            return self.agent.act(obs, deterministic=True)

        result = self.evaluator(policy, eval_seed(self.cfg.seed, self.eval_count))
        self.eval_count += 1
        self.timers["eval"] += time.perf_counter() - start
        self.last_eval, self.last_eval_step = result, self.step
        return result

    def run(self) -> dict[str, Any]:
        """Train to ``cfg.steps`` env steps per task; returns the summary written to summary.json.

        SIGTERM or Ctrl-C stops at the end of the current step with a checkpoint
        (:class:`RunInterrupted`); resuming a finished run returns its summary.
        """
        cfg = self.cfg
        self._prepare_run_dir()
        saved = None
        if self.resume:
            saved = self.restore()
            done = self._resume_point()
            if done is not None:
                return done
        logger = Logger(self._sinks(), self.suite.task_names)
        self.logger = logger
        if saved is not None and saved.get("logger") is not None:
            logger.load_state_dict(saved["logger"])
        write_system(self.run_dir, self.device, logger)
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
        self._started, self._steps_at_start, self._updates = started, self.step, 0
        self._wall_mark = started
        try:
            with (
                StopSignals() as stop,
                Rollout(
                    self.suite,
                    num_workers=cfg.num_workers,
                    seed=cfg.seed,
                    timeout=cfg.step_timeout,
                ) as rollout,
                self.evaluator,
            ):
                obs = rollout.reset()
                if saved is not None:
                    obs = self._resume_envs(rollout, saved, obs)
                while self.step < cfg.steps:
                    obs = self._vector_step(rollout, obs, logger)
                    self.step += 1
                    bar.update(1)
                    self._periodic(rollout, obs, logger, bar)
                    if stop.received and self.step < cfg.steps:
                        self.save(obs, rollout)
                        raise RunInterrupted(
                            f"stopped by {stop.name} at step {self.step} with a checkpoint; "
                            f"continue with: mtrl train resume={self.run_dir}",
                            stop.received,
                        )
                if self.last_eval_step != self.step:  # resumed at the last step, not evaluated
                    self.evaluate()
                    self._log(logger, evaluated=True)
                self.save(obs, rollout)
            self._tick()
            summary = self.summary(self.timers["wall"])
            write_summary(self.run_dir, summary)
        except KeyboardInterrupt:
            if self.saved_step is not None:
                print(
                    f"\ninterrupted at step {self.step}; continue from the last checkpoint "
                    f"(step {self.saved_step}) with: mtrl train resume={self.run_dir}",
                    file=sys.stderr,
                )
            raise
        except NonFiniteGradientError as exc:
            last = self.step + 1 if self._in_update else self.step  # the last update that ran
            when = f"at step {last}"
            if getattr(exc, "deferred", False) and self.checked_step + 1 < last:
                when = f"between step {self.checked_step + 1} and step {last}"
            raise MtrlError(
                f"training diverged {when}: {exc}; {self._checkpoint_note()} "
                "(try a lower learning rate or agent.grad_clip)"
            ) from exc
        finally:
            bar.close()
            logger.close()
        return summary

    def _checkpoint_note(self) -> str:
        """Where training can restart from, without claiming a checkpoint that is not there."""
        if self.saved_step is None:
            return "no checkpoint was written before"
        return f"the last checkpoint in {self.run_dir} (step {self.saved_step}) is intact"

    def _sinks(self) -> list[Sink]:
        """The metrics file and console lines always; TensorBoard and W&B as the config asks."""
        kept = self.step if self.resume else None
        return open_sinks(self.cfg, self.run_dir, self.suite.name, kept, self.extra_sinks)

    def _vector_step(self, rollout: Rollout, obs: np.ndarray, logger: Logger) -> np.ndarray:
        cfg = self.cfg
        s = self.suite
        if self.step < cfg.warmup:
            actions = self.action_rng.uniform(-1.0, 1.0, (s.num_tasks, s.act_dim)).astype(
                np.float32
            )
        else:
            actions = self.agent.act(obs)
            if not np.isfinite(actions).all():  # a non-finite update, before the envs see it
                self.check_finite()
                raise MtrlError(f"the policy returned non-finite actions at step {self.step + 1}")
        start = time.perf_counter()
        rollout.step_async(actions)
        self.timers["env"] += time.perf_counter() - start
        if cfg.overlap:  # the workers step the envs meanwhile
            self._updates_now(logger)
        start = time.perf_counter()
        try:
            result = rollout.step_wait()
        except NonFiniteEnvError as exc:  # count steps as the run does, not as this rollout
            raise exc.at(self.step + 1) from None
        self.timers["env"] += time.perf_counter() - start
        self.replay.add(
            obs, actions, result.reward, result.next_obs, result.terminated, result.truncated
        )
        for ep in result.episodes:
            self.episodes.add(ep.task, ep.episode_return, ep.success)
        if not cfg.overlap:
            self._updates_now(logger)
        return result.obs

    def _updates_now(self, logger: Logger) -> None:
        """The ``utd`` gradient updates of this vector step, once the warm-up is over."""
        cfg = self.cfg
        # after a resume from a checkpoint without replay, refill a little before updating
        refilled = len(self.replay) >= max(1, min(cfg.warmup, cfg.agent.batch_size))
        if self.step < cfg.warmup or not refilled:
            return
        start = time.perf_counter()
        log_now = (self.step + 1) % cfg.logger.every == 0
        self._in_update = True
        for k in range(cfg.utd):
            batch = self.replay.sample(cfg.agent.batch_size)
            metrics = self.update(batch, diagnostics=log_now and k == cfg.utd - 1)
            diagnostics = metrics.pop("diagnostics", None)
            logger.record_many(metrics, prefix="train/")
            if diagnostics:
                for net, d in diagnostics.items():
                    logger.record(f"surgery/{net}/conflict_fraction", d.conflict_fraction)
                    logger.record(f"surgery/{net}/direction_norm", d.direction_norm)
                    logger.record(f"surgery/{net}/grad_norm", d.task_norms)
                    self.last_cosine[net] = d.cosine
        self._in_update = False
        self.timers["update"] += time.perf_counter() - start
        self._updates += cfg.utd

    def _periodic(self, rollout: Rollout, obs: np.ndarray, logger: Logger, bar: tqdm) -> None:
        """Evaluate, log and checkpoint when their intervals come up; the last step evaluates."""
        due = due_at(self.cfg, self.step)
        if due.evaluate or due.log or due.checkpoint:
            self.check_finite()
        if due.evaluate:
            self.evaluate()
        if due.log:
            row = self._log(logger, due.evaluate)
            postfix = progress_postfix(row, self.suite.num_tasks, self.last_eval)
            bar.set_postfix(postfix, refresh=False)
        if due.checkpoint:
            self.save(obs, rollout)

    def _log(self, logger: Logger, evaluated: bool) -> dict[str, float]:
        """Dump one row: the recorded means, episode statistics, timings, and the evaluation
        with its cosine heatmaps when ``evaluated``."""
        extra = row_extras(self.last_eval, evaluated, self.episodes, self.suite.num_tasks)
        extra.update(self._perf())
        row = logger.dump(self.step, extra)
        if evaluated and self.last_cosine and logger.accepts_images:
            names = self.suite.task_names
            logger.write_images(
                self.step,
                {
                    f"surgery/{net}/cosine": cosine_heatmap(
                        cosine.cpu().numpy(), names, f"{net}: cosine of task gradients"
                    )
                    for net, cosine in self.last_cosine.items()
                },
            )
        return row

    def _tick(self) -> None:
        """Bring the cumulative surgery and wall-clock timers up to now."""
        self.timers["surgery"] += self.agent.surgery_timer.take()
        now = time.perf_counter()
        self.timers["wall"] += now - self._wall_mark
        self._wall_mark = now

    def _perf(self) -> dict[str, float]:
        """Throughput since this process started the run, and cumulative time per part."""
        self._tick()
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        steps = self.step - self._steps_at_start
        return {
            "perf/env_steps_per_s": steps * self.suite.num_tasks / elapsed,
            "perf/updates_per_s": self._updates / elapsed,
            **{f"perf/time_{k}_s": v for k, v in self.timers.items()},
        }

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Final per-task and mean eval success and return, with where the outputs are."""
        assert self.last_eval is not None
        return run_summary(
            self.cfg, self.suite.name, self.step, self.last_eval, wall_s, self.run_dir
        )


def load_policy(path: str | Path, cfg: TrainConfig, device: torch.device) -> tuple[Policy, int]:
    """The deterministic policy of an MT-SAC run (a run directory or a checkpoint file) and the
    step it was saved at, for ``mtrl eval``."""
    path = Path(path)
    ckpt = path if path.is_file() else path / CHECKPOINT
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
    agent = MTSAC(
        suite.obs_dim,
        suite.act_dim,
        suite.num_tasks,
        cfg.agent,
        cfg.surgery,
        device,
        suite.task_names,
    )
    state = load_checkpoint(ckpt, map_location=device)
    agent.load_state_dict(state["agent"])
    step = int(state["step"])
    del state  # the replay buffer in it may be large
    return (lambda obs: agent.act(obs, deterministic=True)), step


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples where a checkpoint round-trip may give lists."""
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value
