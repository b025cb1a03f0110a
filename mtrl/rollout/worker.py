"""The rollout worker process: owns a :class:`Shard` and serves one-byte commands.

Protocol on the worker's pipe (bytes only, never pickled per step):
parent -> worker ``STEP`` / ``RESET`` / ``QUIT``; worker -> parent ``OK`` after building its
envs and after each command, or ``FAULT`` + JSON ``[task, phase, message]`` when an env
raised. ``RESET`` may carry JSON seeds for the shard's envs (a reseed). For checkpoints and
inspection only (rare, so pickled): ``GET_STATE`` is answered with ``OK`` + the pickled env
states, ``SET_STATE`` + pickled states restores them, and ``CALL`` + a pickled
``(function, tasks)`` is answered with ``OK`` + the pickled ``(ok, results or exception)`` of
``function(env)`` on those tasks' envs (an exception there leaves the worker running). The data
itself lives in the shared arrays. Must not import torch.
"""

from __future__ import annotations

import json
import pickle
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from mtrl.rollout.buffers import SharedArrays
from mtrl.rollout.shard import EnvFault, Shard

STEP = b"s"
RESET = b"r"
QUIT = b"q"
GET_STATE = b"g"
SET_STATE = b"w"
CALL = b"c"
OK = b"k"
FAULT = b"E"

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals a worker ignores: a Ctrl-C or a scheduler's SIGTERM reaches the whole process group,
and the parent, which owns shutdown, may still need the worker to save a checkpoint."""


def encode_fault(fault: EnvFault) -> bytes:
    """The ``FAULT`` reply for an env fault."""
    return FAULT + json.dumps([fault.task, fault.phase, fault.message]).encode()


def decode_fault(reply: bytes) -> EnvFault:
    """Inverse of :func:`encode_fault`."""
    task, phase, message = json.loads(reply[len(FAULT) :].decode())
    return EnvFault(task, phase, message)


def call_reply(shard: Shard, payload: bytes) -> bytes:
    """Run a pickled ``(function, tasks)`` on the shard; pickle ``(True, results)`` or, if the
    function (or pickling its results) raised, ``(False, exception)``."""
    try:
        function, tasks = pickle.loads(payload)
        return pickle.dumps((True, shard.call(function, tasks)))
    except Exception as exc:
        try:
            return pickle.dumps((False, exc))
        except Exception:  # an exception that cannot be pickled: keep its type name and text
            return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def worker_main(
    conn: Connection,
    factories: Sequence[Callable[[], Any]],
    start: int,
    seeds: Sequence[int],
    arrays: SharedArrays,
    end_on_success: bool = False,
) -> None:
    """Build the shard's envs, then serve commands until ``QUIT`` or the parent goes away."""
    for s in IGNORED_SIGNALS:  # inherited from birth already (see Rollout); made sure of here
        signal.signal(s, signal.SIG_IGN)
    shard: Shard | None = None
    try:
        try:
            shard = Shard(factories, start, seeds, arrays, end_on_success)
        except EnvFault as fault:
            conn.send_bytes(encode_fault(fault))
            return
        conn.send_bytes(OK)
        while True:
            command = conn.recv_bytes()
            if command == QUIT:
                return
            reply = OK
            try:
                if command == STEP:
                    shard.step()
                elif command.startswith(RESET):
                    if len(command) > len(RESET):
                        shard.reseed(json.loads(command[len(RESET) :].decode()))
                    shard.reset()
                elif command.startswith(CALL):
                    reply = OK + call_reply(shard, command[len(CALL) :])
                elif command == GET_STATE:
                    reply = OK + pickle.dumps(shard.get_state())
                elif command.startswith(SET_STATE):
                    shard.set_state(pickle.loads(command[len(SET_STATE) :]))
            except EnvFault as fault:
                conn.send_bytes(encode_fault(fault))
                return
            conn.send_bytes(reply)
    except (EOFError, OSError):
        return  # the parent closed the pipe or died: exit quietly
    finally:
        if shard is not None:
            shard.close()
        conn.close()
