"""The fused solvers' Triton kernels (``mtrl/surgery/aggregators/fused_ip.py``) as a GPU runs
them: compiled for an NVIDIA architecture (sm_90, H100/H200, by default) on any machine, no GPU
needed, with the tools that come with the ``triton`` package (ptxas, cuobjdump, nvdisasm).

For each kernel at each T it prints the registers and spilled bytes per thread and the
machine instructions (SASS) of its loops: one pivot of the sweep (the inner loop) and one
interior-point step (the step loop's own instructions plus T pivots). These are static counts
of the code, a guide to what a GPU executes, not a timing: a program is one or a few warps
working through a long chain of dependent instructions, so fewer instructions per pivot and no
spills should mean a faster kernel, but only a GPU says by how much. On a GPU (``--time``) it
also times each kernel on the problems CAGrad solves (256 of T x T) with CUDA events.

``--against`` compiles a second version of the kernels side by side, from a git revision or a
file, and prints the ratios (the earlier version's count over this one's).

    python benchmarks/fused_kernels.py                         # T = 10 and 50, sm_90
    python benchmarks/fused_kernels.py --against f91cff9       # before / now side by side
    python benchmarks/fused_kernels.py --time --against old_fused_ip.py   # on a GPU
    python benchmarks/fused_kernels.py --check     # exit 1 if a kernel spills (the tests)
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
MODULE = "mtrl/surgery/aggregators/fused_ip.py"
TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
SIMPLEX = {"h_ptr": "*fp64", "p_ptr": "*fp64", "x_ptr": "*fp64", "z_ptr": "*fp64"}
SIMPLEX |= {"tasks": "i32", "iters": "i32"}
SPD = {"m_ptr": "*fp64", "r_ptr": "*fp64", "out_ptr": "*fp64", "ok_ptr": "*i8", "tasks": "i32"}
JACOBI = {"a_ptr": "*fp64", "vals_ptr": "*fp64", "vecs_ptr": "*fp64", "tasks": "i32"}
JACOBI |= {"sweeps": "i32"}
"""The kernels' run-time arguments and their types, in order (their constants follow)."""
Tensor = torch.Tensor


@dataclass
class Compiled:
    """What one kernel compiles to: registers and spilled bytes per thread, and the SASS
    instruction counts of the whole kernel and of each loop (outermost first)."""

    registers: int
    spilled: int
    instructions: int
    loops: list[int]

    def per_step(self, passes: int) -> int:
        """Instructions of one pass of the outer loop with ``passes`` passes of the inner one:
        an interior-point step with its T pivots (the simplex kernel), a sweep with its rounds
        (the Jacobi kernel) or, with one loop, the T pivots plus the rest of the kernel (the
        SPD kernel)."""
        if len(self.loops) >= 2:
            outer, inner = self.loops[0], self.loops[-1]
            return outer - inner + passes * inner
        inner = self.loops[-1]
        return self.instructions - inner + passes * inner


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
    return Compiled(int(found[1]), int(found[2]), len(instructions), _loops(sass, instructions))


def _tool(name: str, *args: str) -> str:
    return subprocess.run(
        [str(TOOLS / name), *args], capture_output=True, text=True, check=True
    ).stdout


def _loops(sass: str, instructions: list[tuple[str, str]]) -> list[int]:
    """Instructions of each loop, outermost first: a branch back to an earlier label closes a
    loop that starts at that label (the branch to itself that ends every kernel left out)."""
    labels = {
        name: int(address, 16)
        for name, address in re.findall(r"^\.(L_x_\d+):\s*\n\s+/\*([0-9a-f]+)\*/", sass, re.M)
    }
    addresses = [int(address, 16) for address, _ in instructions]
    loops = []
    for address, text in zip(addresses, (text for _, text in instructions), strict=True):
        target = re.search(r"\bBRA\b.*\.(L_x_\d+)", text)
        if target and labels.get(target[1], address) < address:
            start = labels[target[1]]
            loops.append((address - start, sum(start <= a <= address for a in addresses)))
    return [count for _, count in sorted(loops, reverse=True)]


def compile_all(module: ModuleType, tasks: int, arch: int) -> dict[str, Compiled]:
    """The simplex kernel, the SPD kernel (two right sides, CAGrad's) and, where the version
    has it and T is in its range, the Jacobi kernel (IMTL-G's) at ``tasks``."""
    block = module._block(tasks)
    warps = module._warps(block)
    found = {
        "simplex": compile_kernel(
            module._simplex_kernel, SIMPLEX, {"BLOCK": block, "FRACTION": module.TAU}, warps, arch
        ),
        "spd": compile_kernel(
            module._spd_solve_kernel, SPD, {"RHS": 2, "BLOCK": block}, warps, arch
        ),
    }
    if tasks <= getattr(module, "JACOBI_TASKS", 0):
        found["jacobi"] = compile_kernel(
            module._jacobi_kernel, JACOBI, {"BLOCK": block}, warps, arch
        )
    return found


