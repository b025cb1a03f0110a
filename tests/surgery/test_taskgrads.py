"""TaskGradients over blocks laid out task-major, member-major or otherwise: the same Gramian,
directions and finite checks as the flat [T, P] matrix."""

import pytest
import torch

from mtrl.surgery import aggregator_class, get_aggregator, list_aggregators
from mtrl.surgery.taskgrads import GRAM_CHUNK, TaskGradients, all_finite, task_view

T = 5


def member_major(members: int, *shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A buffer [E, T, *shape] and its task-major view [T, E, *shape]."""
    buffer = torch.randn(members, T, *shape, generator=torch.Generator().manual_seed(seed))
    return buffer, buffer.transpose(0, 1)


def flat(blocks: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([b.reshape(T, -1) for b in blocks], dim=1)


def test_member_major_blocks_are_read_in_place():
    buffer, block = member_major(3, 4, 2)
    view = task_view(block)
    assert view.shape == (3, T, 8) and view.data_ptr() == buffer.data_ptr()
    contiguous = torch.randn(T, 4, 2)
    assert task_view(contiguous).data_ptr() == contiguous.data_ptr()
    strided = torch.randn(4, T, 2).permute(1, 2, 0)  # neither layout: copied once
    torch.testing.assert_close(task_view(strided)[0], strided.reshape(T, -1))


@pytest.mark.parametrize("size", [7, 3 * GRAM_CHUNK, 3 * GRAM_CHUNK + 11])
def test_mixed_layouts_give_the_flat_matrix_results(size):
    """Gramian (one product, or chunks of K with and without a tail), directions and the
    finite rows of task-major, member-major and strided blocks equal the flat matrix's."""
    blocks = [
        member_major(2, size, seed=1)[1],
        torch.randn(T, 3, 4, generator=torch.Generator().manual_seed(2)),
        torch.randn(3, T, 2, generator=torch.Generator().manual_seed(3)).permute(1, 2, 0),
    ]
    G, ref = TaskGradients(blocks), flat(blocks)
    torch.testing.assert_close(G.gramian(), ref.double() @ ref.double().T, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(G.block_gramians().sum(0).double(), G.gramian())
    torch.testing.assert_close(G.matrix(), ref)
    w = torch.linspace(-1.0, 2.0, T)
    direction = torch.cat([d.flatten() for d in G.combine(w)])
    torch.testing.assert_close(direction, w @ ref, rtol=1e-5, atol=1e-4)
    for d, b in zip(G.combine(w), blocks, strict=True):
        assert d.shape == b.shape[1:]
    torch.testing.assert_close(
        torch.cat([d.flatten() for d in get_aggregator("pcgrad", seed=0)(G)]),
        get_aggregator("pcgrad", seed=0)(ref),
        rtol=1e-5,
        atol=1e-4,
    )
    blocks[0][3, 1, 0] = float("nan")
    assert TaskGradients(blocks).finite_rows().tolist() == [True, True, True, False, True]


def test_all_finite_checks_elements_not_only_the_sum():
    big = torch.full((2, 3), 1e308, dtype=torch.float64)  # its sum overflows
    assert all_finite([big, torch.ones(4)])
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.ones(2, 3)
        x[1, 2] = bad
        assert not all_finite([torch.ones(4), x]) and not all_finite(x)
    pair = torch.tensor([float("inf"), -float("inf")])  # sums to NaN, still caught
    assert not all_finite(pair)


GRADIENT_METHODS = [
    n
    for n in list_aggregators()
    if aggregator_class(n).kind == "gradient" and aggregator_class(n).__module__.startswith("mtrl.")
]


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_every_method_gives_the_same_direction_for_any_block_layout(name):
    """Member-major blocks (as the ensemble layers give them) and their task-major copies:
    the same direction from every method, per-block ones (GradVac, GradDrop) included. Small
    integer entries make every sum exact, so the solvers see the very same Gramians."""
    gen = torch.Generator().manual_seed(4)
    buffer = torch.randint(-3, 4, (2, T, 6, 5), generator=gen).float()
    blocks = [buffer.transpose(0, 1), torch.randint(-3, 4, (T, 3), generator=gen).float()]
    copies = [b.contiguous() for b in blocks]
    directions = [get_aggregator(name, seed=0)(TaskGradients(bs)) for bs in (blocks, copies)]
    for d, ref in zip(directions[0], directions[1], strict=True):
        torch.testing.assert_close(d, ref)


def test_blocks_of_one_matrix_give_its_results_with_one_product():
    """``from_matrix``: blocks are views of consecutive columns; the Gramian, a combination
    (one weighting or one per block) and the matrix itself are the flat matrix's."""
    gen = torch.Generator().manual_seed(4)
    shapes = [(3, 4), (4,), (2, 1, 3)]
    matrix = torch.randn(T, 22, generator=gen)
    G = TaskGradients.from_matrix(matrix, shapes)
    assert [b.shape[1:] for b in G.blocks] == shapes and G.matrix() is matrix
    assert G.blocks[1].data_ptr() == matrix[:, 12:].data_ptr()
    torch.testing.assert_close(
        G.gramian(), matrix.double() @ matrix.double().T, rtol=1e-5, atol=1e-4
    )
    w = torch.linspace(-1.0, 2.0, T)
    torch.testing.assert_close(torch.cat([d.flatten() for d in G.combine(w)]), w @ matrix)
    per_block = torch.stack([w, 2 * w, -w])
    combined = G.combine(per_block)
    torch.testing.assert_close(combined[1], 2 * (w @ matrix[:, 12:16]))
    torch.testing.assert_close(combined[2].flatten(), -(w @ matrix[:, 16:]))
    with pytest.raises(ValueError, match="does not hold"):
        TaskGradients(G.blocks, matrix[:, :10])
