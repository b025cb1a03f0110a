"""Functions run on suite envs where they live (``Rollout.call``), for ``SuiteVecEnv``'s
``get_attr``/``set_attr``/``env_method``/``env_is_wrapped``. Pickled into rollout workers:
must not import torch or Stable-Baselines3."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


def get_attr(env: gym.Env, name: str) -> Any:
    """``name`` from the first layer of the wrapper stack that has it (as SB3's DummyVecEnv)."""
    return env.get_wrapper_attr(name)


def set_attr(env: gym.Env, name: str, value: Any) -> None:
    """Set ``name`` on the layer that has it, or on the outer wrapper if none does."""
    env.set_wrapper_attr(name, value)


def call_method(env: gym.Env, name: str, args: tuple, kwargs: dict[str, Any]) -> Any:
    """``env.<name>(*args, **kwargs)``, looked up through the wrapper stack."""
    return env.get_wrapper_attr(name)(*args, **kwargs)


def is_wrapped(env: gym.Env, wrapper: str) -> bool:
    """Whether a layer of the wrapper stack is an instance of the class named ``wrapper``
    (``module.QualName``; compared by name so the class need not be imported here)."""
    while isinstance(env, gym.Wrapper):
        if any(class_name(c) == wrapper for c in type(env).__mro__):
            return True
        env = env.env
    return False


def class_name(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"
