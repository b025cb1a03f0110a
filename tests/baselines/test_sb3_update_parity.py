"""Update-level parity of MT-SAC at T = 1 with Stable-Baselines3's SAC (SB3 2.9.2, torch 2.13).

How the two are compared. SB3 runs its real ``SAC.train()``: a ReplayBuffer subclass, passed
through SB3's ``replay_buffer_class`` extension point, hands it prepared batches in order, and
optimizer step pre-hooks (torch's ``register_step_pre_hook``) record the gradient each optimizer is
about to apply. mtrl runs its real ``MTSAC.update()`` (``surgery=mean``, T = 1) from SB3's initial
weights, on the same batches, with the same hooks. A transcription of ``train()`` would test our
reading of SB3; driving the real one tests SB3 itself.

Noise. Both draw one standard normal sample for the actor loss (which also gives the log-
probability of the temperature loss) and one for the next-state action, from torch's global
generator, in opposite orders: SB3 draws the actor sample first (``actor.action_log_prob(obs)`` at
the top of ``train()``), mtrl draws the next-state sample first (``critic_targets``) and the actor
sample second (``_actor_noise``). So one seed before each update would swap the samples between
the two losses. The test seeds torch before each update on both sides, draws SB3's first sample
itself and hands it to mtrl through its actor-noise hook (a subclass that overrides only
``_actor_noise``); mtrl's own next-state draw is then SB3's second draw.

Observation. SB3 sees the observation with the constant one-hot (1 at the end), as the repo's
``sb3-sac-per-task`` baseline does, so both networks have the same shape and the weights copy one
to one (mtrl's ``EnsembleLinear`` stores ``W.T``; the actor's head is SB3's ``mu`` and ``log_std``
stacked, mean first). ``test_one_hot_column_is_a_second_first_layer_bias`` covers SB3 on the raw
observation.

Adam's first step is about ``lr * sign(g)``, so the parameters after a few updates hardly show
a difference in gradient magnitudes (feeding mtrl the wrong noise changes gradients by up to 0.35
and still leaves log-alpha equal to 3e-11 after one update). The tests therefore compare the
gradient of every optimizer step and the logged losses, besides the parameters after 1 and 5
updates.

Tolerances (float32, CPU, one thread): gradients 1e-6 absolute + 1e-5 relative (measured at most
2.4e-7), losses 1e-6 relative (measured at most 1.2e-7), parameters 1e-6 absolute after 1 and 5
updates (measured at most 9e-8). What matches: target Q, critic loss and gradient, actor loss and
gradient, temperature loss and gradient, the step order (which temperature, critic and actor each
loss uses), Polyak averaging. What differs: SB3's tanh correction ``log(1 - tanh(u)^2 + 1e-6)``
against mtrl's exact ``2 (log 2 - u - softplus(-2u))`` (see
``test_squash_correction_differs_by_sb3_epsilon``; the matching runs set the epsilon of SB3's
distribution to 0), and, only against SB3 on the raw observation, the one-hot column (see
``test_one_hot_column_is_a_second_first_layer_bias``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import Tensor, nn

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.agents.networks import squashed_sample

OBS, ACT, B, HIDDEN = 3, 2, 64, [64, 64]
LR, GAMMA, TAU = 3e-4, 0.99, 0.005
UPDATES = 5
PARAM_TOL = 1e-6
GRAD_ATOL, GRAD_RTOL = 1e-6, 1e-5
LOSS_RTOL = 1e-6
SB3_LOSSES = {
    "train/critic_loss": "critic_loss",
    "train/actor_loss": "actor_loss",
    "train/ent_coef_loss": "alpha_loss",
}


# --------------------------------------------------------------------------- SB3 side
class BoxEnv(gym.Env):
    """Only the spaces matter: SB3's ``train()`` never steps the env here."""

    def __init__(self, obs_dim: int) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


