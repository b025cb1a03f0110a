"""Baselines on mtrl's task suites through Stable-Baselines3.

- ``mtrl.baselines.sb3_per_task``: one SB3 SAC per task (``agent.algorithm=sb3-sac-per-task``),
  the single-task reference of MTRL papers, logged and evaluated like MT-SAC.
- ``mtrl.baselines.sb3_vec_env``: ``SuiteVecEnv``, an SB3 ``VecEnv`` over a suite's T task envs
  (one-hot task id in the observation), so any SB3 algorithm trains on MT10 as it is.

Nothing here is imported by ``import mtrl.baselines`` itself: rollout workers unpickle
``mtrl.baselines.env_calls`` functions and must not import torch.
"""
