"""MT-SAC: per-task loss shapes, the mean path equals a plain SAC update, surgery updates run."""

import copy

import pytest
import torch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.agents.networks import Actor, squashed_sample
from mtrl.errors import MtrlError

T, B, OBS, ACT = 10, 32, 39 + 10, 4  # MT10-shaped


def mt10_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(T)[:, None, :].expand(T, B, T)
    obs = torch.cat([torch.randn(T, B, OBS - T, generator=gen), eye], dim=-1)
    next_obs = torch.cat([torch.randn(T, B, OBS - T, generator=gen), eye], dim=-1)
    return {
        "obs": obs,
        "action": torch.rand(T, B, ACT, generator=gen) * 2 - 1,
        "reward": torch.randn(T, B, generator=gen),
        "next_obs": next_obs,
        "terminated": (torch.rand(T, B, generator=gen) < 0.1).float(),
        "truncated": torch.zeros(T, B),
    }


def small_agent(name: str = "mean", **options) -> MTSAC:
    torch.manual_seed(0)
    cfg = AgentConfig(hidden=[64, 64])
    return MTSAC(OBS, ACT, T, cfg, SurgeryConfig(name=name, options=options))


def test_losses_are_per_task_vectors():
    losses = small_agent().losses(mt10_batch())
    assert set(losses) == {"critic", "actor", "alpha"}
    for value in losses.values():
        assert value.shape == (T,) and torch.isfinite(value).all()
    # tasks see different data, so their losses differ
    assert losses["critic"].std() > 0


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_mean_aggregator_equals_plain_mean_loss_sac_update():
    agent = small_agent("mean")
    ref = copy.deepcopy(agent)
    ref.actor_opt = torch.optim.Adam(ref.actor.parameters(), lr=ref.cfg.actor_lr)
    ref.critic_opt = torch.optim.Adam(ref.critic.parameters(), lr=ref.cfg.critic_lr)
    ref.alpha_opt = torch.optim.Adam([ref.log_alpha], lr=ref.cfg.alpha_lr)
    batch = mt10_batch()

    torch.manual_seed(7)
    agent.update(batch)

    # An ordinary MT-SAC update of the mean loss over all T * B samples, by hand.
    torch.manual_seed(7)
    target = ref.critic_targets(batch)
    q = ref.critic(batch["obs"].reshape(T * B, -1), batch["action"].reshape(T * B, -1))
    critic_loss = 0.5 * ((q.view(-1, T, B) - target) ** 2).mean(dim=-1).sum(0).mean()
    ref.critic_opt.zero_grad()
    critic_loss.backward()
    ref.critic_opt.step()
    alpha = ref.log_alpha.exp().detach()
    mean, log_std = ref.actor(batch["obs"].reshape(T * B, -1))
    action, log_prob = squashed_sample(mean, log_std)
    q_pi = ref.critic(batch["obs"].reshape(T * B, -1), action).min(dim=0).values
    actor_loss = (alpha[:, None] * log_prob.view(T, B) - q_pi.view(T, B)).mean(dim=1).mean()
    ref.actor_opt.zero_grad()
    actor_loss.backward()
    ref.actor_opt.step()
    alpha_loss = -(ref.log_alpha * (log_prob.view(T, B).mean(1).detach() + ref.target_entropy))
    ref.alpha_opt.zero_grad()
    alpha_loss.sum().backward()
    ref.alpha_opt.step()

    for ours, theirs in zip(agent.critic.parameters(), ref.critic.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(agent.actor.parameters(), ref.actor.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(agent.log_alpha, ref.log_alpha)


@pytest.mark.parametrize("name", ["pcgrad", "cagrad"])
def test_surgery_update_on_mt10_batch_changes_both_networks(name):
    agent = small_agent(name)
    before_actor, before_critic = _params(agent.actor), _params(agent.critic)
    target_before = _params(agent.critic_target)
    metrics = agent.update(mt10_batch(), diagnostics=True)
    for key in ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy"):
        assert metrics[key].shape == (T,) and torch.isfinite(metrics[key]).all(), key
    diag = metrics["diagnostics"]
    assert set(diag) == {"critic", "actor"}
    assert diag["critic"].task_norms.shape == (T,)
    assert 0.0 <= diag["critic"].conflict_fraction <= 1.0
    assert any(
        not torch.equal(a, b) for a, b in zip(before_actor, agent.actor.parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b) for a, b in zip(before_critic, agent.critic.parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(target_before, agent.critic_target.parameters(), strict=True)
    )
    assert all(p.grad is None for p in agent.critic_target.parameters())


def test_surgery_networks_option_limits_the_aggregator():
    agent = MTSAC(OBS, ACT, T, AgentConfig(hidden=[32]), SurgeryConfig("pcgrad", networks="critic"))
    assert agent.aggregators["critic"].name == "pcgrad"
    assert agent.aggregators["actor"].name == "mean"


def test_each_task_has_its_own_temperature():
    agent = small_agent()
    batch = mt10_batch()
    for _ in range(3):
        agent.update(batch)
    assert agent.log_alpha.shape == (T,)
    assert agent.log_alpha.detach().unique().numel() > 1


def test_multihead_selects_the_task_head():
    torch.manual_seed(0)
    actor = Actor(OBS, ACT, [32], T, multihead=True)
    batch = mt10_batch()
    obs = batch["obs"][3]  # every sample is task 3
    mean, _ = actor(obs)
    mean.sum().backward()
    head_grad = actor.net.head.weight.grad[0]  # [T, in, out]
    assert head_grad[3].abs().sum() > 0
    assert head_grad[torch.arange(T) != 3].abs().sum() == 0
    agent = MTSAC(OBS, ACT, T, AgentConfig(hidden=[32], multihead=True))
    assert torch.isfinite(agent.update(batch)["critic_loss"]).all()


@pytest.mark.parametrize("name", ["pcgrad", "mean"])  # per-task path, fused path
def test_nan_loss_names_the_task(name):
    agent = small_agent(name)
    batch = mt10_batch()
    batch["reward"][4, 0] = float("nan")
    agent.aggregators["critic"].task_names = [f"t{i}" for i in range(T)]
    with pytest.raises(MtrlError, match=r"non-finite.*t4"):
        agent.update(batch)


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_fused_path_of_linear_aggregators_equals_their_per_task_path(name):
    """Without diagnostics mean/sum take one fused backward; with them, per-task gradients."""
    fused, per_task = small_agent(name), small_agent(name)
    batch = mt10_batch()
    torch.manual_seed(3)
    a = fused.update(batch)
    torch.manual_seed(3)
    b = per_task.update(batch, diagnostics=True)
    assert "diagnostics" in b and "diagnostics" not in a
    torch.testing.assert_close(a["critic_loss"], b["critic_loss"])
    for p, q in zip(fused.critic.parameters(), per_task.critic.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    moved = [
        (p - q).abs().max()
        for p, q in zip(fused.critic.parameters(), _params(small_agent(name).critic), strict=True)
    ]
    assert (
        max(moved) > 1e-4
    )  # the update did move the critic, so the equality above means something


def test_state_dict_roundtrip_gives_identical_updates():
    a = small_agent("pcgrad")
    a.update(mt10_batch(1))
    b = small_agent("pcgrad")
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    torch.manual_seed(3)
    a.update(mt10_batch(2))
    torch.manual_seed(3)
    b.update(mt10_batch(2))
    for x, y in zip(a.actor.parameters(), b.actor.parameters(), strict=True):
        assert torch.equal(x, y)


def test_squashed_sample_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    mean, log_std = torch.randn(1000, 2) * 0.3, torch.full((1000, 2), -0.5)
    torch.manual_seed(1)
    action, log_prob = squashed_sample(mean, log_std)
    torch.manual_seed(1)
    u = mean + log_std.exp() * torch.randn_like(mean)
    normal = torch.distributions.Normal(mean, log_std.exp())
    expected = (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-4)
    assert action.abs().max() < 1


def test_metaworld_init_and_adam_eps():
    """agent.init=metaworld: He-uniform hidden weights, zero hidden biases, small output layers
    (Meta-World+ reference); agent.adam_eps reaches all three optimisers."""
    cfg = AgentConfig(hidden=[256, 256], init="metaworld", adam_eps=1e-5)
    agent = MTSAC(OBS, ACT, T, cfg)
    for net, head_bound in ((agent.actor.net, 1e-3), (agent.critic.net, 3e-3)):
        for layer in net.trunk:
            fan_in = layer.weight.shape[-2]
            assert torch.count_nonzero(layer.bias) == 0
            assert layer.weight.abs().max() <= (6 / fan_in) ** 0.5
            assert layer.weight.abs().max() > 0.9 * (6 / fan_in) ** 0.5  # not the torch default
        assert net.head.weight.abs().max() <= head_bound
        assert net.head.bias.abs().max() <= head_bound
    for opt in (agent.actor_opt, agent.critic_opt, agent.alpha_opt):
        assert opt.param_groups[0]["eps"] == 1e-5
    default = MTSAC(OBS, ACT, T, AgentConfig(hidden=[256, 256]))
    assert torch.count_nonzero(default.actor.net.trunk[0].bias) > 0
    assert default.actor_opt.param_groups[0]["eps"] == 1e-8


def _nan_task3_batch():
    batch = mt10_batch()
    batch["reward"][3] = float("nan")  # task 3's targets, hence its critic loss, are NaN
    return batch


def test_deferred_checks_raise_at_the_check_naming_the_tasks():
    batch = _nan_task3_batch()
    with pytest.raises(MtrlError, match=r"^critic: non-finite loss or gradient in tasks 3$"):
        small_agent("mean").update(batch)
    torch.manual_seed(0)
    cfg, surgery = AgentConfig(hidden=[64, 64]), SurgeryConfig(name="mean")
    deferred = MTSAC(OBS, ACT, T, cfg, surgery, defer_checks=True)
    deferred.update(batch)  # no host sync, no error yet
    with pytest.raises(MtrlError, match=r"^critic: non-finite loss or gradient in tasks 3$"):
        deferred.raise_if_non_finite()
    deferred.raise_if_non_finite()  # reported once
    assert not small_agent().defer_checks  # on the CPU checks run every update by default


@pytest.mark.parametrize("defer", [False, True])
def test_a_host_solver_names_nan_tasks_at_once_even_with_deferred_checks(defer):
    # the Gramian comes to the host for the solver anyway, so its check costs no extra sync
    torch.manual_seed(0)
    cfg, surgery = AgentConfig(hidden=[64, 64]), SurgeryConfig(name="pcgrad")
    agent = MTSAC(OBS, ACT, T, cfg, surgery, defer_checks=defer)
    with pytest.raises(MtrlError, match=r"^non-finite \(NaN/inf\) gradient for task 3$"):
        agent.update(_nan_task3_batch())


def test_deferred_marks_name_inf_losses_and_a_non_finite_gradient_until_checked():
    torch.manual_seed(0)
    cfg, surgery = AgentConfig(hidden=[64, 64], grad_clip=1.0), SurgeryConfig(name="mean")
    agent = MTSAC(OBS, ACT, T, cfg, surgery, defer_checks=True)
    batch = mt10_batch()
    batch["reward"][1] = float("inf")  # task 1's critic loss is inf, not NaN
    agent.update(batch)
    with pytest.raises(MtrlError, match=r"^critic: non-finite loss or gradient in tasks 1$"):
        agent.raise_if_non_finite()
    finite = torch.zeros(T)
    agent._check_finite("actor", finite, agent.actor, norm=torch.tensor(float("inf")))
    agent._check_finite("actor", finite, agent.actor, norm=torch.tensor(1e30))  # keeps the mark
    with pytest.raises(
        MtrlError, match=r"^actor: .* in the combined gradient \(losses are finite\)$"
    ):
        agent.raise_if_non_finite()
    agent.raise_if_non_finite()  # reported once
