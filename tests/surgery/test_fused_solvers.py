"""The simplex interior-point solvers' Triton kernels (``fused_solvers``, ``fused_ip``) against
the torch solvers they replace and the host's: the same steps, so the same objective and, after
the exact support steps, the same directions. On a machine without a GPU the kernels run in
Triton's interpreter (``TRITON_INTERPRET=1``, set by the tests' conftest before triton is
imported); on a GPU they are compiled and run there."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matrices import random_G

pytest.importorskip("triton", reason="the fused solvers' kernels need triton (mtrl-bench[fused])")

from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.surgery import get_aggregator
from mtrl.surgery.aggregators.cagrad import CAGrad
from mtrl.surgery.aggregators.device_solvers import (
    _REG,
    cagrad_weights_device,
    imtl_g_weights_device,
    jacobi_eigh,
    mgda_weights_device,
    simplex_qp_device,
)
from mtrl.surgery.aggregators.fused_ip import jacobi_eigh_fused, simplex_qp_fused
from mtrl.surgery.aggregators.imtl import imtl_g_weights
from mtrl.surgery.aggregators.qp import min_norm_simplex
from mtrl.surgery.aggregators.solver_check import (
    check_gramians,
    direction_gap,
    fused_mismatch,
    solver_mismatch,
)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F64 = {"dtype": torch.float64, "device": DEVICE}


def hessians(problems: int, tasks: int, params: int, seed: int) -> torch.Tensor:
    """[K, T, T] Gramians at unit mean diagonal plus the solvers' regulariser: singular where
    T > params, as the Gramians of more tasks than parameters are."""
    G = torch.stack([random_G(tasks, params, seed + k) for k in range(problems)]).to(DEVICE)
    H = G @ G.mT
    H = H / H.diagonal(dim1=1, dim2=2).mean(dim=1)[:, None, None]
    return H + _REG * torch.eye(tasks, **F64)


def test_fused_kernels_compile_for_the_gpu_without_spilling():
    """The interpreter runs code the compiler may reject: compiled for sm_90 (H100/H200) on
    any machine, with the tools that come with triton, every kernel builds at T = 10, 32 and
    50 and keeps the values of its steps and pivots in registers: no spill code that runs at
    every step or pivot. (The first form of the simplex kernel spilled in its step loop at
    T = 32 and 50; at T = 50 an H200 measured it slower than the torch solver.)"""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "fused_kernels.py"
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, str(script), "--check", "--tasks", "10", "32", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check: no spill code at every pivot or step" in done.stdout


@pytest.mark.parametrize(("tasks", "params"), [(3, 5), (10, 40), (10, 4), (50, 20)])
def test_fused_simplex_steps_reach_the_torch_solvers_objective(tasks, params):
    """The torch solver's steps: the same objective to 1e-9, and in the interpreter the same
    iterates to rounding where the Newton systems are well conditioned. (Where the Gramian is
    singular, T > P, rounding moves the iterates along its null space; on a GPU the kernel's
    fused multiply-adds let them converge past where the torch solver's rounding stalls.)"""
    problems = 1 if tasks == 50 else 4
    H = hessians(problems, tasks, params, seed=tasks + params)
    gen = torch.Generator().manual_seed(tasks)
    p = 0.3 * torch.randn(problems, tasks, generator=gen, dtype=torch.float64).to(DEVICE)
    expected = simplex_qp_device(H, p, 12)
    fused = simplex_qp_fused(H, p, 12)
    objectives = [
        0.5 * ((x.unsqueeze(1) @ H).squeeze(1) * x).sum(dim=1) + (p * x).sum(dim=1)
        for x in (expected[0], fused[0])
    ]
    assert objectives[0].abs().max() > 1e-3  # a solved problem, not zeros on both sides
    assert torch.allclose(objectives[1], objectives[0], rtol=1e-9, atol=1e-12)
    if params >= tasks and DEVICE == "cpu":
        for want, got in zip(expected, fused, strict=True):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-11)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy: IEEE inf in the interpreter