class QueuedBatches(ReplayBuffer):
    """A replay buffer whose ``sample()`` returns the batches put in ``queue``, in order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue: list[ReplayBufferSamples] = []

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        assert self.queue[0].observations.shape[0] == batch_size
        return self.queue.pop(0)


class LossLog(Logger):
    """Keeps the last value SB3 records for each of its three losses."""

    def __init__(self) -> None:
        super().__init__(folder=None, output_formats=[])
        self.last: dict[str, float] = {}

    def record(self, key, value, exclude=None) -> None:
        super().record(key, value, exclude)
        if key in SB3_LOSSES:
            self.last[SB3_LOSSES[key]] = float(value)


def sb3_sac(obs_dim: int = OBS + 1, epsilon: float | None = 0.0) -> SAC:
    """SB3's SAC with mtrl's defaults: ``ent_coef="auto"`` (1.0), target entropy -|A|, Adam
    (eps 1e-8), one learning rate, Polyak every update. ``epsilon``: the squash correction's
    epsilon (None: SB3's default 1e-6; 0: the exact correction, up to float32 rounding)."""
    model = SAC(
        "MlpPolicy",
        BoxEnv(obs_dim),
        learning_rate=LR,
        buffer_size=8,
        batch_size=B,
        tau=TAU,
        gamma=GAMMA,
        ent_coef="auto",
        policy_kwargs={"net_arch": HIDDEN},
        replay_buffer_class=QueuedBatches,
        seed=0,
        device="cpu",
    )
    model.set_logger(LossLog())
    if epsilon is not None:
        model.actor.action_dist.epsilon = epsilon
    return model


# --------------------------------------------------------------------------- mtrl side
class FedNoiseMTSAC(MTSAC):
    """MTSAC whose actor-loss noise is given (``noise``); everything else is MTSAC's own."""

    noise: Tensor | None = None

    def _actor_noise(self, batch):
        return super()._actor_noise(batch) if self.noise is None else self.noise


def mtrl_agent(obs_dim: int = OBS + 1) -> FedNoiseMTSAC:
    cfg = AgentConfig(
        hidden=HIDDEN,
        actor_lr=LR,
        critic_lr=LR,
        alpha_lr=LR,
        gamma=GAMMA,
        tau=TAU,
        init_alpha=1.0,
        adam_eps=1e-8,
        log_std_min=-20.0,
        log_std_max=2.0,
    )
    return FedNoiseMTSAC(obs_dim, ACT, 1, cfg, SurgeryConfig(name="mean"))


# --------------------------------------------------------------------------- one layout
Get = Callable[[Tensor], Tensor]


def _plain(p: Tensor) -> Tensor:
    return p


def actor_view(agent: MTSAC, get: Get = _plain, one_hot: bool = True) -> dict[str, Tensor]:
    """mtrl's actor tensors (or ``get`` of them, e.g. their gradients) named and shaped as in
    SB3's actor; views, so copying into them writes mtrl's parameters. ``one_hot=False``: the
    first layer without the one-hot row (for SB3 on the raw observation)."""
    net, out = agent.actor.net, {}
    for i, sb3_index in enumerate((0, 2)):
        weight = get(net.trunk[i].weight)[0]
        if i == 0 and not one_hot:
            weight = weight[:OBS]
        out[f"latent_pi.{sb3_index}.weight"] = weight.T
        out[f"latent_pi.{sb3_index}.bias"] = get(net.trunk[i].bias)[0, 0]
    head_w, head_b = get(net.head.weight)[0].T, get(net.head.bias)[0, 0]
    out |= {"mu.weight": head_w[:ACT], "mu.bias": head_b[:ACT]}
    out |= {"log_std.weight": head_w[ACT:], "log_std.bias": head_b[ACT:]}
    return out


def critic_view(critic: nn.Module, get: Get = _plain, one_hot: bool = True) -> dict[str, Tensor]:
    """mtrl's critic ensemble as SB3's ``qf0``, ``qf1`` (input: observation, one-hot, action);
    ``one_hot=False``: each first-layer weight as its observation and action columns."""
    layers, out = [*critic.net.trunk, critic.net.head], {}
    for e in range(2):
        for layer, sb3_index in zip(layers, (0, 2, 4), strict=True):
            out[f"qf{e}.{sb3_index}.weight"] = get(layer.weight)[e].T
            out[f"qf{e}.{sb3_index}.bias"] = get(layer.bias)[e, 0]
    return out if one_hot else split_obs_action(out)


def split_obs_action(view: dict[str, Tensor]) -> dict[str, Tensor]:
    """The critics' first-layer weights as two views: observation columns, action columns
    (skipping mtrl's one-hot column between them)."""
    out = {}
    for name, tensor in view.items():
        if name.endswith(".0.weight"):
            out[name + "[obs]"], out[name + "[act]"] = tensor[:, :OBS], tensor[:, -ACT:]
        else:
            out[name] = tensor
    return out


def sb3_view(module: nn.Module, get: Get = _plain) -> dict[str, Tensor]:
    return {
        name: get(p)
        for name, p in module.named_parameters()
        if not name.startswith("features_extractor")
    }


def pairs(model: SAC, agent: MTSAC, one_hot: bool = True) -> dict[str, tuple[dict, dict]]:
    """Per parameter group, (mtrl view, SB3 view)."""
    split = (lambda view: view) if one_hot else split_obs_action
    return {
        "actor": (actor_view(agent, one_hot=one_hot), sb3_view(model.actor)),
        "critic": (critic_view(agent.critic, one_hot=one_hot), split(sb3_view(model.critic))),
        "target": (
            critic_view(agent.critic_target, one_hot=one_hot),
            split(sb3_view(model.critic_target)),
        ),
        "log_alpha": ({"log": agent.log_alpha}, {"log": model.log_ent_coef}),
    }


@torch.no_grad()
def copy_sb3_into(model: SAC, agent: MTSAC, one_hot: bool = True) -> None:
    """SB3's weights, target and temperature into mtrl's modules; the one-hot rows of the first
    layers get zeros when SB3 sees the raw observation (``one_hot=False``)."""
    if not one_hot:
        agent.actor.net.trunk[0].weight[0, OBS].zero_()
        for net in (agent.critic.net, agent.critic_target.net):
            net.trunk[0].weight[:, OBS].zero_()
    for mine, theirs in pairs(model, agent, one_hot).values():
        assert mine.keys() == theirs.keys()
        for name, tensor in mine.items():
            tensor.copy_(theirs[name])


def max_diffs(model: SAC, agent: MTSAC, one_hot: bool = True) -> dict[str, float]:
    return {
        group: max((mine[k] - theirs[k]).abs().max().item() for k in mine)
        for group, (mine, theirs) in pairs(model, agent, one_hot).items()
    }


# --------------------------------------------------------------------------- driving both
def make_batches(n: int, seed: int = 0) -> list[dict[str, Tensor]]:
    """Raw transitions [B, ...] (observations without the one-hot)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "obs": torch.randn(B, OBS, generator=gen),
                "action": torch.rand(B, ACT, generator=gen) * 2 - 1,
                "reward": torch.randn(B, generator=gen),
                "next_obs": torch.randn(B, OBS, generator=gen),
                "terminated": (torch.rand(B, generator=gen) < 0.2).float(),
            }
        )
    return out


def with_one_hot(obs: Tensor) -> Tensor:
    return torch.cat([obs, torch.ones(obs.shape[0], 1)], dim=-1)


def sb3_samples(raw: dict[str, Tensor], one_hot: bool = True) -> ReplayBufferSamples:
    obs = with_one_hot if one_hot else (lambda x: x)
    return ReplayBufferSamples(
        observations=obs(raw["obs"]),
        actions=raw["action"],
        next_observations=obs(raw["next_obs"]),
        dones=raw["terminated"][:, None],
        rewards=raw["reward"][:, None],
    )


def mtrl_batch(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    batch = {k: v[None] for k, v in raw.items()}
    batch["obs"] = with_one_hot(raw["obs"])[None]
    batch["next_obs"] = with_one_hot(raw["next_obs"])[None]
    return batch


class GradRecorder:
    """Optimizer step pre-hooks: the gradient each optimizer is about to apply, in SB3's layout,
    one dict per step."""

    def __init__(self) -> None:
        self.steps: dict[str, list[dict[str, Tensor]]] = {}

    def watch(self, name: str, optimizer: torch.optim.Optimizer, view: Callable[[], dict]) -> None:
        self.steps[name] = []

        def hook(opt, args, kwargs):
            self.steps[name].append({k: g.detach().clone() for k, g in view().items()})

        optimizer.register_step_pre_hook(hook)


def _grad(p: Tensor) -> Tensor:
    assert p.grad is not None
    return p.grad


def watch_sb3(model: SAC) -> GradRecorder:
    rec = GradRecorder()
    rec.watch("actor", model.actor.optimizer, lambda: sb3_view(model.actor, _grad))
    rec.watch("critic", model.critic.optimizer, lambda: sb3_view(model.critic, _grad))
    rec.watch("alpha", model.ent_coef_optimizer, lambda: {"log": _grad(model.log_ent_coef)})
    return rec


def watch_mtrl(agent: MTSAC) -> GradRecorder:
    rec = GradRecorder()
    rec.watch("actor", agent.actor_opt, lambda: actor_view(agent, _grad))
    rec.watch("critic", agent.critic_opt, lambda: critic_view(agent.critic, _grad))
    rec.watch("alpha", agent.alpha_opt, lambda: {"log": _grad(agent.log_alpha)})
    return rec


def sb3_update(model: SAC, raw: dict[str, Tensor], seed: int, one_hot: bool = True) -> None:
    model.replay_buffer.queue.append(sb3_samples(raw, one_hot))
    torch.manual_seed(seed)
    model.train(gradient_steps=1, batch_size=B)


def mtrl_update(agent: FedNoiseMTSAC, raw: dict[str, Tensor], seed: int) -> dict:
    torch.manual_seed(seed)
    agent.noise = torch.randn(B, ACT)[None]  # SB3's first draw: its actor-loss sample
    return agent.update(mtrl_batch(raw))  # its next-state draw is SB3's second


def assert_grads_match(mine: dict[str, Tensor], theirs: dict[str, Tensor]) -> float:
    assert mine.keys() == theirs.keys()
    worst = 0.0
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], atol=GRAD_ATOL, rtol=GRAD_RTOL)
        worst = max(worst, (mine[name] - theirs[name]).abs().max().item())
    return worst


def grads_by_param(loss: Tensor, module_or_params, retain_graph: bool = False) -> Get:
    """d loss / d p for every parameter p, as a ``get`` for the views."""
    params = list(module_or_params)
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph)
    by_id = {id(p): g for p, g in zip(params, grads, strict=True)}
    return lambda p: by_id[id(p)]


def max_grad_diff(mine: dict[str, Tensor], theirs: dict[str, Tensor]) -> float:
    return max((mine[k] - theirs[k]).abs().max().item() for k in mine)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the tests
def test_copied_weights_give_the_same_outputs():
    """The weight mapping: the same mean, log-std and Q values, temperature and target entropy."""
    model, agent = sb3_sac(), mtrl_agent()
    copy_sb3_into(model, agent)
    raw = make_batches(1)[0]
    obs = with_one_hot(raw["obs"])
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(obs)
        mine = agent.actor(obs)
        torch.testing.assert_close(mine[0], mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(mine[1], log_std, atol=1e-6, rtol=0)
        for critic, sb3_critic in (
            (agent.critic, model.critic),
            (agent.critic_target, model.critic_target),
        ):
            q = torch.cat(sb3_critic(obs, raw["action"]), dim=1).T
            torch.testing.assert_close(critic(obs, raw["action"]), q, atol=1e-6, rtol=0)
    assert agent.log_alpha.item() == model.log_ent_coef.item() == 0.0  # both start at alpha 1
    assert agent.target_entropy == model.target_entropy == -ACT


def test_updates_match_sb3():
    """Five updates of the real ``train()`` and ``update()``: the same gradient at every optimizer
    step, the same logged losses, the same parameters after 1 and 5 updates."""
    model, agent = sb3_sac(), mtrl_agent()
    copy_sb3_into(model, agent)
    theirs, mine = watch_sb3(model), watch_mtrl(agent)
    worst_grad = 0.0
    for k, raw in enumerate(make_batches(UPDATES)):
        sb3_update(model, raw, seed=100 + k)
        metrics = mtrl_update(agent, raw, seed=100 + k)
        for net in ("critic", "actor", "alpha"):
            assert len(mine.steps[net]) == len(theirs.steps[net]) == k + 1
            worst_grad = max(
                worst_grad, assert_grads_match(mine.steps[net][k], theirs.steps[net][k])
            )
        for name, value in model.logger.last.items():
            assert metrics[name].item() == pytest.approx(value, rel=LOSS_RTOL)
        if k in (0, UPDATES - 1):
            diffs = max_diffs(model, agent)
            assert max(diffs.values()) < PARAM_TOL, (k + 1, diffs)
    assert worst_grad < GRAD_ATOL
    # the parameters moved, so matching them says something
    assert abs(model.log_ent_coef.item()) > UPDATES * LR / 2


def test_pieces_match_on_one_batch():
    """(a) target Q, (b) critic loss and gradient, (c) actor loss and gradient, (d) temperature
    loss and gradient, on one batch and one noise draw: SB3's side is the expressions of
    ``train()`` on SB3's own modules (the same names), mtrl's side its own loss functions."""
    model, agent = sb3_sac(), mtrl_agent()
    copy_sb3_into(model, agent)
    raw = make_batches(1)[0]
    replay_data, batch = sb3_samples(raw), mtrl_batch(raw)
    with torch.no_grad():  # a temperature other than 1, so that a misplaced alpha would show
        agent.log_alpha.fill_(math.log(0.3))
        model.log_ent_coef.fill_(math.log(0.3))
    ent_coef = torch.exp(model.log_ent_coef.detach())

    torch.manual_seed(5)
    actions_pi, log_prob = model.actor.action_log_prob(replay_data.observations)
    log_prob = log_prob.reshape(-1, 1)
    with torch.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(replay_data.next_observations)
        next_q_values = torch.cat(
            model.critic_target(replay_data.next_observations, next_actions), dim=1
        )
        next_q_values, _ = torch.min(next_q_values, dim=1, keepdim=True)
        next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
        target_q_values = replay_data.rewards + (1 - replay_data.dones) * GAMMA * next_q_values
    torch.manual_seed(5)
    noise = torch.randn(B, ACT)[None]  # SB3's first draw
    target = agent.critic_targets(batch)  # draws the next-state noise: SB3's second draw
    torch.testing.assert_close(target, target_q_values.T, atol=1e-6, rtol=1e-6)  # (a)

    # (b)
    current_q_values = model.critic(replay_data.observations, replay_data.actions)
    critic_loss = 0.5 * sum(
        F.mse_loss(current_q, target_q_values) for current_q in current_q_values
    )
    theirs = sb3_view(model.critic, grads_by_param(critic_loss, model.critic.parameters()))
    tb = {"obs": batch["obs"], "action": batch["action"], "target": target}
    loss = agent._critic_losses(dict(agent.critic.named_parameters()), tb)
    assert loss.item() == pytest.approx(critic_loss.item(), rel=LOSS_RTOL)
    mine = critic_view(agent.critic, grads_by_param(loss.sum(), agent.critic.parameters()))
    assert_grads_match(mine, theirs)

    # (c)
    q_values_pi = torch.cat(model.critic(replay_data.observations, actions_pi), dim=1)
    min_qf_pi, _ = torch.min(q_values_pi, dim=1, keepdim=True)
    actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
    get = grads_by_param(actor_loss, model.actor.parameters(), retain_graph=True)
    theirs = sb3_view(model.actor, get)
    tb = {"obs": batch["obs"], "alpha": ent_coef, "noise": noise}
    loss, mean_log_prob = agent._actor_losses(dict(agent.actor.named_parameters()), tb)
    assert loss.item() == pytest.approx(actor_loss.item(), rel=LOSS_RTOL)
    mine = actor_view(agent, grads_by_param(loss.sum(), agent.actor.parameters()))
    assert_grads_match(mine, theirs)

    # (d): SB3's ent_coef_loss; mtrl's alpha_loss as update() forms it from the actor loss's
    # mean log-probability (the same sample)
    ent_coef_loss = -(model.log_ent_coef * (log_prob + model.target_entropy).detach()).mean()
    alpha_loss = -(agent.log_alpha * (mean_log_prob.detach() + agent.target_entropy))
    assert alpha_loss.item() == pytest.approx(ent_coef_loss.item(), rel=LOSS_RTOL)
    (theirs_alpha,) = torch.autograd.grad(ent_coef_loss, [model.log_ent_coef])
    (mine_alpha,) = torch.autograd.grad(alpha_loss.sum(), [agent.log_alpha])
    torch.testing.assert_close(mine_alpha, theirs_alpha, atol=1e-6, rtol=1e-6)


def test_step_order_is_equivalent():
    """(e) SB3 steps the temperature first, mtrl last, yet both use the temperature from before
    this update's step in the critic target and the actor loss (SB3 takes ``ent_coef =
    exp(log_ent_coef.detach())`` before its step: a new tensor, so the step does not reach it),
    both use the actor before its step for the next-state action and the temperature loss's
    sample, and both use the critic after its step in the actor loss. The alternatives would
    show (measured, one update from alpha = 1): the post-step temperature (0.9997) moves the
    critic's gradient by 3.1e-4 and the actor's by 8.4e-5; the pre-step critic in the actor loss
    moves the actor's gradient by 5.8e-4; mtrl's order stays within 2.4e-7."""
    model, agent = sb3_sac(), mtrl_agent()
    copy_sb3_into(model, agent)
    before = copy.deepcopy(agent)
    raw = make_batches(1)[0]
    theirs = watch_sb3(model)
    sb3_update(model, raw, seed=100)

    # the temperature after this update's step, in the target and in the actor loss
    post = copy.deepcopy(before)
    with torch.no_grad():
        post.log_alpha.copy_(model.log_ent_coef)
    mine = watch_mtrl(post)
    mtrl_update(post, raw, seed=100)
    assert max_grad_diff(mine.steps["critic"][0], theirs.steps["critic"][0]) > 10 * GRAD_ATOL
    assert max_grad_diff(mine.steps["actor"][0], theirs.steps["actor"][0]) > 10 * GRAD_ATOL

    # mtrl's own order matches
    mine = watch_mtrl(agent)
    mtrl_update(agent, raw, seed=100)
    for net in ("critic", "actor", "alpha"):
        assert_grads_match(mine.steps[net][0], theirs.steps[net][0])

    # the actor loss through the critic before its step, against the critic after it
    torch.manual_seed(100)
    tb = {"obs": mtrl_batch(raw)["obs"], "alpha": torch.ones(1), "noise": torch.randn(B, ACT)[None]}
    params = dict(before.actor.named_parameters())
    for critic_of, matches in ((before, False), (agent, True)):
        loss = critic_of._actor_losses(params, tb)[0].sum()
        grads = actor_view(before, grads_by_param(loss, params.values()))
        diff = max_grad_diff(grads, theirs.steps["actor"][0])
        assert diff < GRAD_ATOL if matches else diff > 10 * GRAD_ATOL


def test_squash_correction_differs_by_sb3_epsilon():
    """The one difference by design: SB3's tanh correction is ``log(1 - tanh(u)^2 + 1e-6)`` of
    the squashed action (float32), mtrl's is the exact ``2 (log 2 - u - softplus(-2u))`` (the
    form of torch's TanhTransform and of the Meta-World+ reference's distrax Tanh). Equal near
    u = 0; SB3's log-probability is lower from |u| ~ 3 and stops growing once tanh(u) rounds to
    1 (|u| above about 9 in float32), where its gradient becomes 0 and mtrl's stays 2 per dimension."""
    u = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0])[:, None].requires_grad_(True)
    log_std = torch.zeros_like(u)
    dist = SquashedDiagGaussianDistribution(1)  # SB3's default epsilon, 1e-6
    dist.proba_distribution(u, log_std)
    theirs = dist.log_prob(torch.tanh(u), gaussian_actions=u)
    mine = squashed_sample(u, log_std, torch.zeros_like(u))[1]
    d_theirs = torch.autograd.grad(theirs.sum(), u)[0][:, 0]
    d_mine = torch.autograd.grad(mine.sum(), u)[0][:, 0]

    x = u.detach().double()[:, 0]
    theirs, mine = theirs.detach(), mine.detach()
    gauss = -0.5 * math.log(2 * math.pi)
    exact = gauss - torch.log(1 - torch.tanh(x) ** 2)
    torch.testing.assert_close(mine.double(), exact, atol=1e-5, rtol=1e-5)
    gap = theirs - mine
    assert gap[:4].abs().max() < 2e-4  # |u| <= 3
    assert -6e-3 < gap[4] < -4e-3  # u = 5: 5.3e-3 (measured)
    assert -0.3 < gap[5] < -0.2  # u = 7: 0.27
    assert gap[6] < -4.5 and gap[7] < -14  # u = 10, 15: 4.8, 14.8
    assert theirs[6].item() == theirs[7].item() == pytest.approx(gauss - math.log(1e-6))  # capped
    torch.testing.assert_close(d_mine[-3:], torch.full((3,), 2.0))
    assert d_theirs[-2:].abs().max() == 0

    # in the update, at these initial weights (|u| mostly < 3), SB3's default epsilon moves the
    # gradients by more than the tolerance of test_updates_match_sb3
    model, agent = sb3_sac(epsilon=None), mtrl_agent()
    copy_sb3_into(model, agent)
    theirs_grads, mine_grads = watch_sb3(model), watch_mtrl(agent)
    raw = make_batches(1)[0]
    sb3_update(model, raw, seed=100)
    mtrl_update(agent, raw, seed=100)
    assert max_grad_diff(mine_grads.steps["actor"][0], theirs_grads.steps["actor"][0]) > GRAD_ATOL


