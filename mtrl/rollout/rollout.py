"""``Rollout``: the T task envs of a suite, sharded over worker processes.

Each of N workers owns a contiguous shard of the tasks (one env per task) and steps it in
lockstep with the others. Actions and results travel through :class:`SharedArrays`; per
step the parent only writes one byte to each worker's pipe and waits for one byte back
(``multiprocessing.connection.wait`` on the pipes and the process sentinels, with a
timeout, so a dead or stuck worker is an error, never a hang). ``num_workers=0`` runs the
same :class:`Shard` code in-process, under the same timeout where it can (``alarm``).
Every step checks that the envs returned finite observations and rewards.

Workers ignore SIGINT and SIGTERM from birth: a Ctrl-C in a terminal or a scheduler's SIGTERM
to the whole process group reaches them too, and the parent, which owns shutdown, may still
need them to finish a step and save their envs' state. They exit when told to or when the
parent goes away (their pipe closes).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import pickle
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from mtrl.errors import MtrlError
from mtrl.rollout import worker as protocol
from mtrl.rollout.alarm import Expired, time_limit
from mtrl.rollout.buffers import BUSY_PHASES, SharedArrays
from mtrl.rollout.shard import EnvFault, Shard
from mtrl.rollout.sharding import estimated_costs, shard_bounds

if TYPE_CHECKING:
    from mtrl.envs import TaskSuite


class RolloutError(MtrlError):
    """An env raised in a rollout, or a worker process died or stopped answering."""


class NonFiniteEnvError(RolloutError):
    """An env returned a NaN or infinite observation or reward (a bug in the env, not in
    training). ``step`` counts the rollout's steps from 1 (0: its reset); ``at`` re-words it.
    """

    def __init__(
        self, task: int, task_name: str, field: str, value: str, step: int, where: str = ""
    ) -> None:
        self.task, self.task_name, self.field, self.value = task, task_name, field, value
        self.step = step
        when = f"at {where}step {step}" if step else f"at {where}reset"
        super().__init__(
            f"the env of task {task_name!r} (task {task}) returned {value} in its {field} "
            f"{when} (a bug in the env or its wrapper, not a training divergence)"
        )

    def at(self, step: int, where: str = "") -> NonFiniteEnvError:
        """The same error at ``step`` of something else (e.g. the trainer's env step count)."""
        return NonFiniteEnvError(self.task, self.task_name, self.field, self.value, step, where)


@dataclass(frozen=True)
class EpisodeStats:
    """A finished episode: ``success`` is true if the success flag was set at any step."""

    task: int
    task_name: str
    episode_return: float
    length: int
    success: bool


@dataclass(frozen=True)
class StepResult:
    """The outcome of one vector step; arrays have the task axis first and are copies.

    ``next_obs`` is the true next observation (the final one where an episode ended: what
    the replay buffer stores); ``obs`` is the observation to act on next (the reset
    observation where an episode ended, else equal to ``next_obs``).
    """

    next_obs: np.ndarray  # [T, obs_dim] float32
    obs: np.ndarray  # [T, obs_dim] float32
    reward: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool
    truncated: np.ndarray  # [T] bool
    success: np.ndarray  # [T] bool
    episodes: list[EpisodeStats]


def task_seed(seed: int, task: int) -> int:
    """Seed of task ``task``'s first reset: ``SeedSequence(seed).spawn(T)[task]`` as a uint32.

    It depends only on the run seed and the task index, not on the number of workers.
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(task,))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing process (context-specific class)
    conn: Connection
    tasks: list[str]

    def describe(self) -> str:
        return f"rollout worker {self.index} (tasks {', '.join(self.tasks)})"


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while starting workers, so they inherit SIG_IGN from birth
    (a signal to this process in these few milliseconds is lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in protocol.IGNORED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _shutdown(workers: list[_Worker], shards: list[Shard], grace: float = 2.0) -> None:
    """Stop every worker (ask, then kill: they ignore SIGTERM) and close in-process envs."""
    for shard in shards:
        shard.close()
    shards.clear()
    for w in workers:
        with contextlib.suppress(OSError):
            w.conn.send_bytes(protocol.QUIT)
    deadline = time.monotonic() + grace
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
    alive = [w for w in workers if w.process.is_alive()]
    for w in alive:
        w.process.kill()
    for w in alive:
        w.process.join(1.0)
    for w in workers:
        w.conn.close()
        with contextlib.suppress(ValueError):  # still alive after kill: leave it to the OS
            w.process.close()
    workers.clear()


class Rollout:
    """Step all T task envs of a suite with N worker processes (0: in-process).

    :param suite: the task suite (``env_factory(i)`` builds task i's env in any process).
    :param num_workers: worker processes; 0 steps in this process; capped at T.
    :param seed: run seed; task i's env is first reset with ``task_seed(seed, i)``.
    :param task_costs: relative step cost per task, used to cut contiguous shards of equal
        cost; default: ``estimated_costs(task_names)`` (a Meta-World table, else equal).
        Measured costs of a previous run are :meth:`step_seconds`.
    :param start_method: multiprocessing start method ("spawn" by default; "forkserver"
        also works; "fork" is unsafe once torch is imported).
    :param timeout: seconds the envs may take to answer a step or reset (a worker, or the
        in-process envs when run in the main thread; see ``mtrl.rollout.alarm``); 0: no limit.
    :param start_timeout: seconds a worker may take to build its envs.
    :param end_on_success: end an episode at the first step the env reports
        ``info["success"]``, as ``terminated`` (Meta-World's evaluation protocol: an episode
        succeeds if it succeeds at any step, so the steps after that change nothing).
    :raises RolloutError: if an env raises or hangs, or a worker dies or stops answering;
        the rollout is then closed.
    :raises NonFiniteEnvError: if an env returns a NaN or infinite observation or reward;
        the rollout stays usable.
    """

    def __init__(
        self,
        suite: TaskSuite,
        num_workers: int = 0,
        seed: int = 0,
        *,
        task_costs: Sequence[float] | None = None,
        start_method: str = "spawn",
        timeout: float = 120.0,
        start_timeout: float = 600.0,
        end_on_success: bool = False,
    ) -> None:
        if num_workers < 0:
            raise MtrlError(f"num_workers must be >= 0, got {num_workers}")
        self.num_tasks = int(suite.num_tasks)
        self.task_names = list(suite.task_names)
        self.obs_dim = int(suite.obs_dim)
        self.act_dim = int(suite.act_dim)
        self.num_workers = min(num_workers, self.num_tasks)
        self.seed = seed
        self.timeout = timeout
        self.steps = 0
        """Steps taken so far (the step count of a :class:`NonFiniteEnvError`)."""
        self._arrays = SharedArrays(
            self.num_tasks, self.obs_dim, self.act_dim, shared=self.num_workers > 0
        )
        self._workers: list[_Worker] = []
        self._shards: list[Shard] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._shards)
        self._was_reset = False
        self._stepping = False
        seeds = [task_seed(seed, i) for i in range(self.num_tasks)]
        factories = [suite.env_factory(i) for i in range(self.num_tasks)]
        if self.num_workers == 0:
            self.shards = [(0, self.num_tasks)]
            with self._guard():
                self._shards.append(Shard(factories, 0, seeds, self._arrays, end_on_success))
            return
        costs = estimated_costs(self.task_names) if task_costs is None else list(task_costs)
        if len(costs) != self.num_tasks:
            raise MtrlError(f"task_costs has {len(costs)} values for {self.num_tasks} tasks")
        self.shards = shard_bounds(costs, self.num_workers)
        ctx = multiprocessing.get_context(start_method)
        with self._guard(), _signals_ignored():
            for k, (a, b) in enumerate(self.shards):
                parent_conn, child_conn = ctx.Pipe(duplex=True)
                process = ctx.Process(
                    target=protocol.worker_main,
                    args=(child_conn, factories[a:b], a, seeds[a:b], self._arrays, end_on_success),
                    name=f"mtrl-rollout-{k}",
                    daemon=True,
                )
                try:
                    process.start()
                except BaseException:
                    parent_conn.close()
                    raise
                finally:
                    child_conn.close()  # the worker holds its own copy
                self._workers.append(_Worker(k, process, parent_conn, self.task_names[a:b]))
        with self._guard():
            self._gather("start-up", start_timeout)

    # -- public API -------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env (seeded on the first reset) and return obs ``[T, obs_dim]``.

        :param seed: reseed every env as a new ``Rollout(suite, seed=seed)`` would on its first
            reset (task i with ``task_seed(seed, i)``); None continues the envs' own streams.
        """
        payloads = None
        if seed is not None:
            seeds = [task_seed(seed, i) for i in range(self.num_tasks)]
            for shard in self._shards:
                shard.reseed(seeds[shard.start : shard.stop])
            bounds = self.shards if self._workers else []
            payloads = {
                w.index: protocol.RESET + json.dumps(seeds[a:b]).encode()
                for w, (a, b) in zip(self._workers, bounds, strict=True)
            }
            self.seed = seed
        self._command(protocol.RESET, "reset", payloads)
        self._was_reset = True
        self._check_finite(0)
        return self._arrays.obs.copy()

    def call(self, function: Callable[[Any], Any], tasks: Iterable[int] | None = None) -> list[Any]:
        """``function(env)`` on the envs of ``tasks`` (all by default), wherever they live.

        For rare inspection and configuration, such as Stable-Baselines3's ``get_attr``: with
        workers, ``function`` and its results are pickled (use a module-level function or a
        ``functools.partial`` of one). An exception raised by ``function`` is raised here, and
        the rollout stays usable.

        :returns: the results in the order of ``tasks``.
        """
        if self.closed:
            raise RolloutError("the rollout is closed")
        order = list(range(self.num_tasks)) if tasks is None else [int(i) for i in tasks]
        for i in order:
            if not 0 <= i < self.num_tasks:
                raise IndexError(f"task {i} out of range for {self.num_tasks} tasks")
        results: dict[int, Any] = {}
        for shard in self._shards:
            mine = [i for i in order if shard.start <= i < shard.stop]
            results.update(zip(mine, shard.call(function, mine), strict=True))
        bounds = self.shards if self._workers else []
        wanted = {
            w.index: [i for i in order if a <= i < b]
            for w, (a, b) in zip(self._workers, bounds, strict=True)
        }
        if any(wanted.values()):
            payloads = {
                k: protocol.CALL + pickle.dumps((function, tasks)) for k, tasks in wanted.items()
            }
            replies = self._command(protocol.CALL, "call", payloads)
            for k, tasks in wanted.items():
                ok, value = pickle.loads(replies[k][len(protocol.OK) :])
                if not ok:
                    raise value
                results.update(zip(tasks, value, strict=True))
        return [results[i] for i in order]

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Step every env with its row of ``actions`` ``[T, act_dim]``; autoreset in place.

        :param active: ``[T]`` bool, the envs to step (default: all). The others are left as
            they are and cost nothing: their rows of the result repeat their current
            observation, with reward 0 and no flags set.
        """
        self.step_async(actions, active)
        return self.step_wait()

    def step_async(self, actions: np.ndarray, active: np.ndarray | None = None) -> None:
        """Start a step (``active`` as for ``step``): the workers step their envs while the
        caller does other work (such as a gradient update); ``step_wait`` finishes it. Envs in
        the training process (no workers) step in ``step_wait``."""
        if not self._was_reset and not self.closed:
            raise RolloutError("call reset() before step()")
        if self._stepping:
            raise RolloutError("step_async() called twice without step_wait()")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_tasks, self.act_dim):
            raise ValueError(
                f"actions must have shape {(self.num_tasks, self.act_dim)}, got {actions.shape}"
            )
        if active is not None and np.shape(active) != (self.num_tasks,):
            raise ValueError(f"active must have shape ({self.num_tasks},), got {np.shape(active)}")
        if self.closed:
            raise RolloutError("the rollout is closed")
        self._arrays.actions[...] = actions
        self._arrays.active[...] = True if active is None else active
        with self._guard():
            self._send(protocol.STEP)
        self._stepping = True

    def step_wait(self) -> StepResult:
        """Finish the step started by ``step_async`` and return its result."""
        if not self._stepping:
            raise RolloutError("step_wait() without step_async()")
        self._stepping = False
        if self.closed:
            raise RolloutError("the rollout is closed")
        with self._guard():
            for shard in self._shards:
                self._in_process(shard, protocol.STEP)
            if self._workers:
                self._gather("step", self.timeout)
        self.steps += 1
        self._check_finite(self.steps)
        a = self._arrays
        ended = np.flatnonzero(a.terminated | a.truncated)
        episodes = [
            EpisodeStats(
                task=int(i),
                task_name=self.task_names[i],
                episode_return=float(a.episode_return[i]),
                length=int(a.episode_length[i]),
                success=bool(a.episode_success[i]),
            )
            for i in ended
        ]
        return StepResult(
            next_obs=a.next_obs.copy(),
            obs=a.obs.copy(),
            reward=a.reward.copy(),
            terminated=a.terminated.copy(),
            truncated=a.truncated.copy(),
            success=a.success.copy(),
            episodes=episodes,
        )

    def get_state(self) -> list[dict[str, Any]] | None:
        """Every env's state and running episode statistics in task order, for a checkpoint.

        None when any env of the suite cannot save its state (Meta-World, most gymnasium
        envs): a resumed run then restarts those episodes instead of continuing them.
        """
        states: list[dict[str, Any] | None] = []
        with self._guard():
            for shard in self._shards:
                states.extend(shard.get_state())
        replies = self._command(protocol.GET_STATE, "get_state")
        for w in self._workers:
            states.extend(pickle.loads(replies[w.index][len(protocol.OK) :]))
        if any(state is None for state in states):
            return None
        return states  # type: ignore[return-value]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        """Restore what ``get_state`` returned (after ``reset()``); obs are the caller's."""
        if len(states) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} env states, got {len(states)}")
        with self._guard():
            for shard in self._shards:
                shard.set_state(states[shard.start : shard.stop])
        bounds = self.shards if self._workers else []
        payloads = {
            w.index: protocol.SET_STATE + pickle.dumps(states[a:b])
            for w, (a, b) in zip(self._workers, bounds, strict=True)
        }
        self._command(protocol.SET_STATE, "set_state", payloads)

    def step_seconds(self) -> np.ndarray:
        """Mean seconds per ``env.step`` of each task so far (``[T]``; NaN before a step)."""
        a = self._arrays
        with np.errstate(invalid="ignore", divide="ignore"):
            return a.step_time / a.step_count

    def step_counts(self) -> np.ndarray:
        """``env.step`` calls of each task's env so far (``[T]``; inactive steps not counted)."""
        return self._arrays.step_count.copy()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (explicitly, after an error, or at garbage collection)."""
        return not self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (empty in-process or once closed)."""
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers and close the envs; safe to call more than once."""
        self._finalizer()

    def __enter__(self) -> Rollout:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Close the rollout on any error (including Ctrl-C); env faults -> RolloutError."""
        try:
            yield
        except EnvFault as fault:
            self.close()
            raise RolloutError(self._fault_message(fault, "in-process")) from fault
        except BaseException:
            self.close()
            raise

    def _command(
        self, command: bytes, what: str, payloads: dict[int, bytes] | None = None
    ) -> dict[int, bytes]:
        """Run ``command`` on the in-process shard and every worker; returns worker replies."""
        if self.closed:
            raise RolloutError("the rollout is closed")
        if self._stepping:
            raise RolloutError("a step is in progress: call step_wait() first")
        with self._guard():
            for shard in self._shards:
                if command in (protocol.STEP, protocol.RESET):
                    self._in_process(shard, command)
            self._send(command, payloads)
            if self._workers:
                return self._gather(what, self.timeout)
        return {}

    def _send(self, command: bytes, payloads: dict[int, bytes] | None = None) -> None:
        for w in self._workers:
            # A dead worker's pipe is broken: _gather reports it with its exit status.
            with contextlib.suppress(OSError):
                w.conn.send_bytes(payloads[w.index] if payloads else command)

    def _in_process(self, shard: Shard, command: bytes) -> None:
        """Step or reset the in-process shard within ``timeout``."""
        try:
            with time_limit(self.timeout):
                if command == protocol.STEP:
                    shard.step()
                else:
                    shard.reset()
        except Expired:
            hung = self._hung(shard.start, shard.stop, "in-process", self.timeout)
            raise RolloutError(
                hung or f"the in-process envs did not answer within {self.timeout:g} s"
            ) from None

    def _hung(self, start: int, stop: int, where: str, timeout: float) -> str:
        """The env of tasks ``start .. stop - 1`` stuck in a call, as a message ('' if none)."""
        busy = np.flatnonzero(self._arrays.busy[start:stop])
        if busy.size == 0:
            return ""
        i = start + int(busy[0])
        phase = BUSY_PHASES[int(self._arrays.busy[i])]
        return (
            f"env of task {self.task_names[i]!r} (task {i}, {where}) did not return from "
            f"{phase} within {timeout:g} s" + (" (step_timeout)" if phase != "construction" else "")
        )

    def _check_finite(self, step: int) -> None:
        """Raise NonFiniteEnvError naming the first task whose env returned NaN or inf."""
        a = self._arrays
        fields = (("reward", a.reward), ("observation", a.next_obs), ("reset observation", a.obs))
        if step == 0:  # after reset()
            fields = (("observation", a.obs),)
        for field, values in fields:
            finite = np.isfinite(values)
            if finite.all():
                continue
            bad = ~finite if finite.ndim == 1 else ~finite.all(axis=1)
            task = int(np.flatnonzero(bad)[0])
            value = "NaN" if np.isnan(values[task]).any() else "inf"
            raise NonFiniteEnvError(task, self.task_names[task], field, value, step)

    def _gather(self, what: str, timeout: float) -> dict[int, bytes]:
        """Wait for every worker's ``OK``; raise RolloutError on a fault, death or timeout."""
        deadline = time.monotonic() + (timeout if timeout > 0 else float("inf"))  # 0: no limit
        replies: dict[int, bytes] = {}
        pending = {w.conn: w for w in self._workers}
        sentinels = {w.process.sentinel: w for w in self._workers}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RolloutError(self._timeout_message(list(pending.values()), what, timeout))
            waitables = [*pending, *(w.process.sentinel for w in pending.values())]
            for ready in wait(waitables, min(remaining, 3600.0)):
                w = pending.get(ready) or sentinels[ready]
                if w.conn not in pending:
                    continue  # its reply was already handled in this round
                if ready is w.process.sentinel and w.conn.poll():
                    continue  # it left a reply (or EOF) on its pipe: read that first
                try:
                    reply = w.conn.recv_bytes() if ready is w.conn else None
                except (EOFError, OSError):
                    reply = None
                if reply is None:
                    raise RolloutError(
                        f"{w.describe()} died during {what}{self._exit(w)}; "
                        "its stderr, if any, is above"
                    )
                if reply.startswith(protocol.FAULT):
                    fault = protocol.decode_fault(reply)
                    raise RolloutError(self._fault_message(fault, f"worker {w.index}"))
                replies[w.index] = reply
                del pending[w.conn]
        return replies

    def _timeout_message(self, pending: list[_Worker], what: str, timeout: float) -> str:
        """Name the env a silent worker is stuck in (else the worker); kill the silent workers,
        which will not answer a request to quit."""
        for w in pending:
            w.process.kill()
        for w in pending:
            a, b = self.shards[w.index]
            hung = self._hung(a, b, f"worker {w.index}", timeout)
            if hung:
                return hung
        return f"{pending[0].describe()} did not answer within {timeout:g} s ({what})"

    def _fault_message(self, fault: EnvFault, where: str) -> str:
        name = self.task_names[fault.task]
        return (
            f"env of task {name!r} (task {fault.task}, {where}) raised during "
            f"{fault.phase}: {fault.message}"
        )

    @staticmethod
    def _exit(w: _Worker) -> str:
        w.process.join(1.0)
        code = w.process.exitcode
        if code is None:
            return ""
        if code < 0:
            with contextlib.suppress(ValueError):
                return f" (killed by {signal.Signals(-code).name})"
        return f" (exit code {code})"