@pytest.mark.parametrize("tasks", [3, 9])
def test_whole_solve_kernels_give_the_torch_solvers_weights(tasks):
    """CAGrad's two launches (the κ grid's QPs, then one program for the cell, the support
    steps and the weights) and MGDA's one compute what the torch device solvers compute: the
    same directions to 1e-9 of the largest gradient on the check problems (conflicting, T > P,
    a zero task, a duplicate task; where T > P the weights are not unique and both solvers'
    directions are up to 6e-10 from the exact one), through every rescale mode and a 3-point
    grid (masked in a 4-wide block); and for a zero or non-finite Gramian the same mean or
    uniform weights, exactly."""
    for index, gram in enumerate(check_gramians(tasks, DEVICE).values()):
        for c, rescale in [(0.9, 1), (0.4, 0), (2.0, 2)][: 3 if index == 0 else 1]:
            want = cagrad_weights_device(gram, c, rescale=rescale, points=3)
            got = cagrad_weights_device(gram, c, rescale=rescale, points=3, fused=True)
            assert direction_gap(gram, want, got) <= 1e-9, (c, rescale)
        want, got = mgda_weights_device(gram), mgda_weights_device(gram, fused=True)
        assert direction_gap(gram, want, got) <= 1e-9
    for bad in (0.0, torch.nan, torch.inf) if tasks == 3 else ():
        gram = torch.full((tasks, tasks), bad, **F64)
        for fused in (False, True):
            assert torch.equal(
                cagrad_weights_device(gram, 0.9, rescale=1, points=3, fused=fused),
                torch.full((tasks,), 1 / tasks / (1 + 0.9**2), **F64),
            )
            assert torch.equal(
                mgda_weights_device(gram, fused=fused), torch.full((tasks,), 1 / tasks, **F64)
            )


def host_directions(G: torch.Tensor) -> dict[str, torch.Tensor]:
    """The host solvers' directions (CPU, float64): CAGrad's (c = 0.5, SLSQP) and MGDA's
    (exact NNLS)."""
    G = G.cpu()
    gram = G @ G.T
    return {
        "cagrad": CAGrad(c=0.5).weights(gram) @ G,
        "mgda": torch.from_numpy(min_norm_simplex(gram.numpy())) @ G,
    }


def device_directions(G: torch.Tensor, fused: bool) -> dict[str, torch.Tensor]:
    """The device solvers' directions, with the torch solvers or the Triton kernels."""
    gram = G @ G.T
    directions = {
        "cagrad": cagrad_weights_device(gram, 0.5, points=8, fused=fused) @ G,
        "mgda": mgda_weights_device(gram, fused=fused) @ G,
    }
    return {name: d.cpu() for name, d in directions.items()}


def assert_both_match_the_host(G: torch.Tensor) -> None:
    """The torch solvers and the Triton kernels both give the host's MGDA direction within
    1e-8 of the largest gradient; CAGrad's two agree (SLSQP is less exact than either where
    one task dominates, see test_device_solvers). Each error is named in the message."""
    size = float(G.norm(dim=1).max())
    host = host_directions(G)
    found = {fused: device_directions(G.to(DEVICE), fused) for fused in (False, True)}
    for name, want in host.items():
        errors = {fused: float((d[name] - want).norm()) / size for fused, d in found.items()}
        message = f"{name} T={G.shape[0]}: torch {errors[False]:.1e}, fused {errors[True]:.1e}"
        if name == "cagrad":  # SLSQP is off where one task dominates: against the torch solver
            assert cosine(found[True][name], found[False][name]) >= 1 - 1e-9, message
        else:
            assert max(errors.values()) <= 1e-8, message