def test_one_hot_column_is_a_second_first_layer_bias():
    """Against SB3 on the raw observation (no one-hot; the repo's sb3-sac-per-task baseline keeps
    it, so this does not separate the two there): mtrl's constant one-hot input is a second bias
    of every first layer. From the same function (a zero one-hot row), one update moves the
    one-hot row exactly as the bias, so the effective first-layer bias moves twice as far as
    SB3's with Adam; everything else matches."""
    model, agent = sb3_sac(obs_dim=OBS), mtrl_agent()
    copy_sb3_into(model, agent, one_hot=False)
    raw = make_batches(1)[0]
    with torch.no_grad():
        obs = with_one_hot(raw["obs"])
        mean = model.actor.get_action_dist_params(raw["obs"])[0]
        torch.testing.assert_close(agent.actor(obs)[0], mean, atol=1e-6, rtol=0)
        q = torch.cat(model.critic(raw["obs"], raw["action"]), dim=1).T
        torch.testing.assert_close(agent.critic(obs, raw["action"]), q, atol=1e-6, rtol=0)
    first_biases = {
        "actor": (model.actor.latent_pi[0].bias, lambda: agent.actor.net.trunk[0].weight[0, OBS]),
        "critic": (
            model.critic.qf0[0].bias,
            lambda: agent.critic.net.trunk[0].weight[0, OBS],
        ),
    }
    start = {k: b.detach().clone() for k, (b, _) in first_biases.items()}
    sb3_update(model, raw, seed=100, one_hot=False)
    mtrl_update(agent, raw, seed=100)
    diffs = max_diffs(model, agent, one_hot=False)
    assert max(diffs.values()) < PARAM_TOL, diffs
    for k, (bias, one_hot_row) in first_biases.items():
        step = bias.detach() - start[k]
        assert step.abs().max() > LR / 2
        torch.testing.assert_close(one_hot_row(), step, atol=1e-7, rtol=0)  # step ~ lr
