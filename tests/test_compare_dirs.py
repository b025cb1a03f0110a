"""``mtrl compare DIR``: folders of run directories are searched recursively, like
``tensorboard --logdir``; globs and explicit run directories still work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtrl.cli import main
from mtrl.compare.runs import expand_paths
from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.trainer import Trainer

TINY = [
    "suite=cheap4",
    "surgery=mean",
    "steps=50",
    "warmup=10",
    "agent.hidden=[16, 16]",
    "agent.batch_size=16",
    "eval.every=50",
    "eval.episodes=1",
    "logger.every=50",
    "logger.progress=false",
    "checkpoint.every=0",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One real finished cheap4 run directory, to copy."""
    out = tmp_path_factory.mktemp("template")
    cfg = resolve_config("quickstart", [*TINY, f"out={out}"])
    trainer = Trainer(cfg, run_dir=out / "cheap4__mean__seed0")
    trainer.run()
    return trainer.run_dir


def place(template: Path, root: Path, *names: str) -> list[Path]:
    """Copies of the template run at ``root/<name>`` for each name."""
    paths = [root / name for name in names]
    for path in paths:
        shutil.copytree(template, path)
    return paths


def test_nested_folders_are_searched(template, tmp_path):
    sweep = tmp_path / "sweep"
    runs = place(template, sweep, "b/run2", "a/run1", "a/deeper/x/run3", "c/run0")
    (sweep / "notes").mkdir()  # a folder without runs next to them is fine
    (sweep / "notes" / "todo.txt").write_text("")
    assert expand_paths([str(sweep)]) == [runs[2], runs[1], runs[0], runs[3]]


def test_not_below_a_run_nor_in_logger_or_hidden_folders(template, tmp_path):
    root = tmp_path / "runs"
    (outer,) = place(template, root, "outer")
    place(template, outer, "nested")  # inside a run directory: not searched
    place(template, root, "wandb/w", "tensorboard/t", ".hidden/h", "cmp/wandb/run")
    assert expand_paths([str(root)]) == [outer]
    # named explicitly, a run directory is that run, wherever it is
    assert expand_paths([str(root / ".hidden/h")]) == [root / ".hidden/h"]


def test_folder_and_glob_overlap_counted_once(template, tmp_path):
    sweep = tmp_path / "sweep"
    a1, a2, b1 = place(template, sweep, "a/run1", "a/run2", "b/run1")
    got = expand_paths([str(sweep / "a" / "*"), str(sweep), str(a1)])
    assert got == [a1, a2, b1]
    # a glob whose matches are folders of runs: each match searched
    assert expand_paths([str(sweep / "*")]) == [a1, a2, b1]


def test_compare_a_folder_end_to_end(template, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    place(template, sweep, "a/run1", "b/run2")
    out = tmp_path / "cmp"
    argv = ["compare", str(sweep), str(sweep / "a" / "*"), "--out", str(out), "--reps", "50"]
    assert main(argv) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["methods"]["mean"]["n"] == 2
    # comparing again with the report (and its files) now inside the folder is the same
    assert main(["compare", str(tmp_path), "--out", str(out), "--reps", "50"]) == 0
    assert json.loads((out / "comparison.json").read_text())["methods"]["mean"]["n"] == 2
    capsys.readouterr()


def test_folder_without_runs_is_a_one_line_error(template, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub" / "wandb" / "x").mkdir(parents=True)
    place(template, empty / "sub" / "wandb", "hidden-by-wandb")
    with pytest.raises(MtrlError, match=f"^{empty} holds no run directories"):
        expand_paths([str(empty)])
    assert main(["compare", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{empty} holds no run directories" in err
    # a glob matching a folder without runs names that folder
    place(template, tmp_path / "full", "run")
    with pytest.raises(MtrlError, match=f"^{empty} holds no run directories"):
        expand_paths([str(tmp_path / "*")])
    file = tmp_path / "full" / "run" / "metrics.jsonl"
    with pytest.raises(MtrlError, match="is not a run directory"):
        expand_paths([str(file)])
