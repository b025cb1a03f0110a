"""Per-task gradients three ways (layer products, vmap, a loop): equal blocks, equal training."""

import pytest
import torch
from batches import replay_batch
from torch import nn
from torch.func import functional_call

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.agents.registry import list_networks
from mtrl.surgery import aggregator_class, list_aggregators
from mtrl.surgery.layergrads import Workspace, covers, layer_task_grads

T, B, ACT = 4, 8, 3
OBS = 6 + T


def agent(mode: str, network: str = "mlp", name: str = "mean", **options) -> MTSAC:
    torch.manual_seed(0)
    cfg = AgentConfig(hidden=[16, 16], network=network, task_grads=mode)
    return MTSAC(OBS, ACT, T, cfg, SurgeryConfig(name=name, options=options), seed=0)


def network_grads(a: MTSAC, network: str):
    """The critic's or the actor's per-task gradients on one batch, as the update forms them."""
    batch = replay_batch(T, B, OBS, ACT)
    torch.manual_seed(1)
    if network == "critic":
        target = a.critic_targets(batch)
        tb = {"obs": batch["obs"], "action": batch["action"], "target": target}
        return a._task_grads("critic", a.critic, a._critic_losses, tb, False)
    tb = {"obs": batch["obs"], "alpha": a.log_alpha.exp().detach(), "noise": a._actor_noise(batch)}
    a.critic.requires_grad_(False)
    return a._task_grads("actor", a.actor, a._actor_losses, tb, True)


@pytest.mark.parametrize("architecture", list(list_networks()))
@pytest.mark.parametrize("network", ["critic", "actor"])
def test_layer_products_equal_vmap_and_loop(network, architecture):
    """Every registered architecture: task-specific parameters (heads, embeddings) get
    gradient from their own task only, on every path."""
    modes = (
        ("layers", "vmap", "loop")
        if covers(agent("vmap", architecture).critic)
        else ("vmap", "loop")
    )
    results = {m: network_grads(agent(m, architecture), network) for m in modes}
    ref_G, ref_losses, _ = results["loop"]
    for mode in modes[:-1]:
        G, losses, _ = results[mode]
        torch.testing.assert_close(losses, ref_losses)
        for block, ref in zip(G.blocks, ref_G.blocks, strict=True):
            assert block.shape == ref.shape
            torch.testing.assert_close(block, ref, atol=1e-6, rtol=1e-5)
    # every task's gradient is its own: rows differ and none is zero
    gram = ref_G.gramian()
    assert (gram.diagonal() > 0).all() and not torch.allclose(gram[0], gram[1])


def test_auto_picks_layer_products_for_mtsac_networks():
    assert agent("auto").task_grad_modes == {"critic": "layers", "actor": "layers"}
    assert agent("vmap").task_grad_modes == {"critic": "vmap", "actor": "vmap"}


GRADIENT_METHODS = [
    n
    for n in list_aggregators()
    if aggregator_class(n).kind == "gradient"
    and aggregator_class(n).__module__.startswith("mtrl.")
    and n not in ("mean", "sum")
]
"""Built-in methods that form per-task gradients (loss methods take one fused backward)."""


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_training_with_layer_products_equals_vmap(name):
    """Three full updates with each method: the same parameters either way (float32 sums in
    another order, so equal to 1e-5; the solvers see Gramians equal to ~1e-7)."""
    agents = [agent(mode, name=name) for mode in ("layers", "vmap")]
    for a in agents:
        torch.manual_seed(3)
        for step in range(3):
            a.update(replay_batch(T, B, OBS, ACT, seed=step))
    for p, q in zip(agents[0].actor.parameters(), agents[1].actor.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    for p, q in zip(agents[0].critic.parameters(), agents[1].critic.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)


class TwoLayer(nn.Module):
    def __init__(self, norm: bool = False) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 7), nn.Linear(7, 2, bias=False)
        self.norm = nn.LayerNorm(7) if norm else nn.Identity()

    def forward(self, x):
        return self.b(torch.tanh(self.norm(self.a(x))))