@pytest.mark.parametrize(("tasks", "params"), [(5, 40), (10, 6)])
def test_fused_solvers_give_the_host_solvers_directions(tasks, params):
    G = random_G(tasks, params, seed=tasks)
    G[: tasks // 3] *= -1  # conflicting tasks
    assert_both_match_the_host(G)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy: IEEE inf in the interpreter
def test_fused_solvers_on_degenerate_gramians():
    gen = torch.Generator().manual_seed(3)
    a, b, c = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    zero = torch.zeros(30, dtype=torch.float64)
    for G in (  # duplicate, opposite and zero tasks; one 1e6 times the others; T > P
        torch.stack([a, a, b, b]),
        torch.stack([a, -a, b]),
        torch.stack([a, zero, b]),
        torch.stack([1e6 * a, b, c]),
        torch.randn(12, 2, generator=gen, dtype=torch.float64),
    ):
        assert_both_match_the_host(G)


@pytest.mark.parametrize("tasks", [2, 3, 10, 16])
def test_fused_jacobi_rotations_give_the_torch_rotations_eigendecomposition(tasks):
    """The kernel's rounds are ``jacobi_eigh``'s (its angles from tan θ, not atan2): the same
    eigenvalues to rounding and orthonormal eigenvectors that rebuild A (a null space has no
    unique ones), batched, on full-rank and rank-deficient Gramians, and IMTL-G's weights
    within 1e-10 of the host's through it."""
    gen = torch.Generator().manual_seed(tasks)
    grams = [
        (G @ G.T).to(DEVICE)
        for params in (tasks + 3, tasks // 2 + 1)
        for G in [torch.randn(tasks, params, generator=gen, dtype=torch.float64)]
    ]
    vals, vecs = jacobi_eigh_fused(torch.stack(grams), 10)
    for a, got_vals, got_vecs in zip(grams, vals, vecs, strict=True):
        want_vals = jacobi_eigh(a, sweeps=10)[0]
        scale = float(a.diagonal().sum())
        order, want_order = got_vals.argsort(), want_vals.argsort()
        assert torch.allclose(got_vals[order], want_vals[want_order], rtol=0, atol=1e-13 * scale)
        assert torch.allclose(got_vecs @ torch.diag(got_vals) @ got_vecs.T, a, atol=1e-13 * scale)
        eye = torch.eye(tasks, dtype=torch.float64, device=DEVICE)
        assert torch.allclose(got_vecs.T @ got_vecs, eye, rtol=0, atol=1e-14)
        host = torch.from_numpy(imtl_g_weights(a.cpu().numpy(), tasks * 2.2e-16))
        fused = imtl_g_weights_device(a, tasks * 2.2e-16, jacobi=True, fused=True).cpu()
        assert (fused - host).abs().max() <= 1e-10 * max(float(host.abs().max()), 1.0)
    with pytest.raises(ValueError, match="up to 16 tasks, not 17"):
        jacobi_eigh_fused(torch.eye(17, dtype=torch.float64, device=DEVICE), 1)


def test_fused_solvers_setting():
    from mtrl.agents.graphed import fuses_solver

    def fused(name: str, setting: bool | str, tasks: int = 10) -> bool:
        return fuses_solver(get_aggregator(name, solver="device"), setting, tasks)

    # auto: CAGrad (measured faster on an H200, training updates matching the torch solver's);
    # true: MGDA, UPGrad, DualProj and the Jacobi kernel's methods too (not yet run on a GPU,
    # but MGDA's); no kernels for the rest
    assert fused("cagrad", "auto") and not fused("mgda", "auto") and fused("mgda", True)
    for name in ("imtl-g", "config", "aligned-mtl", "upgrad", "dualproj"):
        assert fused(name, True) and not fused(name, "auto")
    assert not any(fused(m, True) for m in ("pcgrad", "sdmgrad", "gradvac"))
    assert not fused("cagrad", False)
    # auto: up to 16 tasks (at T = 50 the kernels were slower on an H200); true: any number
    assert fused("cagrad", "auto", 16) and not fused("cagrad", "auto", 17)
    assert fused("cagrad", True, 50)
    for overrides in (
        ["fused_solvers=true"],
        ["device=cuda", "compile=false", "fused_solvers=true"],
    ):
        with pytest.raises(MtrlError, match="fused_solvers=true needs device=cuda and compile"):
            resolve_config("quickstart", overrides)
    assert resolve_config("quickstart", []).fused_solvers == "auto"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy: IEEE inf in the interpreter
def test_the_kernels_pass_the_check_a_captured_update_makes_before_it_fuses():
    """What ``GraphedUpdate`` checks on the device before it takes the kernels: MGDA's,
    UPGrad's and DualProj's, and the Jacobi kernel of IMTL-G, ConFIG and Aligned-MTL through
    ``fused_mismatch`` (their copies on the captured path), CAGrad's through the same
    comparison on 4 values of κ (its 256 programs take minutes in the interpreter; on a GPU
    one launch); at 6 tasks, as the interpreter is slow. On a GPU this is the test that finds
    a kernel the card computes wrongly where the interpreter is exact, as an earlier orthant
    kernel was for UPGrad where T > P (now among the check's problems)."""
    for name in ("mgda", "upgrad", "dualproj", "imtl-g", "config", "aligned-mtl"):
        aggregator = get_aggregator(name, solver="device")
        assert fused_mismatch(aggregator, 6, DEVICE) is None, name
        assert not aggregator.fused_solver and not aggregator.in_cuda_graph  # left as they were

    def cagrad(fused: bool):
        return lambda gram: cagrad_weights_device(gram, 0.9, points=4, fused=fused)

    assert solver_mismatch(cagrad(False), cagrad(True), check_gramians(6, DEVICE)) is None


def test_the_fused_solvers_check_finds_solvers_that_disagree():
    """The check's comparison fails on another problem's solution: CAGrad with c = 0.5 where
    c = 0.9 was asked (a direction some 1e-1 off), and on a solver that gives NaN; and a
    kernel that cannot run at all (IMTL-G's above 16 tasks) fails the check with its error
    instead of stopping the run."""

    def cagrad(c: float):
        return lambda gram: cagrad_weights_device(gram, c, points=8)

    gramians = check_gramians(6, DEVICE)
    mismatch = solver_mismatch(cagrad(0.9), cagrad(0.5), gramians)
    assert mismatch is not None and mismatch.startswith("on conflicting tasks its direction was")
    gap = float(mismatch.split("was ")[1].split(" ")[0])
    assert 1e-2 < gap < 1, mismatch
    nan = solver_mismatch(cagrad(0.9), lambda gram: gram[0] * torch.nan, gramians)
    assert nan == "on conflicting tasks its direction was nan (relative) off the torch solver's"
    too_many = fused_mismatch(get_aggregator("imtl-g", solver="device"), 17, DEVICE)
    assert (
        too_many == "they did not run: ValueError: jacobi_eigh_fused takes up to 16 tasks, not 17"
    )
