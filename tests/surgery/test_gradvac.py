"""GradVac: torchjd and LibMTL's loop on the same task orders, targets, state, edge cases."""

import io
import itertools

import numpy as np
import pytest
import torch
from matrices import SIZES
from torchjd.aggregation import GradVac as TorchJDGradVac

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators.device_solvers import gradvac_weights_device, random_order_device
from mtrl.surgery.aggregators.gradvac import gradvac_coefficients
from mtrl.surgery.taskgrads import TaskGradients


def random_G(tasks: int, params: int, gen: torch.Generator) -> torch.Tensor:
    G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
    G[1] = -0.5 * G[0] + 0.5 * G[1]  # a conflict, so that the method acts
    return G * (0.3 + 2.7 * torch.rand(tasks, 1, generator=gen, dtype=torch.float64))


def torchjd_orders(tasks: int) -> np.ndarray:
    """The task orders torchjd's GradVacWeighting draws from torch's global generator."""
    others = [[j for j in range(tasks) if j != i] for i in range(tasks)]
    return np.array(
        [[others[i][k] for k in torch.randperm(tasks - 1).tolist()] for i in range(tasks)]
    )


def libmtl_gradvac(rows: list[torch.Tensor], targets: torch.Tensor, order, beta: float):
    """LibMTL's GradVac.backward loop on the vectors, one group per block (``all_matrix``);
    ``targets`` [T, T, B] is updated in place."""
    grads = torch.cat(rows, dim=1)
    pc_grads = grads.clone()
    bounds = np.cumsum([0] + [r.shape[1] for r in rows])
    for i in range(len(grads)):
        for j in order[i]:
            for k, (beg, end) in enumerate(itertools.pairwise(bounds)):
                pc, g = pc_grads[i, beg:end], grads[j, beg:end]
                rho = torch.dot(pc, g) / (pc.norm() * g.norm() + 1e-8)
                target = targets[i, j, k]
                if rho < target:
                    w = (
                        pc.norm()
                        * (target * (1 - rho**2).sqrt() - rho * (1 - target**2).sqrt())
                        / (g.norm() * (1 - target**2).sqrt() + 1e-8)
                    )
                    pc_grads[i, beg:end] += g * w
                targets[i, j, k] = (1 - beta) * target + beta * rho
    return pc_grads.sum(0)


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_whole_matches_torchjd_over_several_updates(tasks, params):
    # Same orders, same formulas; the error is rounding, amplified where T > P packs many
    # corrections into few dimensions (worst seen 3e-9 relative, at T=50, P=3).
    for seed in range(1 if tasks == 50 else 2):  # torchjd loops over the T² pairs in Python
        gen = torch.Generator().manual_seed(seed)
        reference, targets = TorchJDGradVac(beta=0.3), np.zeros((1, tasks, tasks))
        for step in range(3):
            G = random_G(tasks, params, gen)
            torch.manual_seed(100 * seed + step)
            expected = reference(G)
            torch.manual_seed(100 * seed + step)
            order = torchjd_orders(tasks)
            coeffs = gradvac_coefficients((G @ G.T).numpy()[None], targets, order, beta=0.3)
            ours = torch.from_numpy(coeffs[0].sum(axis=0)) @ G
            atol = 1e-7 * float(expected.norm())
            torch.testing.assert_close(ours, expected, rtol=0, atol=atol)


