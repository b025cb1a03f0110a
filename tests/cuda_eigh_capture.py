"""Run as a script on a CUDA GPU: try to capture torch.linalg.eigh in a CUDA graph and print
``refused`` or ``captured`` on the first line, then whether cuSOLVER and CUDA's random numbers
still work in this process afterwards. A process of its own, so that what a refused capture
leaves behind cannot reach other tests (tests/test_cuda.py)."""

from collections.abc import Callable

import torch


def attempt(what: str, fn: Callable[[], object]) -> None:
    try:
        fn()
        print(f"{what}: ok")
    except Exception as exc:  # whatever it raises, the first line still says refused or not
        print(f"{what}: failed ({str(exc).splitlines()[0][:120]})")


a = torch.eye(4, dtype=torch.float64, device="cuda") * 2
side = torch.cuda.Stream()
side.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(side):
    torch.linalg.eigh(a)  # cuSOLVER's handle and workspace exist before the capture
torch.cuda.current_stream().wait_stream(side)
try:
    with torch.cuda.graph(torch.cuda.CUDAGraph()):
        torch.linalg.eigh(a)
except RuntimeError:
    print("refused")
else:
    print("captured")
attempt("eigh afterwards", lambda: torch.cuda.synchronize() or torch.linalg.eigh(a))
attempt("randn afterwards", lambda: torch.randn(3, device="cuda"))