def time_kernels(module: ModuleType, tasks: int, rounds: int) -> tuple[float, float, Tensor]:
    """Milliseconds per launch of the simplex kernel (CAGrad's 256 problems, 12 steps) and of
    the SPD kernel (two systems, two right sides), and the simplex minimisers."""
    gen = torch.Generator(device="cuda").manual_seed(tasks)
    G = torch.randn(256, tasks, 4 * tasks, generator=gen, device="cuda", dtype=torch.float64)
    H = G @ G.mT
    H = H / H.diagonal(dim1=1, dim2=2).mean(dim=1)[:, None, None]
    H = H + 1e-13 * torch.eye(tasks, device="cuda", dtype=torch.float64)
    p = 0.3 * torch.randn(256, tasks, generator=gen, device="cuda", dtype=torch.float64)
    rhs = torch.randn(2, tasks, 2, generator=gen, device="cuda", dtype=torch.float64)
    simplex = _cuda_ms(lambda: module.simplex_qp_fused(H, p, 12), rounds)
    spd = _cuda_ms(lambda: module.spd_solve_fused(H[:2], rhs), rounds)
    return simplex, spd, module.simplex_qp_fused(H, p, 12)[0]


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
    print(" outer: an interior-point step with its T pivots, a Jacobi sweep with its rounds, or")
    print(" the SPD kernel's whole solve; whole: the kernel's code, each instruction once)")
    header = f"{'T':>3} {'kernel':8} {'version':10} {'warps':>5} {'regs':>5} {'spilled B':>9}"
    print(header + f" {'inner':>9} {'outer':>9} {'whole':>6}")
    names = list(versions)
    compiled = {}
    for tasks in tasks_list:
        found = {name: compile_all(module, tasks, arch) for name, module in versions.items()}
        compiled[tasks] = found[names[0]]
        for kernel in found[names[0]]:
            passes = tasks + tasks % 2 - 1 if kernel == "jacobi" else tasks
            for name, module in versions.items():
                if kernel not in found[name]:
                    print(f"{tasks:>3} {kernel:8} {name:10} (no such kernel)")
                    continue
                c = found[name][kernel]
                warps = module._warps(module._block(tasks))
                print(
                    f"{tasks:>3} {kernel:8} {name:10} {warps:>5} {c.registers:>5} {c.spilled:>9}"
                    f" {c.loops[-1]:>9} {c.per_step(passes):>9} {c.instructions:>6}"
                )
            if len(names) == 2 and all(kernel in found[name] for name in names):
                now, then = (found[name][kernel] for name in names)
                print(
                    f"{'':>3} {kernel:8} {'ratio':10} {'':>5} {'':>5} {'':>9}"
                    f" {then.loops[-1] / now.loops[-1]:>8.2f}x"
                    f" {then.per_step(passes) / now.per_step(passes):>8.2f}x"
                    f" {then.instructions / now.instructions:>5.2f}x"
                )
    return compiled


def check_spills(compiled: dict[int, dict[str, Compiled]]) -> None:
    """Print whether any kernel spills registers, and exit 1 if one does."""
    spilling = [
        f"{kernel} at T = {tasks}: {c.spilled} bytes"
        for tasks, kernels in compiled.items()
        for kernel, c in kernels.items()
        if c.spilled
    ]
    print("check: " + ("; ".join(spilling) + " spilled" if spilling else "no kernel spills"))
    if spilling:
        sys.exit(1)


def print_times(versions: dict[str, ModuleType], tasks_list: list[int], rounds: int) -> None:
    """Each version's milliseconds per launch on this GPU (and the second's over the first's,
    with the largest difference between their minimisers)."""
    print(f"\n{torch.cuda.get_device_name()}: ms per launch (median of {rounds})")
    for tasks in tasks_list:
        timed = {name: time_kernels(module, tasks, rounds) for name, module in versions.items()}
        line = "  ".join(
            f"{name}: simplex {s:.3f} spd {d:.3f}" for name, (s, d, _) in timed.items()
        )
        if len(timed) == 2:
            (s0, d0, w0), (s1, d1, w1) = timed.values()
            line += f"  ratio {s1 / s0:.2f}x / {d1 / d0:.2f}x"
            line += f", largest difference in w {float((w0 - w1).abs().max()):.1e}"
        print(f"T = {tasks}: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (H100: 90)")
    parser.add_argument("--against", default="", help="a git revision or a file of fused_ip.py")
    parser.add_argument("--time", action="store_true", help="also time the kernels (a GPU)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--check", action="store_true", help="exit 1 if a kernel spills")
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