def regression_losses(model: nn.Module):
    """Per-task squared errors of ``model`` on batches (x [T, B, 5], y [T, B, 2])."""

    def losses(params, batch):
        pred = functional_call(model, params, (batch[0].reshape(T * B, 5),)).view(T, B, 2)
        return ((pred - batch[1]) ** 2).mean(dim=(1, 2))

    return losses


def assert_equal_to_the_loop(G, model: nn.Module, losses, batch) -> None:
    """Every block's task t equals the gradient of task t's loss alone (zero where unused)."""
    for t in range(T):
        model.zero_grad()
        losses(dict(model.named_parameters()), batch)[t].backward()
        for block, p in zip(G.blocks, model.parameters(), strict=True):
            torch.testing.assert_close(block[t], torch.zeros_like(p) if p.grad is None else p.grad)


def test_torch_linear_layers_and_coverage():
    model = TwoLayer()
    batch = torch.randn(T, B, 5), torch.randn(T, B, 2)
    losses = regression_losses(model)
    assert_equal_to_the_loop(layer_task_grads(losses, model, batch, T)[0], model, losses, batch)
    assert covers(model) and not covers(TwoLayer(norm=True))
    with pytest.raises(ValueError, match="needs a network made of layers with a rule"):
        from mtrl.agents.sac import _task_grad_mode

        _task_grad_mode("layers", TwoLayer(norm=True))


class Reused(nn.Module):
    """One layer applied twice, and a layer the loss never reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.unused = nn.Linear(5, 5), nn.Linear(5, 2), nn.Linear(3, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(torch.tanh(self.a(x)))))


def test_gradients_fill_one_matrix_summing_reused_layers_and_zeroing_unused_ones():
    model = Reused()
    batch = torch.randn(T, B, 5), torch.randn(T, B, 2)
    losses = regression_losses(model)
    G, _, _ = layer_task_grads(losses, model, batch, T)
    matrix = G.matrix()
    assert matrix.shape == (T, sum(p.numel() for p in model.parameters()))
    start = matrix.data_ptr()
    for block, view in zip(G.blocks, G.views(), strict=True):  # views, read without copies
        assert start <= block.data_ptr() < start + matrix.numel() * matrix.element_size()
        assert view.data_ptr() == block.data_ptr()
    assert_equal_to_the_loop(G, model, losses, batch)
    assert not G.blocks[-1].any() and not G.blocks[-2].any()  # unused: zero
    # into a reused matrix holding NaN everywhere: every entry is written again
    workspace = Workspace()
    layer_task_grads(losses, model, batch, T, workspace=workspace)[0].matrix().fill_(torch.nan)
    again = layer_task_grads(losses, model, batch, T, workspace=workspace)[0]
    torch.testing.assert_close(again.matrix(), matrix)


@pytest.mark.parametrize("architecture", ["mlp", "multihead"])
def test_a_reused_workspace_gives_what_fresh_memory_gives(architecture):
    """The second update's gradients go into the first's buffers (no new memory) and equal a
    fresh computation: buffers left over (a task head filled for another task) are cleared."""
    a = agent("layers", architecture)
    workspace = a._workspaces["critic"]
    assert workspace is not None
    batches = [replay_batch(T, B, OBS, ACT, seed=s) for s in range(2)]
    roll = torch.roll(torch.arange(T), 1)  # the second batch maps task t to head t - 1
    for key in ("obs", "next_obs"):
        batches[1][key][..., -T:] = batches[1][key][..., -T:][..., roll]

    def critic_grads(batch, workspace):
        torch.manual_seed(5)
        target = a.critic_targets(batch)
        tb = {"obs": batch["obs"], "action": batch["action"], "target": target}
        return layer_task_grads(a._critic_losses, a.critic, tb, T, workspace=workspace)[0]

    critic_grads(batches[0], workspace)
    held = workspace.nbytes()
    reused = critic_grads(batches[1], workspace)
    assert held > 0 and workspace.nbytes() == held
    for block, ref in zip(reused.blocks, critic_grads(batches[1], None).blocks, strict=True):
        torch.testing.assert_close(block, ref)
