"""The vectorised per-task gradient engine against the per-task loop on a real MLP."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtrl.surgery import get_aggregator, per_task_grads, write_grads
from mtrl.surgery.taskgrads import TaskGradients

TASKS, BATCH, IN = 5, 16, 12


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(IN, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
    )


def regression_batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(TASKS, BATCH, IN, generator=gen)
    y = torch.randn(TASKS, BATCH, 1, generator=gen)
    return x, y


def mse_loss(model: nn.Module):
    """One task's regression loss as a function of (params, (x, y))."""

    def loss_fn(p, batch):
        xb, yb = batch
        return ((functional_call(model, p, (xb,)) - yb) ** 2).mean()

    return loss_fn


def test_vmap_equals_loop_and_manual_backward():
    model = make_model()
    params = dict(model.named_parameters())
    x, y = regression_batch()

    loss_fn = mse_loss(model)

    G = per_task_grads(loss_fn, params, (x, y))
    G_loop = per_task_grads(loss_fn, params, (x, y), mode="loop")
    assert G.shape == (TASKS, sum(p.numel() for p in params.values()))
    torch.testing.assert_close(G, G_loop, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in params.values())  # the engine never touches .grad
    # the gradient of task 2 by an ordinary backward
    model.zero_grad()
    ((model(x[2]) - y[2]) ** 2).mean().backward()
    manual = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(G[2], manual, rtol=1e-5, atol=1e-6)


def test_mean_of_task_grads_is_grad_of_mean_loss():
    model = make_model()
    params = dict(model.named_parameters())
    x, y = regression_batch()

    def loss_fn(p, batch):
        return ((functional_call(model, p, (batch["x"],)) - batch["y"]) ** 2).mean()

    G = per_task_grads(loss_fn, params, {"x": x, "y": y}, chunk_size=2)
    model.zero_grad()
    ((model(x) - y) ** 2).mean(dim=(1, 2)).mean().backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(get_aggregator("mean")(G), expected, rtol=1e-5, atol=1e-6)


def test_losses_and_aux_are_stacked_per_task():
    model = make_model()
    params = dict(model.named_parameters())
    x, y = regression_batch()

    def loss_fn(p, batch):
        xb, yb = batch
        pred = functional_call(model, p, (xb,))
        return ((pred - yb) ** 2).mean(), {"pred_mean": pred.mean()}

    for mode in ("vmap", "loop"):
        G, losses, aux = per_task_grads(
            loss_fn, params, (x, y), has_aux=True, return_losses=True, mode=mode
        )
        with torch.no_grad():
            expected = ((model(x) - y) ** 2).mean(dim=(1, 2))
            pred_means = model(x).mean(dim=(1, 2))
        torch.testing.assert_close(losses, expected)
        torch.testing.assert_close(aux["pred_mean"], pred_means)
        assert G.shape[0] == TASKS


def test_captured_modules_get_no_gradient_and_random_ops_work():
    actor, critic = make_model(), make_model()
    params = dict(actor.named_parameters())
    x, _ = regression_batch()

    def loss_fn(p, xb):
        noise = torch.randn(xb.shape[0], 1)
        action = functional_call(actor, p, (xb,)) + 0.1 * noise
        return -critic(xb * action).mean()

    G = per_task_grads(loss_fn, params, x)
    assert torch.isfinite(G).all() and G.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.grad is None for p in actor.parameters())


def test_write_grads_fills_grad_for_an_optimizer():
    model = make_model()
    params = dict(model.named_parameters())
    direction = torch.arange(sum(p.numel() for p in params.values()), dtype=torch.float32)
    write_grads(params, direction)
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in model.parameters()]), direction)
    write_grads(params, direction, accumulate=True)
    torch.testing.assert_close(
        torch.cat([p.grad.flatten() for p in model.parameters()]), 2 * direction
    )
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="direction must have shape"):
        write_grads(params, direction[:-1])


def test_mismatched_task_axes_raise():
    model = make_model()
    params = dict(model.named_parameters())
    with pytest.raises(ValueError, match="same leading task axis"):
        per_task_grads(lambda p, b: b[0].sum(), params, (torch.ones(3, 2), torch.ones(4, 2)))


def test_blocked_gradients_match_flat_ones_through_aggregators():
    model = make_model()
    params = dict(model.named_parameters())
    x, y = regression_batch()

    loss_fn = mse_loss(model)

    flat = per_task_grads(loss_fn, params, (x, y))
    blocks = per_task_grads(loss_fn, params, (x, y), flat=False)
    assert blocks.num_tasks == TASKS and blocks.num_params == flat.shape[1]
    torch.testing.assert_close(blocks.matrix(), flat)
    torch.testing.assert_close(blocks.gramian(), (flat @ flat.T).double(), rtol=1e-5, atol=1e-5)
    for name in ("mean", "pcgrad", "cagrad"):
        d_flat = get_aggregator(name, **({"seed": 0} if name == "pcgrad" else {}))(flat)
        d_blocks = get_aggregator(name, **({"seed": 0} if name == "pcgrad" else {}))(blocks)
        assert [tuple(d.shape) for d in d_blocks] == [tuple(p.shape) for p in params.values()]
        torch.testing.assert_close(torch.cat([d.flatten() for d in d_blocks]), d_flat)
        model.zero_grad()
        write_grads(params, d_blocks)
        torch.testing.assert_close(
            torch.cat([p.grad.flatten() for p in model.parameters()]), d_flat
        )


def test_owned_directions_become_grads_without_a_copy():
    """A weighting's direction, combined by the base class, is new memory and is taken as
    ``.grad`` as is; a direction an aggregator builds itself (MoCo's) is copied, since the base
    class cannot know what else holds it (a clipping step scales ``.grad`` in place)."""
    model = make_model()
    params = dict(model.named_parameters())
    G = TaskGradients([torch.randn(3, *p.shape) for p in params.values()])
    owned = get_aggregator("pcgrad", seed=0).aggregate(G)
    assert owned.owned
    write_grads(params, owned.direction, adopt=owned.owned)
    for p, d in zip(params.values(), owned.direction, strict=True):
        assert p.grad.data_ptr() == d.data_ptr()
    moco = get_aggregator("moco").aggregate(G)
    assert not moco.owned
    model.zero_grad(set_to_none=True)
    write_grads(params, moco.direction, adopt=moco.owned)
    for p, d in zip(params.values(), moco.direction, strict=True):
        torch.testing.assert_close(p.grad, d)
        assert p.grad.data_ptr() != d.data_ptr()
