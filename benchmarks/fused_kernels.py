"""The fused solvers' Triton kernels (``mtrl/surgery/aggregators/fused_ip.py``) as a GPU runs
them: compiled for an NVIDIA architecture (sm_90, H100/H200, by default) on any machine, no GPU
needed, with the tools that come with the ``triton`` package (ptxas, cuobjdump, nvdisasm).

For each kernel at each T it prints the registers and spilled bytes per thread and the
machine instructions (SASS) of its loops: one pivot of the sweep (the inner loop), one
interior-point step (the step loop's own instructions plus T pivots), and what one program
executes in a whole solve (every instruction times the passes of the loops around it: 12
CAGrad steps, 16 MGDA steps, T pivots per sweep, 10 Jacobi sweeps; branches counted as
taken). These are static counts of the code, a guide to what a GPU executes, not a timing: a
program is one or a few warps working through a long chain of dependent instructions, so
fewer instructions and no spills should mean a faster kernel, but only a GPU says by how
much. On a GPU (``--time``) it also times the simplex kernel on the problems CAGrad solves
(256 of T x T) and the whole CAGrad and MGDA solves with CUDA events.

``--against`` compiles a second version of the kernels side by side, from a git revision or a
file, and prints the ratios (the earlier version's count over this one's).

    python benchmarks/fused_kernels.py                         # T = 10 and 50, sm_90
    python benchmarks/fused_kernels.py --against f91cff9       # before / now side by side
    python benchmarks/fused_kernels.py --time --against old_fused_ip.py   # on a GPU
    python benchmarks/fused_kernels.py --check     # exit 1 if a step or pivot spills
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the GPU default (fused multiply-adds)
if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("fused_kernels.py compiles the kernels: unset TRITON_INTERPRET")

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mtrl.surgery.aggregators.device_solvers import (  # noqa: E402
    CAGRAD_ITERS,
    DUAL_CONE_ITERS,
    MGDA_ITERS,
    jacobi_sweeps,
)

MODULE = "mtrl/surgery/aggregators/fused_ip.py"
TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
SIMPLEX = {"h_ptr": "*fp64", "p_ptr": "*fp64", "x_ptr": "*fp64", "z_ptr": "*fp64"}
SIMPLEX |= {"tasks": "i32", "iters": "i32"}
CAGRAD = {"g_ptr": "*fp64", "x_ptr": "*fp64", "z_ptr": "*fp64"}
CAGRAD |= {"below_ptr": "*i32"}
CAGRAD_STEPS = CAGRAD | {"tasks": "i32", "points": "i32", "iters": "i32"}
CAGRAD_TAIL = CAGRAD | {"out_ptr": "*fp64", "tasks": "i32", "points": "i32"}
MGDA = {"g_ptr": "*fp64", "out_ptr": "*fp64", "tasks": "i32", "iters": "i32"}
DUAL_CONE = {"g_ptr": "*fp64", "u_ptr": "*fp64", "v_ptr": "*fp64", "tasks": "i32", "iters": "i32"}
JACOBI = {"a_ptr": "*fp64", "vals_ptr": "*fp64", "vecs_ptr": "*fp64", "tasks": "i32"}
JACOBI |= {"sweeps": "i32"}
"""The kernels' run-time arguments and their types, in order (their constants follow)."""
Tensor = torch.Tensor


@dataclass
class Compiled:
    """What one kernel compiles to: registers and spilled bytes per thread, its SASS
    instruction count and its loops (each the first and last instruction's index)."""

    registers: int
    spilled: int
    instructions: int
    loops: list[tuple[int, int]]
    spills: list[int]
    """The local-memory loads and stores (spill code), as instruction indices."""

    def _nests(self, loop: tuple[int, int]) -> bool:
        return any(loop[0] <= a and b <= loop[1] and (a, b) != loop for a, b in self.loops)

    @property
    def inner(self) -> int:
        """Instructions of one pass of an innermost loop (a pivot, or a Jacobi round)."""
        return min(b - a + 1 for a, b in self.loops)

    def outer(self, passes: int) -> int | None:
        """Instructions of one pass of the outer loop with ``passes`` passes of the inner one
        (an interior-point step with its T pivots, a Jacobi sweep with its rounds); None
        without nested loops."""
        nesting = [loop for loop in self.loops if self._nests(loop)]
        if not nesting:
            return None
        a, b = nesting[0]
        return (b - a + 1) - self.inner + passes * self.inner

    def hot_spills(self, outer_loops: tuple[str, ...]) -> int:
        """Spill accesses in the code that runs at every pivot or step: inside an innermost
        loop or a loop around others other than the support candidates' (``OUTER_LOOPS``)."""
        nesting = sorted(loop for loop in self.loops if self._nests(loop))
        cold = {
            loop for loop, kind in zip(nesting, outer_loops, strict=True) if kind == "candidates"
        }
        hot = [loop for loop in self.loops if loop not in cold]
        return sum(any(a <= index <= b for a, b in hot) for index in self.spills)

    def executed(
        self, outer_passes: tuple[int, ...], inner_passes: int, spills: bool = False
    ) -> int:
        """Instructions one program executes (with ``spills``, spill accesses only): each
        once for every pass of each loop around it (``outer_passes`` for the loops around
        others, in the code's order, ``inner_passes`` for an innermost one)."""
        nesting = sorted(loop for loop in self.loops if self._nests(loop))
        if len(nesting) != len(outer_passes):
            raise ValueError(f"{len(nesting)} loops around others, {len(outer_passes)} passes")
        outer = dict(zip(nesting, outer_passes, strict=True))
        passes = [outer.get(loop, inner_passes) for loop in self.loops]
        total = 0
        for index in self.spills if spills else range(self.instructions):
            count = 1
            for (a, b), n in zip(self.loops, passes, strict=True):
                if a <= index <= b:
                    count *= n
            total += count
        return total


