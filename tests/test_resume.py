"""A run resumed from its checkpoint gives the same metrics as an uninterrupted one (CPU)."""

import json

import pytest

from mtrl.cli import main
from mtrl.logging import read_metrics

ARGS = [
    "quickstart",
    "surgery=pcgrad",
    "warmup=30",
    "eval.every=40",
    "eval.episodes=2",
    "logger.every=20",
    "checkpoint.every=40",
    "agent.hidden=[32, 32]",
    "agent.batch_size=16",
    "suite.max_episode_steps=15",  # episodes straddle the checkpoint
    "logger.progress=false",
]


def comparable(rows):
    """Metric rows without wall-clock timings."""
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_matches_an_uninterrupted_run(tmp_path, workers):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", *ARGS, f"num_workers={workers}", "steps=100", f"out={straight}"]) == 0
    # stop at a checkpoint mid-episode (episodes are 15 steps), then continue to the end
    assert main(["train", *ARGS, f"num_workers={workers}", "steps=40", f"out={split}"]) == 0
    (run_a,) = straight.iterdir()
    (run_b,) = split.iterdir()
    assert main(["train", f"resume={run_b}", "steps=100"]) == 0
    rows_a, rows_b = read_metrics(run_a / "metrics.jsonl"), read_metrics(run_b / "metrics.jsonl")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert comparable(rows_a) == comparable(rows_b)
    summary_a = json.loads((run_a / "summary.json").read_text())
    summary_b = json.loads((run_b / "summary.json").read_text())
    assert summary_a["success"] == summary_b["success"] and summary_b["steps"] == 100


def test_metrics_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    from mtrl.logging import JsonlSink

    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    for step in (10, 20, 30):
        sink.write(step, {"x": float(step)})
    sink.close()
    sink = JsonlSink(path, keep_until=20)  # the checkpoint was written at step 20
    sink.write(30, {"x": -1.0})
    sink.close()
    assert [(r["step"], r["x"]) for r in read_metrics(path)] == [(10, 10.0), (20, 20.0), (30, -1.0)]


def test_resume_rejects_changing_the_experiment(tmp_path, capsys):
    assert main(["train", *ARGS, "steps=10", "warmup=5", "eval.every=0", f"out={tmp_path}"]) == 0
    (run,) = tmp_path.iterdir()
    assert main(["train", f"resume={run}", "surgery=cagrad"]) == 2
    assert "'surgery' cannot change on resume" in capsys.readouterr().err


def test_resume_without_replay_refills_and_finishes(tmp_path, capsys):
    args = [*ARGS, "steps=40", "checkpoint.replay=false", f"out={tmp_path}"]
    assert main(["train", *args]) == 0
    (run,) = tmp_path.iterdir()
    assert main(["train", f"resume={run}", "steps=60"]) == 0
    assert "holds no replay buffer" in capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["steps"] == 60
