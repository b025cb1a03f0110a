"""Run directories: unique, readable names, claimed atomically even when many runs start at once;
and what a run reads back from its directory."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from pathlib import Path

import pytest

from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.logging import JsonlSink
from mtrl.rundir import (
    CONFIG,
    create_run_dir,
    logged_eval,
    progress_postfix,
    read_run_config,
    run_name,
)

NOW = datetime(2026, 11, 25, 12, 0, 0)


def cheap(*overrides: str):
    return resolve_config("quickstart", ["surgery=cagrad", *overrides])


def test_configs_differing_only_in_an_option_get_different_names(tmp_path):
    a, b = cheap("surgery.c=0.2"), cheap("surgery.c=0.9")
    name_a, name_b = run_name(a, NOW), run_name(b, NOW)  # started in the same second
    pattern = r"cheap4__cagrad__seed0__20261125-120000__[0-9a-f]{6}"
    assert re.fullmatch(pattern, name_a) and re.fullmatch(pattern, name_b)
    assert name_a != name_b
    assert run_name(cheap("surgery.c=0.2", f"out={tmp_path}"), NOW) == name_a  # out aside
    dir_a = create_run_dir(a, tmp_path / name_a, unique=True)
    dir_b = create_run_dir(b, tmp_path / name_b, unique=True)
    assert dir_a != dir_b
    assert read_run_config(dir_a).surgery.options["c"] == 0.2
    assert read_run_config(dir_b).surgery.options["c"] == 0.9


def test_names_sort_by_method_then_seed():
    names = [
        run_name(cheap(f"surgery={method}", f"seed={seed}"), NOW)
        for seed in (1, 0)
        for method in ("pcgrad", "mean")
    ]
    assert [n.split("__")[1:3] for n in sorted(names)] == [
        ["mean", "seed0"],
        ["mean", "seed1"],
        ["pcgrad", "seed0"],
        ["pcgrad", "seed1"],
    ]


def test_runs_started_at_once_never_share_a_directory(tmp_path):
    cfg = cheap()
    proposed = tmp_path / "runs" / run_name(cfg, NOW)  # the same name for every run
    count = 24
    barrier = threading.Barrier(count)
    made: list[Path] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            made.append(create_run_dir(cfg, proposed, unique=True))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    suffixes = ["", *(f"-{k}" for k in range(2, count + 1))]
    assert sorted(p.name for p in made) == sorted(proposed.name + s for s in suffixes)
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {p.name for p in made}
    assert all((p / CONFIG).is_file() for p in made)


def test_a_given_directory_is_used_as_is_but_never_reused(tmp_path):
    cfg = cheap()
    run = tmp_path / "mine"
    assert create_run_dir(cfg, run) == run
    with pytest.raises(MtrlError, match="already holds a run; use resume="):
        create_run_dir(cfg, run)
    assert sorted(p.name for p in run.iterdir()) == [CONFIG]  # no debris


def test_an_impossible_out_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(MtrlError, match="cannot create run directory"):
        create_run_dir(cheap(), tmp_path / "file" / "run", unique=True)


def test_logged_eval_is_the_latest_at_or_before_a_step(tmp_path):
    sink = JsonlSink(tmp_path / "metrics.jsonl")
    for step, success in ((40, 0.25), (60, None), (80, 0.75), (120, 1.0)):
        row = {"train/critic_loss_mean": 1.0}
        if success is not None:
            row |= {
                "eval/success_mean": success,
                "eval/success/a": success,
                "eval/return/a": -step,
            }
        sink.write(step, row)
    sink.close()
    step, ev = logged_eval(tmp_path, 100, ["a"], episodes=3)
    assert step == 80 and ev.success_mean == 0.75 and ev.return_mean == -80 and ev.episodes == 3
    assert logged_eval(tmp_path, 39, ["a"], 3) is None
    assert progress_postfix({"perf/env_steps_per_s": 400.0}, 4, ev) == {
        "sps": "100",
        "success": "0.75",
    }