def load_version(source: str) -> ModuleType:
    """The kernels' module from this checkout (``""``), a file, or a git revision."""
    if not source:
        from mtrl.surgery.aggregators import fused_ip

        return fused_ip
    path = Path(source)
    if not path.is_file():
        text = subprocess.run(
            ["git", "show", f"{source}:{MODULE}"], cwd=ROOT, capture_output=True, text=True
        )
        if text.returncode != 0:
            sys.exit(f"--against {source}: neither a file nor a git revision with {MODULE}")
        path = Path(tempfile.mkdtemp()) / ("fused_ip_" + re.sub(r"\W", "_", source) + ".py")
        path.write_text(text.stdout)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # triton reads the kernels' source through their module
    spec.loader.exec_module(module)
    return module


def compile_kernel(
    kernel: object, arguments: dict[str, str], constants: dict[str, object], warps: int, arch: int
) -> Compiled:
    """Compile ``kernel`` for sm_``arch`` and read its resources and SASS."""
    signature = {**arguments, **{name: "constexpr" for name in constants}}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
    binary = triton.compile(
        source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps}
    )
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(binary.asm["cubin"])
        cubin.flush()
        usage = _tool("cuobjdump", "--dump-resource-usage", cubin.name)
        sass = _tool("nvdisasm", "-c", cubin.name)
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage)
    if found is None:
        sys.exit(f"cuobjdump printed no resource usage:\n{usage}")
    instructions = re.findall(r"^\s+/\*([0-9a-f]+)\*/\s+([^;]*);", sass, re.M)
    spills = [i for i, (_, text) in enumerate(instructions) if re.search(r"\b(LDL|STL)", text)]
    loops = _loops(sass, instructions)
    return Compiled(int(found[1]), int(found[2]), len(instructions), loops, spills)


def _tool(name: str, *args: str) -> str:
    return subprocess.run(
        [str(TOOLS / name), *args], capture_output=True, text=True, check=True
    ).stdout


