"""Device solvers of PCGrad, CAGrad, IMTL-G, ConFIG, Aligned-MTL, MGDA, UPGrad and DualProj:
equal to the host solvers, no host sync, no data-dependent
shapes (checked by recording the aten ops, and by running on the meta device, which has no data).
"""

import ast
import inspect
import re
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from qpsolvers import solve_qp
from torch.utils._python_dispatch import TorchDispatchMode

from mtrl.confighelp import aggregators_text
from mtrl.errors import MtrlError
from mtrl.surgery import aggregator_class, get_aggregator, list_aggregators, option_specs
from mtrl.surgery.aggregators import LossWeighting, Weighting, device_solvers
from mtrl.surgery.aggregators.aligned_mtl import aligned_mtl_transform
from mtrl.surgery.aggregators.cagrad import CAGrad
from mtrl.surgery.aggregators.conflict_free import config_weights
from mtrl.surgery.aggregators.device_solvers import (
    DUAL_CONE_ITERS,
    MGDA_ITERS,
    aligned_mtl_weights_device,
    cagrad_dual_device,
    cagrad_weights_device,
    config_weights_device,
    dual_cone_weights_device,
    imtl_g_weights_device,
    jacobi_eigh,
    mgda_weights_device,
    pcgrad_weights_device,
    random_order_device,
)
from mtrl.surgery.aggregators.imtl import imtl_g_weights
from mtrl.surgery.aggregators.pcgrad import PCGrad, pcgrad_weights
from mtrl.surgery.aggregators.qp import min_norm_simplex, project_dual_cone
from mtrl.surgery.aggregators.upgrad import dual_gramian
from mtrl.surgery.taskgrads import TaskGradients

SYNC_OPS = {
    "_local_scalar_dense",  # .item(), bool(), float(), int() of a tensor
    "is_nonzero",
    "equal",
    "nonzero",  # data-dependent shapes
    "masked_select",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
}