def test_aggregator_follows_its_random_orders():
    gen = torch.Generator().manual_seed(1)
    agg, twin = get_aggregator("gradvac", seed=4, beta=0.2), get_aggregator("gradvac", seed=4)
    targets = np.zeros((1, 6, 6))
    for _ in range(3):
        G = random_G(6, 20, gen)
        coeffs = gradvac_coefficients((G @ G.T).numpy()[None], targets, twin.random_order(6), 0.2)
        expected = torch.from_numpy(coeffs[0].sum(axis=0)) @ G
        torch.testing.assert_close(agg(G), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(agg.targets, targets, rtol=1e-12, atol=1e-12)
    for row, others in enumerate(twin.random_order(6)):
        assert sorted(others.tolist()) == [t for t in range(6) if t != row]


@pytest.mark.parametrize("tasks", [2, 5, 10])
def test_layer_matches_libmtl_per_tensor_loop(tasks):
    gen = torch.Generator().manual_seed(tasks)
    shapes = [(4, 3), (7,), (2, 2, 5)]
    agg = get_aggregator("gradvac", seed=3, beta=0.3, granularity="layer")
    twin = get_aggregator("gradvac", seed=3)
    targets = torch.zeros(tasks, tasks, len(shapes), dtype=torch.float64)
    for _ in range(3):
        blocks = [torch.randn(tasks, *s, generator=gen, dtype=torch.float64) for s in shapes]
        blocks[0][1] = 0.2 * blocks[0][1] - blocks[0][0]  # a conflict in one block only
        rows = [b.reshape(tasks, -1) for b in blocks]
        expected = libmtl_gradvac(rows, targets, twin.random_order(tasks), 0.3)
        direction = agg(TaskGradients(blocks))
        for block, shape in zip(direction, shapes, strict=True):
            assert block.shape == shape
        ours = torch.cat([d.reshape(-1) for d in direction])
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(agg.targets, targets.permute(2, 0, 1).numpy(), atol=1e-12)


def test_whole_granularity_of_one_block_equals_layer():
    G = random_G(5, 30, torch.Generator().manual_seed(0))
    whole, layer = (
        get_aggregator("gradvac", seed=1),
        get_aggregator("gradvac", seed=1, granularity="layer"),
    )
    for _ in range(3):
        torch.testing.assert_close(whole(G), layer(G), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tasks", [2, 5, 10])
def test_cosine_reaches_the_target_where_it_acts(tasks):
    """After its step on pair (i, j) the cosine of g_i's vaccinated gradient with g_j is its
    target; for the last task i visits (no later step) that is the final cosine."""
    gen = torch.Generator().manual_seed(tasks)
    rng = np.random.default_rng(tasks)
    for _ in range(5):
        G = random_G(tasks, 20, gen)
        old = rng.uniform(-0.5, 0.9, size=(1, tasks, tasks))
        targets = old.copy()
        order = np.stack(
            [rng.permutation([j for j in range(tasks) if j != i]) for i in range(tasks)]
        )
        vaccinated = (
            torch.from_numpy(gradvac_coefficients((G @ G.T).numpy()[None], targets, order, 0.1)[0])
            @ G
        )
        unit = G / G.norm(dim=1, keepdim=True)
        for i in range(tasks):
            last = order[i, -1]
            cosine = float(vaccinated[i] @ unit[last] / vaccinated[i].norm())
            assert cosine >= old[0, i, last] - 1e-7
        if tasks == 2:  # one step each: the cosine is max(original, target), the EMA moves
            cosines = (unit @ unit.T).numpy()
            for i, j in ((0, 1), (1, 0)):
                cosine = float(vaccinated[i] @ unit[j] / vaccinated[i].norm())
                assert cosine == pytest.approx(max(cosines[i, j], old[0, i, j]), abs=1e-7)
                assert targets[0, i, j] == pytest.approx(
                    0.9 * old[0, i, j] + 0.1 * cosines[i, j], abs=1e-7
                )


def test_first_update_with_zero_targets_is_pcgrad():
    G = random_G(8, 30, torch.Generator().manual_seed(2))
    gradvac, pcgrad = get_aggregator("gradvac", seed=5), get_aggregator("pcgrad", seed=5)
    torch.testing.assert_close(gradvac(G), pcgrad(G), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("granularity", ["whole", "layer"])
def test_reproducible_from_the_seed_and_the_state(granularity):
    gen = torch.Generator().manual_seed(0)
    grads = [TaskGradients([random_G(6, 12, gen), random_G(6, 5, gen)]) for _ in range(6)]
    first = get_aggregator("gradvac", seed=7, granularity=granularity)
    again = get_aggregator("gradvac", seed=7, granularity=granularity)
    for G in grads[:3]:
        for a, b in zip(first(G), again(G), strict=True):
            assert torch.equal(a, b)
    buffer = io.BytesIO()
    torch.save({"surgery": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["surgery"]
    resumed = get_aggregator("gradvac", seed=99, granularity=granularity)
    resumed.load_state_dict(state)
    for G in grads[3:]:
        for a, b in zip(first(G), resumed(G), strict=True):
            assert torch.equal(a, b)
    fresh = get_aggregator("gradvac", seed=8, granularity=granularity)
    other = get_aggregator("gradvac", granularity=granularity)
    other.load_state_dict(fresh.state_dict())  # before any update: no targets yet
    assert torch.equal(fresh(grads[0])[0], other(grads[0])[0])
    outputs = {
        tuple(get_aggregator("gradvac", seed=s)(grads[0].matrix()).tolist()) for s in range(5)
    }
    assert len(outputs) > 1  # the orders matter


def test_identical_gradients_give_T_times_the_gradient():
    g = torch.randn(1, 40, dtype=torch.float64)
    for granularity in ("whole", "layer"):
        agg = get_aggregator("gradvac", seed=0, beta=0.5, granularity=granularity)
        for _ in range(3):
            torch.testing.assert_close(agg(g.repeat(5, 1)), 5 * g[0])


def test_single_task_zero_gradients_and_new_task_count():
    g = torch.randn(1, 5)
    assert torch.equal(get_aggregator("gradvac", seed=0)(g), g[0])
    for granularity in ("whole", "layer"):
        agg = get_aggregator("gradvac", seed=0, beta=0.5, granularity=granularity)
        G = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
        for _ in range(3):  # the zero gradient is skipped, never divided by
            assert torch.isfinite(agg(G)).all()
        assert torch.equal(agg(torch.zeros(3, 4)), torch.zeros(4))
        agg(torch.randn(4, 6))  # another task count restarts the targets
        assert agg.targets.shape[1:] == (4, 4)


@pytest.mark.parametrize("granularity", ["whole", "layer"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_raise_and_leave_the_targets(granularity, bad):
    agg = get_aggregator("gradvac", seed=0, granularity=granularity)
    agg(torch.randn(3, 4))
    before = agg.targets.copy()
    G = torch.ones(3, 4)
    G[1, 2] = bad
    with pytest.raises(NonFiniteGradientError, match="task 1"):
        agg(G)
    assert np.array_equal(agg.targets, before)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beta": "abc"}, r"gradvac.beta='abc': expected a number"),
        ({"beta": 1.5}, r"gradvac.beta=1.5: must be <= 1"),
        ({"granularity": "cell"}, r"gradvac.granularity='cell': must be whole or layer"),
        (
            {"granularity": "layer", "solver": "device"},
            r"^gradvac: solver=device needs granularity=whole \(layer: the host\)$",
        ),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(MtrlError, match=message):
        get_aggregator("gradvac", **options)


@pytest.mark.parametrize("tasks", [2, 3, 10, 50])
def test_device_path_takes_the_host_steps_and_keeps_its_targets(tasks):
    """``gradvac_weights_device`` (solver=device, a CUDA graph's path) against
    ``gradvac_coefficients`` with the same orders over several updates: the weights and the
    targets it updates in place within 1e-8 (observed <= 2e-10), through zero and opposite
    tasks; then an aggregator's device state restored from its checkpoint continues exactly as
    the original does, and a host aggregator picks it up."""
    host_targets = np.zeros((1, tasks, tasks))
    device_targets = torch.zeros(tasks, tasks, dtype=torch.float64)
    for call in range(6):
        G = random_G(tasks, 2 * tasks + 3, torch.Generator().manual_seed(call))
        G[0] *= 0.0 if call == 2 else 1.0
        G[-1] = -G[0] if call == 3 else G[-1]
        gram = G @ G.T
        order = random_order_device(tasks, False, "cpu", torch.Generator().manual_seed(call))
        want = gradvac_coefficients(gram.numpy()[None], host_targets, order.numpy(), 0.5)
        got = gradvac_weights_device(gram, device_targets, order, 0.5)
        np.testing.assert_allclose(got.numpy(), want.sum(axis=1)[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(device_targets.numpy(), host_targets[0], rtol=0, atol=1e-8)
    original = get_aggregator("gradvac", solver="device", beta=0.5, seed=1)
    G = random_G(tasks, 7, torch.Generator().manual_seed(9))
    original.aggregate(G)
    assert original.targets is None and original.device_targets is not None
    restored = get_aggregator("gradvac", solver="device", beta=0.5, seed=1)
    restored.load_state_dict(original.state_dict())
    results = []
    for agg in (original, restored):
        torch.manual_seed(4)  # the device path's orders
        results.append(agg.aggregate(G).weights)
    assert torch.equal(results[0], results[1])
    host = get_aggregator("gradvac", solver="host", beta=0.5, seed=1)
    host.load_state_dict(original.state_dict())
    assert np.array_equal(host.targets[0], original.device_targets.numpy())