def _loops(sass: str, instructions: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Each loop's first and last instruction (indices), outermost first: a branch back to an
    earlier label closes a loop that starts at that label (the branch to itself that ends
    every kernel left out)."""
    labels = {
        name: int(address, 16)
        for name, address in re.findall(r"^\.(L_x_\d+):\s*\n\s+/\*([0-9a-f]+)\*/", sass, re.M)
    }
    addresses = [int(address, 16) for address, _ in instructions]
    loops = []
    for index, (address, (_, text)) in enumerate(zip(addresses, instructions, strict=True)):
        target = re.search(r"\bBRA\b.*\.(L_x_\d+)", text)
        if target and labels.get(target[1], address) < address:
            loops.append((addresses.index(labels[target[1]]), index))
    return sorted(loops, key=lambda loop: (loop[0] - loop[1], loop[0]))


KERNELS = {
    # name: (the kernel's attribute, its arguments, its constants given the module and tile)
    "simplex": ("_simplex_kernel", SIMPLEX, lambda m, b: {"BLOCK": b, "FRACTION": m.TAU}),
    "cagrad-steps": (
        "_cagrad_steps_kernel",
        CAGRAD_STEPS,
        lambda m, b: {"C": 0.9, "BLOCK": b, "FRACTION": m.TAU},
    ),
    "cagrad-tail": (
        "_cagrad_tail_kernel",
        CAGRAD_TAIL,
        lambda m, b: {"C": 0.9, "BLOCK": b, "POINTS": 256, "DIVISOR": 1.81},
    ),
    "mgda": ("_mgda_kernel", MGDA, lambda m, b: {"BLOCK": b, "FRACTION": m.TAU}),
    "dual-cone": (
        "_dual_cone_kernel",
        DUAL_CONE,
        lambda m, b: {"REG_EPS": 1e-4, "NORM_EPS": 1e-4, "BLOCK": b, "FRACTION": m.TAU},
    ),
    "jacobi": ("_jacobi_kernel", JACOBI, lambda m, b: {"BLOCK": b}),
}
"""The kernels a version of the module may have (older ones lack some)."""


OUTER_LOOPS = {
    "simplex": ("steps",),
    "cagrad-steps": ("steps",),
    "cagrad-tail": ("candidates",),
    "mgda": ("steps", "candidates"),
    "dual-cone": ("steps", "candidates"),
    "jacobi": ("sweeps",),
}
"""What each kernel's loops around others run, in the code's order: interior-point steps,
the support candidates (four for CAGrad and MGDA, two for UPGrad and DualProj), or Jacobi
sweeps (the innermost loops are pivots, or Jacobi rounds)."""


def passes(kernel: str, tasks: int) -> tuple[tuple[int, ...], int]:
    """The passes in one solve of each loop around another (``OUTER_LOOPS``) and of the
    innermost loops."""
    steps = {"mgda": MGDA_ITERS, "dual-cone": DUAL_CONE_ITERS}.get(kernel, CAGRAD_ITERS)
    counts = {
        "steps": steps,
        "candidates": 2 if kernel == "dual-cone" else 4,
        "sweeps": jacobi_sweeps(tasks),
    }
    outer = tuple(counts[loop] for loop in OUTER_LOOPS[kernel])
    return outer, (tasks + tasks % 2 - 1 if kernel == "jacobi" else tasks)


def compile_all(module: ModuleType, tasks: int, arch: int) -> dict[str, Compiled]:
    """Every kernel of ``KERNELS`` the version has, at ``tasks`` (the Jacobi kernel where T is
    in its range)."""
    block = module._block(tasks)
    warps = module._warps(block)
    found = {}
    for name, (attribute, arguments, constants) in KERNELS.items():
        if not hasattr(module, attribute):
            continue
        if name == "jacobi" and tasks > module.JACOBI_TASKS:
            continue
        kernel = getattr(module, attribute)
        found[name] = compile_kernel(kernel, arguments, constants(module, block), warps, arch)
    return found


def time_kernels(module: ModuleType, tasks: int, rounds: int) -> dict[str, float]:
    """Milliseconds per launch of the simplex kernel (CAGrad's 256 problems, 12 steps) and,
    where the version has them, per whole CAGrad (c = 0.9), MGDA and UPGrad solve."""
    gen = torch.Generator(device="cuda").manual_seed(tasks)
    G = torch.randn(256, tasks, 4 * tasks, generator=gen, device="cuda", dtype=torch.float64)
    H = G @ G.mT
    H = H / H.diagonal(dim1=1, dim2=2).mean(dim=1)[:, None, None]
    H = H + 1e-13 * torch.eye(tasks, device="cuda", dtype=torch.float64)
    p = 0.3 * torch.randn(256, tasks, generator=gen, device="cuda", dtype=torch.float64)
    times = {"simplex": _cuda_ms(lambda: module.simplex_qp_fused(H, p, 12), rounds)}
    gram = G[0] @ G[0].T
    if hasattr(module, "cagrad_weights_fused"):
        times["cagrad"] = _cuda_ms(
            lambda: module.cagrad_weights_fused(gram, 0.9, CAGRAD_ITERS, 1, 256), rounds
        )
        times["mgda"] = _cuda_ms(lambda: module.mgda_weights_fused(gram, MGDA_ITERS), rounds)
    if hasattr(module, "dual_cone_weights_fused"):
        targets = torch.eye(tasks, device="cuda", dtype=torch.float64) / tasks
        times["upgrad"] = _cuda_ms(
            lambda: module.dual_cone_weights_fused(gram, targets, 1e-4, 1e-4, DUAL_CONE_ITERS),
            rounds,
        )
    return times


def _cuda_ms(fn: object, rounds: int) -> float:
    """Median milliseconds of ``fn()`` by CUDA events, after two warm-up calls."""
    for _ in range(2):
        fn()  # type: ignore[operator]
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()  # type: ignore[operator]
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def print_static(versions: dict[str, ModuleType], tasks_list: list[int], arch: int) -> dict:
    """The static table, each version's lines side by side (with the ratios of the second
    over the first); returns the first version's compiled kernels per T."""
    print(f"triton {triton.__version__}, sm_{arch}, SASS instructions (static counts)")
    print("(inner: a pivot of the sweep, or a round of T/2 rotations of the Jacobi kernel;")
    print(" outer: an interior-point step with its T pivots, or a Jacobi sweep with its rounds;")
    print(" whole: the kernel's code, each instruction once; solve: what one program executes")
    print(" in a solve, every instruction times the passes of its loops)")
    header = f"{'T':>3} {'kernel':12} {'version':10} {'warps':>5} {'regs':>5} {'spilled B':>9}"
    print(header + f" {'inner':>7} {'outer':>7} {'whole':>6} {'solve':>9}")
    names = list(versions)
    compiled = {}
    for tasks in tasks_list:
        found = {name: compile_all(module, tasks, arch) for name, module in versions.items()}
        compiled[tasks] = found[names[0]]
        for kernel in found[names[0]]:
            outer_passes, inner_passes = passes(kernel, tasks)
            for name, module in versions.items():
                if kernel not in found[name]:
                    print(f"{tasks:>3} {kernel:12} {name:10} (no such kernel)")
                    continue
                c = found[name][kernel]
                warps = module._warps(module._block(tasks))
                outer = c.outer(inner_passes)
                print(
                    f"{tasks:>3} {kernel:12} {name:10} {warps:>5} {c.registers:>5}"
                    f" {c.spilled:>9} {c.inner:>7} {outer if outer else '-':>7}"
                    f" {c.instructions:>6} {c.executed(outer_passes, inner_passes):>9,}"
                )
            if len(names) == 2 and all(kernel in found[name] for name in names):
                now, then = (found[name][kernel] for name in names)
                then_solve, now_solve = (
                    c.executed(outer_passes, inner_passes) for c in (then, now)
                )
                print(
                    f"{'':>3} {kernel:12} {'ratio':10} {'':>5} {'':>5} {'':>9}"
                    f" {then.inner / now.inner:>6.2f}x {'':>7}"
                    f" {then.instructions / now.instructions:>5.2f}x"
                    f" {then_solve / now_solve:>8.2f}x"
                )
    return compiled


def check_spills(compiled: dict[int, dict[str, Compiled]]) -> None:
    """Print which kernels spill registers, and exit 1 if one has spill code where it runs
    at every pivot or step (as the first simplex kernel had at T = 32 and 50, in its step
    loop). Values set aside around a support candidate (CAGrad's tail kernel at T = 32 and
    50: four per solve, each some 70 accesses) cost a few hundred memory accesses per
    solve."""
    spilling, hot = [], []
    for tasks, kernels in compiled.items():
        for kernel, c in kernels.items():
            if not c.spilled:
                continue
            accesses = c.executed(*passes(kernel, tasks), spills=True)
            spilling.append(f"{kernel} at T = {tasks} ({c.spilled} bytes, {accesses:,} accesses)")
            if c.hot_spills(OUTER_LOOPS[kernel]):
                hot.append(f"{kernel} at T = {tasks}")
    print("check: " + ("spilled: " + ", ".join(spilling) if spilling else "no kernel spills"))
    print(
        "check: spill code at every pivot or step in " + ", ".join(hot)
        if hot
        else "check: no spill code at every pivot or step"
    )
    if hot:
        sys.exit(1)


def print_times(versions: dict[str, ModuleType], tasks_list: list[int], rounds: int) -> None:
    """Each version's milliseconds per launch (or whole solve) on this GPU."""
    print(f"\n{torch.cuda.get_device_name()}: ms per launch or solve (median of {rounds})")
    for tasks in tasks_list:
        for name, module in versions.items():
            times = time_kernels(module, tasks, rounds)
            print(f"T = {tasks} {name}: " + "  ".join(f"{k} {v:.3f}" for k, v in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (H100: 90)")
    parser.add_argument("--against", default="", help="a git revision or a file of fused_ip.py")
    parser.add_argument("--time", action="store_true", help="also time the kernels (a GPU)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a kernel spills in a step or pivot"
    )
    args = parser.parse_args()
    if args.time and not torch.cuda.is_available():
        sys.exit("--time needs a GPU (torch.cuda.is_available() is false)")
    versions = {"now": load_version("")}
    if args.against:
        versions[args.against] = load_version(args.against)
    compiled = print_static(versions, args.tasks, args.arch)
    if args.check:
        check_spills(compiled)
    if args.time:
        print_times(versions, args.tasks, args.rounds)


if __name__ == "__main__":
    main()