class NoHostSync(TorchDispatchMode):
    """Records the aten ops run; fails on one that reads a value back to the host or whose
    output shape depends on the data (a sync on a GPU, and not capturable in a CUDA graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops.append(name)
        if name in SYNC_OPS:
            raise AssertionError(f"host sync or data-dependent shape: aten.{name}")
        return func(*args, **(kwargs or {}))


class MetaOnly(TorchDispatchMode):
    """Fails on an op that touches a tensor off the meta device: a host tensor in a device
    computation is a host-to-device copy (a sync on a GPU, refused inside CUDA-graph capture)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [
            x
            for x in torch.utils._pytree.tree_leaves((args, kwargs or {}))
            if isinstance(x, torch.Tensor)
        ]
        for x in tensors:
            if x.device.type != "meta":
                raise AssertionError(f"aten.{func.overloadpacket.__name__} on {x.device}")
        return func(*args, **(kwargs or {}))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def problem(tasks: int, params: int, kind: str, scale: float, seed: int) -> torch.Tensor:
    """Task gradients [T, P]: iid Gaussian rows of norms spread over 10x, or strong conflicts
    (a shared part and three times larger task parts, a third of the rows negated and rescaled,
    the last row nearly opposite to the first)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "iid":
        G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
        G = G * (0.3 + 2.7 * torch.rand(tasks, 1, generator=gen, dtype=torch.float64))
    else:
        shared = torch.randn(params, generator=gen, dtype=torch.float64)
        G = shared + 3.0 * torch.randn(tasks, params, generator=gen, dtype=torch.float64)
        k = max(1, tasks // 3)
        G[:k] = -G[:k] * (0.5 + torch.rand(k, 1, generator=gen, dtype=torch.float64))
        if tasks >= 3:
            G[-1] = -0.8 * G[0] + 0.1 * torch.randn(params, generator=gen, dtype=torch.float64)
    return G * scale


CASES = [
    (tasks, params, kind, scale, c)
    for tasks in (2, 3, 5, 10, 50)
    for params in (tasks // 2 + 1, 40, 2000)
    for kind in ("iid", "conflict")
    for scale in (1e-4, 1e4)
    for c in (0.4, 0.5, 0.9)
]


# --- PCGrad ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [2, 3, 5, 10, 50])
@pytest.mark.parametrize("order", ["per_task", "shared"])
def test_pcgrad_device_coefficients_equal_the_numpy_ones(tasks, order):
    host = PCGrad(order=order, seed=tasks)
    gen = torch.Generator().manual_seed(tasks)
    for params in (tasks // 2 + 1, 40):
        G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
        G[1] = -0.5 * G[0]  # a conflict
        if tasks > 2:
            G[2] = 0.0  # a zero gradient never conflicts
        gram = G @ G.T
        orders = host.random_order(tasks)
        expected = torch.from_numpy(pcgrad_weights(gram.numpy(), orders))
        got = pcgrad_weights_device(gram, torch.from_numpy(orders))
        assert got.dtype == torch.float64
        assert (got - expected).abs().max() <= 1e-12 * expected.abs().max()


@pytest.mark.parametrize("tasks", [1, 2, 3, 6, 13])
def test_random_orders_visit_every_other_task_once(tasks):
    for shared in (False, True):
        rows = random_order_device(tasks, shared, "cpu")
        assert rows.shape == (tasks, tasks - 1) and rows.dtype == torch.long
        rows = rows.tolist()
        for i in range(tasks):
            assert sorted(rows[i]) == [t for t in range(tasks) if t != i]
        if shared:  # one permutation, every task skipping itself
            for i in range(tasks):
                for k in range(tasks):
                    assert [j for j in rows[i] if j != k] == [j for j in rows[k] if j != i]


def test_random_orders_are_uniform_fresh_draws_or_repeat_a_generator():
    # per task: each of the 2 orders of the other two tasks about half of the time
    firsts = torch.stack([random_order_device(3, False, "cpu")[:, 0] for _ in range(2000)])
    share = (firsts == torch.tensor([1, 0, 0])).double().mean(dim=0)
    assert ((share - 0.5).abs() < 0.05).all()
    # shared: every permutation of 4 tasks appears (u before t in the row of a third task)
    seen = set()
    for _ in range(400):
        rows = random_order_device(4, True, "cpu").tolist()

        def before(u, t, rows=rows):
            third = rows[next(i for i in range(4) if i not in (u, t))]
            return third.index(u) < third.index(t)

        seen.add(
            tuple(sorted(range(4), key=lambda t: sum(before(u, t) for u in range(4) if u != t)))
        )
    assert len(seen) == 24
    a = random_order_device(8, False, "cpu", torch.Generator().manual_seed(1))
    b = random_order_device(8, False, "cpu", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, random_order_device(8, False, "cpu"))


@pytest.mark.parametrize("order", ["per_task", "shared"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_pcgrad_device_path_matches_the_host_function_for_the_same_orders(order, reduction):
    gen = torch.Generator().manual_seed(5)
    G = torch.randn(7, 30, generator=gen, dtype=torch.float64)
    G[3] = -G[0] + 0.1 * G[3]
    agg = get_aggregator("pcgrad", order=order, reduction=reduction, solver="device")
    agg.device_generator = torch.Generator().manual_seed(9)
    result = agg.aggregate(G)
    orders = random_order_device(7, order == "shared", "cpu", torch.Generator().manual_seed(9))
    expected = pcgrad_weights((G @ G.T).numpy(), orders.numpy()).sum(axis=0)
    expected = torch.from_numpy(expected / (7 if reduction == "mean" else 1))
    assert torch.allclose(result.weights, expected, rtol=0, atol=1e-12 * expected.abs().max())
    assert torch.allclose(result.direction, expected @ G, rtol=1e-12, atol=0)
    assert torch.equal(result.gram, G @ G.T)  # the Gramian stays on G's device, float64


def test_pcgrad_device_path_draws_the_same_outcomes_as_the_host():
    # two tasks have one order: equal; three tasks have 8 order choices, each an outcome
    G = torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1]], dtype=torch.float64)
    host, device = get_aggregator("pcgrad", seed=0), get_aggregator("pcgrad", solver="device")
    assert torch.allclose(host(G), device(G), rtol=1e-14, atol=0)
    G = torch.tensor([[1.0, 0.3, 0.0], [-0.7, 1.0, 0.2], [-0.5, -0.8, 1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    outcomes = {}
    for agg in (host, device):
        draws = [tuple(agg(G).round(decimals=9).tolist()) for _ in range(300)]
        outcomes[agg.solver] = set(draws)
    assert outcomes["auto"] == outcomes["device"] and len(outcomes["auto"]) > 2


def test_pcgrad_auto_is_the_host_path_on_the_cpu():
    G = torch.randn(6, 20, dtype=torch.float64)
    auto, host = get_aggregator("pcgrad", seed=4), get_aggregator("pcgrad", seed=4, solver="host")
    for _ in range(3):
        assert torch.equal(auto(G), host(G))
    assert auto.state_dict()["rng"] == host.state_dict()["rng"]


# --- CAGrad ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [2, 3, 5, 10, 50])
def test_cagrad_device_direction_matches_slsqp(tasks):
    """36 random problems per T (180 in all): the direction's cosine with the host's (SLSQP)
    is above 0.9999 everywhere (worst seen 1 - 1.3e-6, where SLSQP itself is 1e-6 off the
    exact optimum); where the dual has one solution (T <= P) the weights agree too."""
    cases = [case for case in CASES if case[0] == tasks]
    for index, (_, params, kind, scale, c) in enumerate(cases):
        G = problem(tasks, params, kind, scale, seed=1000 * tasks + index)
        gram = G @ G.T
        host = CAGrad(c=c, rescale=0).weights(gram)
        device = cagrad_weights_device(gram, c)
        assert cosine(device @ G, host @ G) >= 0.9999, (params, kind, scale, c)
        if tasks <= params:
            assert (device - host).abs().max() <= 3e-3 * host.abs().max(), (params, kind, c)


def test_cagrad_device_finds_lower_dual_values_than_slsqp_when_one_task_dominates():
    # one gradient 1e6 times the others: SLSQP stops early (direction cosine 0.87 with the
    # exact solution); the device solver's dual value is the lower one, so the better
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(4, 30, generator=gen, dtype=torch.float64)
    G[2] = -G[1]
    G[0] *= 1e6
    gram = G @ G.T
    a = gram / gram.diagonal().mean()
    for c in (0.4, 0.9):
        s = c * float(a.mean().sqrt()) + 1e-8

        def dual(w, s=s):
            return float(w @ a.mean(dim=1) + s * torch.sqrt(w @ a @ w + 1e-8))

        agg = CAGrad(c=c)
        agg.weights(gram)
        assert dual(cagrad_dual_device(a, c)) < dual(torch.from_numpy(agg.last_dual))


@pytest.mark.parametrize("params", [1, 2, 3])
def test_cagrad_device_with_many_more_tasks_than_parameters(params):
    # 50 tasks in 1-3 dimensions: many breakpoints along the solver's grid; still the
    # optimum (SLSQP's is 1e-8 off)
    gen = torch.Generator().manual_seed(params)
    for c in (0.4, 0.9):
        G = torch.randn(50, params, generator=gen, dtype=torch.float64)
        gram = G @ G.T
        host = CAGrad(c=c, rescale=0).weights(gram)
        assert cosine(cagrad_weights_device(gram, c) @ G, host @ G) >= 1 - 1e-7


def test_cagrad_device_degenerate_gramians():
    gen = torch.Generator().manual_seed(2)
    gram = torch.randn(5, 9, generator=gen, dtype=torch.float64)
    gram = gram @ gram.T
    mean = torch.full((5,), 0.2, dtype=torch.float64)
    assert torch.equal(cagrad_weights_device(gram, 0.0), mean)  # c = 0: exactly the mean
    for rescale, divisor in ((0, 1.0), (1, 1 + 0.4**2), (2, 1.4)):
        zero = cagrad_weights_device(torch.zeros(5, 5, dtype=torch.float64), 0.4, rescale=rescale)
        assert torch.equal(zero, mean / divisor)
    bad = gram.clone()
    bad[1, 1] = float("nan")
    assert torch.equal(cagrad_weights_device(bad, 0.4), mean)  # the host path raises first
    bad[1, 1] = float("inf")
    assert torch.equal(cagrad_weights_device(bad, 0.4), mean)
    # the optimum at a zero gradient (the others agree with the mean): g_w = 0, so the exact
    # direction is the mean gradient; the host's is within its tolerance
    G = torch.randn(3, 30, generator=gen, dtype=torch.float64).abs()
    G[1] = 0.0
    for c in (0.4, 0.9):
        device = cagrad_weights_device(G @ G.T, c) @ G
        assert torch.allclose(device, G.mean(dim=0), rtol=1e-12, atol=0)
        host = CAGrad(c=c, rescale=0).weights(G @ G.T) @ G
        assert (device - host).abs().max() <= 1e-6 * host.abs().max()
    # duplicated, collinear and opposite tasks
    a, b = torch.randn(2, 30, generator=gen, dtype=torch.float64)
    for G in (
        torch.stack([a, a, b, b]),
        torch.stack([a, 2 * a, -0.5 * a]),
        torch.stack([a, -a, b]),
    ):
        for c in (0.4, 0.9):
            host = CAGrad(c=c, rescale=0).weights(G @ G.T) @ G
            assert cosine(cagrad_weights_device(G @ G.T, c) @ G, host) >= 1 - 1e-9


def test_cagrad_support_step_solves_systems_made_singular_by_duplicate_tasks():
    """Duplicate tasks on the solution's support make the support step's system singular:
    whether its factorisation fails depends on rounding (a last pivot of 5e-16 here; the fused
    kernels' sweep gives 0), and where it fails the interpolated answer remains, 4e-2 off
    SLSQP's on a coarse grid of κ. The regularised system is solved as well, so the
    direction is SLSQP's to its accuracy whichever way the rounding goes."""
    G = torch.randn(3, 9, generator=torch.Generator().manual_seed(103), dtype=torch.float64)
    G[1] = G[0]
    gram = G @ G.T
    for c in (0.4, 0.9):
        device = cagrad_weights_device(gram, c, rescale=1, points=16)
        host = CAGrad(c=c).weights(gram)
        gap = float(((device - host) @ G).norm() / G.norm(dim=1).max())
        assert gap <= 1e-5, (c, gap)


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_device_path_through_the_aggregator(rescale):
    gen = torch.Generator().manual_seed(rescale)
    blocks = [torch.randn(6, 4, 5, generator=gen), torch.randn(6, 7, generator=gen)]
    blocks[0][2] = -blocks[0][1]
    host = get_aggregator("cagrad", c=0.5, rescale=rescale)
    device = get_aggregator("cagrad", c=0.5, rescale=rescale, solver="device")
    for G in (TaskGradients(blocks), blocks[1]):
        expected, result = host.aggregate(G), device.aggregate(G)
        assert result.weights.dtype == torch.float32 and torch.equal(result.gram, expected.gram)
        flat = lambda d: torch.cat([x.flatten() for x in d]) if isinstance(d, list) else d  # noqa: E731
        assert cosine(flat(result.direction).double(), flat(expected.direction).double()) > 0.9999
        assert torch.allclose(result.weights, expected.weights, rtol=0, atol=1e-4)
    assert device.last_dual is None and host.last_dual is not None  # set by the host path only


def test_solver_options_are_validated_and_listed():
    assert get_aggregator("cagrad").options()["solver"] == "auto"
    assert get_aggregator("cagrad", device_iters=3).options()["device_iters"] == 3
    assert get_aggregator("pcgrad", solver="host").options()["solver"] == "host"
    with pytest.raises(MtrlError, match="must be auto, host or device"):
        get_aggregator("pcgrad", solver="gpu")
    with pytest.raises(MtrlError, match="must be >= 1"):
        get_aggregator("cagrad", device_iters=0)
    lines = {line.split(":")[0]: line for line in aggregators_text().splitlines()}
    for name in list_aggregators():
        where = re.search(r", (device|host)[,;)]", lines[name]).group(1)
        assert (where == "device") == aggregator_class(name).device_solver, name
        assert (", graph" in lines[name]) == get_aggregator(name).capturable(), name
    assert ", device, graph;" in lines["pcgrad"] and ", device, graph, fused;" in lines["mgda"]
    for name in ("imtl-g", "config", "aligned-mtl"):  # Jacobi in a graph: eager above 16 tasks
        assert ", device, graph up to 16 tasks, fused;" in lines[name], name
    assert ", device;" in lines["graddrop"]  # its own generator: not captured
    assert (
        get_aggregator("mgda").options() == get_aggregator("imtl-g").options() == {"solver": "auto"}
    )


# --- IMTL-G ----------------------------------------------------------------------------------

F64_EPS = float(torch.finfo(torch.float64).eps)
F32_EPS = float(torch.finfo(torch.float32).eps)


def assert_imtl_equal(
    gram: torch.Tensor, tol: float = 1e-10, eps: float = F64_EPS, jacobi: bool = False
) -> None:
    """The device weights equal the host's (the pinv cutoff T eps of the gradients' dtype)."""
    host = torch.from_numpy(imtl_g_weights(gram.numpy(), gram.shape[0] * eps))
    device = imtl_g_weights_device(gram, gram.shape[0] * eps, jacobi=jacobi)
    assert device.dtype == torch.float64
    assert (device - host).abs().max() <= tol * max(float(host.abs().max()), 1.0)


def imtl_gradients(tasks: int, seed: int) -> Iterator[torch.Tensor]:
    """IMTL-G's test problems: G [T, P] with P below and above T, rows of different norms,
    as they are and with a zero, a duplicate or an opposite gradient."""
    gen = torch.Generator().manual_seed(seed)
    for params in (tasks // 2 + 1, tasks + 3, 200):
        for variant in ("plain", "zero", "duplicate", "opposite"):
            G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
            G = G * (0.3 + 2.7 * torch.rand(tasks, 1, generator=gen, dtype=torch.float64))
            if variant == "zero":
                G[tasks // 2] = 0.0
            elif variant == "duplicate" and tasks > 2:
                G[2] = G[0]
            elif variant == "opposite":
                G[-1] = -G[0]
            yield G


@pytest.mark.parametrize("tasks", [2, 3, 5, 10, 50])
def test_imtl_g_device_weights_equal_the_host_ones(tasks):
    # scales 1e-4 and 1e4 too (worst seen 1e-11)
    for G in imtl_gradients(tasks, seed=tasks):
        for scale in (1e-4, 1e4):
            assert_imtl_equal((G * scale) @ (G * scale).T)


@pytest.mark.parametrize("tasks", [1, 2, 3, 10, 16, 50])
def test_jacobi_eigendecomposition(tasks):
    # what torch.linalg.eigh gives (to ordering), orthonormal vectors; a rank-deficient A too,
    # up to the 16 tasks of IMTL-G's graphs (at T = 50 its null space converges more slowly:
    # 2e-10 relative after 10 sweeps, enough for IMTL-G's weights, which drop it)
    gen = torch.Generator().manual_seed(tasks)
    for params in (tasks + 3, tasks // 2 + 1) if tasks <= 16 else (tasks + 3,):
        G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
        a = G @ G.T
        vals, vecs = jacobi_eigh(a)
        scale = float(torch.linalg.eigvalsh(a).abs().max())
        assert (vals.sort().values - torch.linalg.eigvalsh(a)).abs().max() <= 1e-13 * scale
        assert (vecs @ torch.diag(vals) @ vecs.T - a).abs().max() <= 1e-13 * scale
        assert (vecs.T @ vecs - torch.eye(tasks, dtype=torch.float64)).abs().max() <= 1e-14
    # equal diagonals: both rows of a pair must take the same angle (a difference of +0 on one
    # and -0 on the other once gave them opposite ones) for J to stay orthogonal
    a = torch.ones(4, 4, dtype=torch.float64)
    vals, vecs = jacobi_eigh(a)
    assert torch.allclose(vals.sort().values, torch.tensor([0, 0, 0, 4.0], dtype=torch.float64))
    assert torch.allclose(vecs.T @ vecs, torch.eye(4, dtype=torch.float64), atol=1e-15)
    # every pair of rows is rotated once a sweep: with disjoint off-diagonal pairs, one sweep
    a = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
    a[0, 5] = a[5, 0] = a[2, 3] = a[3, 2] = 0.5
    vals = jacobi_eigh(a, sweeps=1)[0]
    assert torch.allclose(vals.sort().values, torch.linalg.eigvalsh(a), rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["imtl-g", "config", "aligned-mtl"])
def test_eigendecompositions_are_jacobi_rotations_in_a_graph(name):
    agg = get_aggregator(name, solver="device")
    agg.check_direction = False  # as with deferred checks
    G = torch.randn(6, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eager = agg.aggregate(G).weights
    agg.in_cuda_graph = True  # set by GraphedUpdate: the capture refuses eigh
    with NoHostSync() as mode:
        graphed = agg.aggregate(G).weights
    assert "atan2" in mode.ops and "_linalg_eigh" not in mode.ops
    assert torch.allclose(graphed, eager, rtol=0, atol=1e-10)


@pytest.mark.parametrize("tasks", [2, 3, 5, 10, 16])
def test_imtl_g_jacobi_weights_equal_the_host_ones(tasks):
    # the eigendecomposition a captured update takes (jacobi_eigh), up to the 16 tasks of
    # IMTL-G's graphs (graph_tasks), float32 Gramians too (worst seen 2e-11)
    for G in imtl_gradients(tasks, seed=100 + tasks):
        assert_imtl_equal(G @ G.T, jacobi=True)
        assert_imtl_equal((G.float() @ G.float().T).double(), eps=F32_EPS, jacobi=True)


def test_imtl_g_device_degenerate_gramians():
    gen = torch.Generator().manual_seed(4)
    a, b, c = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    zero = torch.zeros(20, dtype=torch.float64)
    for G in (
        torch.stack([a, -a]),  # 1ᵀA⁺n = 0: zero weights
        torch.stack([a, a, b]),
        torch.stack([a, 2 * a, -0.5 * a]),
        torch.stack([a, -a, b]),
        torch.stack([a, zero, b, zero]),
        torch.stack([zero, a]),
        torch.stack([a, b, c, a + b]),
        torch.randn(30, 2, generator=gen, dtype=torch.float64),
    ):
        assert_imtl_equal(G @ G.T)
    G = torch.stack([a, zero, b])
    weights = imtl_g_weights_device(G @ G.T, 3 * F64_EPS)
    assert weights[1] == 0.0  # exactly, as the host's
    assert torch.equal(
        imtl_g_weights_device(torch.stack([a, -a]) @ torch.stack([a, -a]).T, 1e-15),
        torch.zeros(2, dtype=torch.float64),
    )
    assert torch.equal(
        imtl_g_weights_device(torch.zeros(4, 4, dtype=torch.float64), 1e-15),
        torch.zeros(4, dtype=torch.float64),
    )


# --- ConFIG and Aligned-MTL (eigendecompositions, as IMTL-G) ---------------------------------


def assert_eigen_weightings_equal(gram: torch.Tensor, eps: float, jacobi: bool) -> None:
    """ConFIG's and Aligned-MTL's (each scale mode) device weights equal the host's to 1e-10
    of the largest (worst seen 1e-12)."""
    pairs = [(config_weights(gram, eps), config_weights_device(gram, eps, jacobi))]
    for mode in ("min", "median", "rmse"):
        host = aligned_mtl_transform(gram, mode, eps).sum(dim=1)
        pairs.append((host, aligned_mtl_weights_device(gram, mode, eps, jacobi)))
    for host, device in pairs:
        assert device.dtype == torch.float64
        assert (device - host).abs().max() <= 1e-10 * max(float(host.abs().max()), 1.0)


@pytest.mark.parametrize("tasks", [2, 3, 10, 16, 50])
def test_config_and_aligned_mtl_device_weights_equal_the_host_ones(tasks):
    # IMTL-G's problems (P below and above T; zero, duplicate, opposite tasks) at scales 1e-4
    # and 1e4, float32 Gramians with float32's cutoff too; Jacobi rotations up to the 16
    # tasks of their graphs
    for G in imtl_gradients(tasks, seed=200 + tasks):
        for jacobi in (False, True) if tasks <= 16 else (False,):
            for scale in (1e-4, 1e4):
                assert_eigen_weightings_equal((G * scale) @ (G * scale).T, F64_EPS, jacobi)
            G32 = G.float()
            assert_eigen_weightings_equal((G32 @ G32.T).double(), F32_EPS, jacobi)


def test_config_and_aligned_mtl_device_degenerate_gramians():
    gen = torch.Generator().manual_seed(4)
    a, b, c = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    zero = torch.zeros(20, dtype=torch.float64)
    for G in (
        torch.stack([a, -a]),
        torch.stack([a, a, b]),
        torch.stack([a, 2 * a, -0.5 * a]),
        torch.stack([a, zero, b, zero]),
        torch.stack([zero, a]),
        torch.stack([a, b, c, a + b]),
        torch.randn(30, 2, generator=gen, dtype=torch.float64),
        torch.zeros(4, 20, dtype=torch.float64),  # ConFIG: zero weights; Aligned-MTL: B = I
    ):
        for jacobi in (False, True):
            assert_eigen_weightings_equal(G @ G.T, F64_EPS, jacobi)
    zeros = torch.zeros(4, 4, dtype=torch.float64)
    assert torch.equal(config_weights_device(zeros, F64_EPS), torch.zeros(4, dtype=torch.float64))
    assert torch.equal(
        aligned_mtl_weights_device(zeros, "median", F64_EPS), torch.ones(4, dtype=torch.float64)
    )


# --- MGDA ------------------------------------------------------------------------------------


MGDA_CASES = [
    (tasks, params, kind, scale)
    for tasks in (2, 3, 5, 10, 50)
    for params in (tasks // 2 + 1, 40, 2000)
    for kind in ("iid", "conflict")
    for scale in (1e-4, 1e4)
]


def test_mgda_device_direction_matches_the_exact_solution():
    """120 random problems (60 cases, 2 draws each): the direction's cosine with the host's
    exact (NNLS) one is 1 - 1e-15 at worst where the min-norm point is not ~0; where it is
    (13 problems: T > P, or strong conflicts), both directions are ~0 next to the gradients
    (the device's below 1e-11 of the largest gradient)."""
    small = 0
    for index, (tasks, params, kind, scale) in enumerate(2 * MGDA_CASES):
        G = problem(tasks, params, kind, scale, seed=5000 + index)
        gram = G @ G.T
        host = torch.from_numpy(min_norm_simplex(gram.numpy())) @ G
        device = mgda_weights_device(gram) @ G
        size = float(G.norm(dim=1).max())
        if host.norm() < 1e-6 * size:
            small += 1
            assert device.norm() <= 1e-9 * size, (tasks, params, kind, scale)
        else:
            assert cosine(device, host) >= 0.9999, (tasks, params, kind, scale)
            assert (device - host).norm() <= 1e-9 * size, (tasks, params, kind, scale)
    assert 0 < small < len(MGDA_CASES)


def degenerate_gradients(seed: int) -> list[torch.Tensor]:
    """Task gradients [T, 30] (or [50, 1 or 2]) with duplicate, collinear, opposite and zero
    tasks, all gradients in one orthant, one gradient 1e6 times the others (MGDA's direction
    then ~1e-6 of it), and more tasks than parameters."""
    gen = torch.Generator().manual_seed(seed)
    a, b, c = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    zero = torch.zeros(30, dtype=torch.float64)
    return [
        torch.stack([a, a, b, b]),
        torch.stack([a, 2 * a, -0.5 * a]),
        torch.stack([a, -a, b]),
        torch.stack([a, zero, b]),
        torch.stack([a, 3 * a]),
        torch.stack([a.abs(), b.abs(), c.abs()]),
        torch.stack([1e6 * a, b, c]),
        torch.randn(50, 1, generator=gen, dtype=torch.float64),
        torch.randn(50, 2, generator=gen, dtype=torch.float64).abs(),
    ]


def test_mgda_device_degenerate_gramians():
    for G in degenerate_gradients(seed=2):
        host = torch.from_numpy(min_norm_simplex((G @ G.T).numpy())) @ G
        device = mgda_weights_device(G @ G.T) @ G
        size = float(G.norm(dim=1).max())
        if host.norm() < 1e-9 * size:  # the min-norm point is 0
            assert device.norm() <= 1e-12 * size
        else:
            assert cosine(device, host) >= 1 - 1e-8
    uniform = torch.full((4,), 0.25, dtype=torch.float64)
    assert torch.equal(mgda_weights_device(torch.zeros(4, 4, dtype=torch.float64)), uniform)
    bad = torch.eye(4, dtype=torch.float64)
    bad[1, 1] = float("nan")
    assert torch.equal(mgda_weights_device(bad), uniform)  # the host path raises first


# --- UPGrad and DualProj --------------------------------------------------------------------


def dual_cone_targets(kind: str, tasks: int) -> torch.Tensor:
    """UPGrad's targets (each task's 1/T) or DualProj's (the mean's weights), [K, T]."""
    if kind == "upgrad":
        return torch.eye(tasks, dtype=torch.float64) / tasks
    return torch.full((1, tasks), 1.0 / tasks, dtype=torch.float64)


def dual_cone_directions(G: torch.Tensor, kind: str, reg_eps: float) -> tuple:
    """(host, device) directions of UPGrad or DualProj with norm_eps 1e-4."""
    gram, targets = G @ G.T, dual_cone_targets(kind, G.shape[0])
    a = dual_gramian(gram.numpy(), 1e-4, reg_eps)
    host = torch.from_numpy(project_dual_cone(a, targets.numpy()).sum(axis=0)) @ G
    device = dual_cone_weights_device(gram, targets, reg_eps, 1e-4).sum(dim=0) @ G
    return host, device


def test_dual_cone_device_directions_match_the_exact_projections():
    """240 random problems (60 cases, 2 draws, UPGrad and DualProj, regularised and exact):
    the directions are within 2e-9 of the largest gradient of the host's exact (NNLS) ones,
    and at cosine 1 - 1e-12 or better where they are not ~0."""
    small = 0
    for index, (tasks, params, kind, scale) in enumerate(2 * MGDA_CASES):
        G = problem(tasks, params, kind, scale, seed=7000 + index)
        size = float(G.norm(dim=1).max())
        for method in ("upgrad", "dualproj"):
            for reg_eps in (1e-4, 0.0):
                host, device = dual_cone_directions(G, method, reg_eps)
                where = (tasks, params, kind, scale, method, reg_eps)
                assert (device - host).norm() <= 1e-8 * size, where
                if host.norm() < 1e-6 * size:
                    small += 1
                else:
                    assert cosine(device, host) >= 1 - 1e-12, where
    assert 0 < small < len(MGDA_CASES)


def test_dual_cone_device_degenerate_gramians():
    """Exact to ~1e-14 of the largest gradient against the primal projection (quadprog on
    min ‖d - uᵀG‖² subject to G d >= 0), except with opposite tasks and no regularisation
    (``[a, -a, b]``, reg_eps = 0: v is not unique, the support step's system singular, and the
    interior-point answer stands, 2e-8 off). With a gradient 1e6 times the others and
    reg_eps = 0, the host's NNLS is 8e-4 off (its tie-break 1e-14 tr(A) is large next to the
    small tasks' entries); the device's, relative to each task's own scale, is not."""
    for G in degenerate_gradients(seed=4):
        size = float(G.norm(dim=1).max())
        for method in ("upgrad", "dualproj"):
            targets = dual_cone_targets(method, G.shape[0]).numpy()
            for reg_eps in (1e-4, 0.0):
                _, device = dual_cone_directions(G, method, reg_eps)
                if reg_eps == 0:
                    G_ = G.numpy()
                    exact = sum(
                        solve_qp(
                            np.eye(G_.shape[1]),
                            -(u @ G_),
                            -G_,
                            np.zeros(len(G_)),
                            solver="quadprog",
                        )
                        for u in targets
                    )
                else:  # the regularised projection has no primal form: the host's NNLS
                    exact = dual_cone_directions(G, method, reg_eps)[0].numpy()
                tol = 1e-7 if (reg_eps == 0 and torch.equal(G[1], -G[0])) else 1e-12
                error = np.linalg.norm(device.numpy() - exact)
                assert error <= tol * size, (G.shape, method, reg_eps, error / size)
    # a zero Gramian, or one that is not finite (the host path raises first): the targets
    for gram in (torch.zeros(4, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)):
        gram[1, 1] = gram[1, 1] * float("nan") if gram.any() else 0.0
        for method in ("upgrad", "dualproj"):
            targets = dual_cone_targets(method, 4)
            for reg_eps in (1e-4, 0.0):
                assert torch.equal(dual_cone_weights_device(gram, targets, reg_eps, 1e-4), targets)


@pytest.mark.parametrize("name", ["mgda", "imtl-g", "config", "aligned-mtl", "upgrad", "dualproj"])
def test_weighting_device_paths_through_the_aggregator(name):
    gen = torch.Generator().manual_seed(7)
    blocks = [torch.randn(6, 4, 5, generator=gen), torch.randn(6, 7, generator=gen)]
    blocks[0][2] = -blocks[0][1]
    for dtype in (torch.float32, torch.float64):
        blocks = [x.to(dtype) for x in blocks]
        host, device = get_aggregator(name, solver="host"), get_aggregator(name, solver="device")
        for G in (TaskGradients(blocks), blocks[1]):
            expected, result = host.aggregate(G), device.aggregate(G)
            assert result.weights.dtype == dtype and torch.equal(result.gram, expected.gram)
            flat = lambda d: torch.cat([x.flatten() for x in d]) if isinstance(d, list) else d  # noqa: E731
            got, want = flat(result.direction).double(), flat(expected.direction).double()
            assert cosine(got, want) > 1 - 1e-6
            tol = 1e-5 if dtype == torch.float32 else 1e-10
            assert torch.allclose(result.weights, expected.weights, rtol=0, atol=tol)


# --- no host sync ----------------------------------------------------------------------------


MARKER_OP = {
    "pcgrad": "scatter_add_",
    "cagrad": "linalg_cholesky_ex",
    "mgda": "linalg_cholesky_ex",
    "imtl-g": "_linalg_eigh",
    "config": "_linalg_eigh",
    "aligned-mtl": "_linalg_eigh",
    "upgrad": "linalg_cholesky_ex",
    "dualproj": "linalg_cholesky_ex",
    "sdmgrad": "sort",  # its projections onto the simplex
    "gradvac": "scatter_",  # its targets, updated in place
    "moco": "lerp_",  # its tracked gradients
}
MORE_OPTIONS = {
    "pcgrad": {"order": "shared"},
    "cagrad": {"rescale": 2},
    "aligned-mtl": {"scale_mode": "median"},  # a sort of the kept eigenvalues
}


@pytest.mark.parametrize("name", list(MARKER_OP))
def test_device_paths_do_not_sync_with_the_host(name):
    gen = torch.Generator().manual_seed(0)
    G = torch.randn(5, 12, generator=gen)
    blocks = TaskGradients([torch.randn(5, 3, 4, generator=gen), torch.randn(5, 2, generator=gen)])
    for options in ({}, MORE_OPTIONS.get(name, {})):
        for grads in (G, blocks):  # a fresh aggregator each (MoCo tracks one shape)
            agg = get_aggregator(name, solver="device", **options)
            agg.check_direction = False  # as with deferred checks: the caller checks later
            with NoHostSync() as mode:
                agg.aggregate(grads)
            assert MARKER_OP[name] in mode.ops
        # the detector works: the host path reads the Gramian back
        agg = get_aggregator(name, solver="host", **options)
        agg.check_direction = False
        with pytest.raises(AssertionError, match="host sync"), NoHostSync():
            agg.aggregate(G)


@pytest.mark.parametrize("name", list(MARKER_OP))
def test_device_paths_run_on_the_meta_device(name):
    # meta tensors have no data: .item(), .cpu(), .numpy() and .tolist() all fail on them,
    # and MetaOnly fails on any host tensor (a copy to the device); off the CPU, solver=auto
    # takes the device path in an update replayed from a CUDA graph
    def captured():  # a fresh one for each gradient form (MoCo tracks one shape)
        agg = get_aggregator(name)
        agg.check_direction = False
        agg.in_cuda_graph = True
        return agg

    with MetaOnly():
        result = captured().aggregate(torch.empty(6, 10, device="meta"))
    assert result.direction.shape == (10,) and result.direction.device.type == "meta"
    blocks = TaskGradients([torch.empty(6, 3, 4, device="meta"), torch.empty(6, 2, device="meta")])
    agg = captured()
    with MetaOnly():
        assert [d.shape for d in agg.aggregate(blocks).direction] == [(3, 4), (2,)]
    # the detector works: a host tensor in the computation
    with pytest.raises(AssertionError, match="on cpu"), MetaOnly():
        torch.empty(3, device="meta") + torch.ones(3)


def test_fairgrad_sgd_takes_the_device_path_in_a_graph():
    # its ``solver`` option names its algorithm: with sgd (fixed steps) a captured update
    # takes the device path, as solver=auto does for the others; least_squares (scipy) stays
    # on the host. 4 ops, then 23 a step (one of them a view) for 19 steps and a last one that
    # only evaluates (7): a fixed sequence
    agg = get_aggregator("fairgrad")
    assert agg.placement == "host" and agg.capturable()
    agg.check_direction = False
    agg.in_cuda_graph = True
    assert agg.placement == "device"
    host_only = get_aggregator("fairgrad", solver="least_squares")
    host_only.in_cuda_graph = True
    assert host_only.placement == "host" and not host_only.runs_on_device()
    with MetaOnly():
        assert agg.aggregate(torch.empty(6, 10, device="meta")).direction.shape == (10,)
    G = torch.randn(5, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with NoHostSync() as mode:
        agg.aggregate(G)  # on the CPU too
    assert "linalg_vector_norm" in mode.ops
    gen = torch.Generator().manual_seed(2)
    grams = [g @ g.T for g in 0.05 * torch.randn(2, 10, 40, generator=gen, dtype=torch.float64)]
    sequences = []
    for gram in grams:
        with NoHostSync() as mode:
            agg.device_weights(gram)
        sequences.append(mode.ops)
    assert sequences[0] == sequences[1] and len(sequences[0]) == 4 + 23 * 19 + 7


@pytest.mark.parametrize(
    "distribution", ["normal", "uniform", "dirichlet", "bernoulli", "constrained_bernoulli"]
)
def test_rlw_in_a_captured_update_draws_on_the_gpu_without_the_host(distribution):
    """In a captured update (``in_cuda_graph``) the weights are drawn on the update's device
    (meta here: any host tensor in the draw fails), as torch's generator there draws them at
    every replay; the seeded generator is left as it was. On the CPU the seeded generator
    draws, captured or not. ``bernoulli`` redraws on the host and is not captured."""
    agg = get_aggregator("rlw", seed=2, distribution=distribution)
    agg.in_cuda_graph = True
    agg.check_direction = False  # as with deferred checks
    state = agg.generator.get_state()
    if distribution == "bernoulli":
        assert not agg.capturable()
        return
    assert agg.capturable()
    meta = torch.device("meta")
    with MetaOnly():
        assert agg.fixed_weights(5, meta).shape == (5,)
        assert agg.aggregate(torch.empty(5, 7, device=meta)).direction.shape == (7,)
    assert torch.equal(agg.generator.get_state(), state)
    seeded = get_aggregator("rlw", seed=2, distribution=distribution)
    assert torch.equal(agg.fixed_weights(5, torch.device("cpu")), seeded.fixed_weights(5))


def test_device_solvers_make_no_tensors_from_host_data():
    # torch.tensor(...) and the like copy host data to the device (refused in CUDA-graph
    # capture), and bypass the dispatcher, so the checks above cannot see them
    source = inspect.getsource(device_solvers)
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
    }
    host = {"tensor", "new_tensor", "as_tensor", "from_numpy", "numpy", "item", "tolist", "cpu"}
    assert not calls & host


@pytest.mark.parametrize("name", sorted(list_aggregators()))
def test_methods_listed_as_device_do_not_sync(name):
    cls = aggregator_class(name)
    if not cls.device_solver:
        return
    # solver=device where the option takes it; a class whose ``solver`` option names an
    # algorithm (FairGrad) takes its device path in a captured update on any device
    placement = getattr(cls, "placement", None)
    forced = "solver" in option_specs(name) and placement in (None, Weighting.placement)
    agg = get_aggregator(name, seed=0, **({"solver": "device"} if forced else {}))
    agg.check_direction = False
    agg.in_cuda_graph = not forced
    if issubclass(cls, Weighting):
        assert cls.device_weights is not Weighting.device_weights
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(4, 9, generator=gen)
    losses = torch.rand(4, generator=gen) + 0.5
    with NoHostSync():
        if issubclass(cls, LossWeighting):
            agg.weights(losses)
        agg.aggregate(G)


def test_device_solver_counts_are_fixed():
    # the aten ops (kernels on a GPU) do not depend on the data: a fixed sequence per shape
    def ops(gram):
        with NoHostSync() as mode:
            cagrad_weights_device(gram, 0.5)
        return mode.ops

    gen = torch.Generator().manual_seed(3)
    grams = [g @ g.T for g in torch.randn(2, 10, 40, generator=gen, dtype=torch.float64)]
    grams.append(torch.zeros(10, 10, dtype=torch.float64))
    assert ops(grams[0]) == ops(grams[1]) == ops(grams[2])
    assert np.isfinite(cagrad_weights_device(grams[2], 0.5).numpy()).all()
    # MGDA: 105 aten ops around 58 per interior-point step (1033 at 16 steps); IMTL-G: 48, one
    # of them the eigendecomposition, or in a graph 93 around 21 per Jacobi round (12 of them
    # kernels; T - 1 = 9 rounds a sweep, 8 sweeps), ConFIG 85 and Aligned-MTL 86 (median)
    # around the same rounds; a dual-cone projection (UPGrad: 10 at once, DualProj: 1): 112
    # around 47 per step (1052 at 20 steps)
    grams.append(torch.stack([grams[0][0]] * 10))  # ten identical tasks
    upgrad, dualproj = dual_cone_targets("upgrad", 10), dual_cone_targets("dualproj", 10)
    # PCGrad: 18 aten ops around 5 per step (two of them kernels), T - 1 steps
    order = random_order_device(10, False, "cpu", torch.Generator().manual_seed(5))
    for solve, count in (
        (lambda gram: pcgrad_weights_device(gram, order), 18 + 5 * 9),
        (lambda gram: mgda_weights_device(gram), 105 + 58 * MGDA_ITERS),
        (lambda gram: imtl_g_weights_device(gram, 1e-15), 48),
        (lambda gram: imtl_g_weights_device(gram, 1e-15, jacobi=True), 93 + 21 * 8 * 9),
        (lambda gram: config_weights_device(gram, 1e-15, jacobi=True), 85 + 21 * 8 * 9),
        (
            lambda gram: aligned_mtl_weights_device(gram, "median", 1e-15, jacobi=True),
            86 + 21 * 8 * 9,
        ),
        (
            lambda gram: dual_cone_weights_device(gram, upgrad, 1e-4, 1e-4),
            112 + 47 * DUAL_CONE_ITERS,
        ),
        (
            lambda gram: dual_cone_weights_device(gram, dualproj, 0.0, 1e-4),
            112 + 47 * DUAL_CONE_ITERS,
        ),
    ):
        sequences = []
        for gram in grams:
            with NoHostSync() as mode:
                solve(gram)
            sequences.append(mode.ops)
        assert all(seq == sequences[0] for seq in sequences) and len(sequences[0]) == count
