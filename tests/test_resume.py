"""A run resumed from its checkpoint gives the same metrics as an uninterrupted one (CPU);
resuming a finished run changes nothing; a broken checkpoint or env is a one-line error."""

import json
import shutil
from pathlib import Path

import pytest
import torch

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
    "torch_threads=1",  # several times faster on small CPUs
]


def comparable(rows):
    """Metric rows without wall-clock timings."""
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


@pytest.mark.parametrize(
    ("workers", "overlap"), [(0, True), (2, True), (0, False)], ids=["w0", "w2", "w0-no-overlap"]
)
def test_resume_matches_an_uninterrupted_run(tmp_path, workers, overlap, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = [*ARGS, f"num_workers={workers}", f"overlap={str(overlap).lower()}"]
    assert main(["train", *args, "steps=100", f"out={straight}"]) == 0
    # stop at a checkpoint mid-episode (episodes are 15 steps), then continue to the end
    assert main(["train", *args, "steps=40", f"out={split}"]) == 0
    (run_a,) = straight.iterdir()
    (run_b,) = split.iterdir()
    capsys.readouterr()
    assert main(["train", f"resume={run_b}", "steps=100"]) == 0
    out = capsys.readouterr().out
    assert f"resuming from step 40 in {run_b}" in out
    assert "step 80  success " in out  # the line per evaluation, even without a progress bar
    rows_a, rows_b = read_metrics(run_a / "metrics.jsonl"), read_metrics(run_b / "metrics.jsonl")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert comparable(rows_a) == comparable(rows_b)
    summary_a = json.loads((run_a / "summary.json").read_text())
    summary_b = json.loads((run_b / "summary.json").read_text())
    assert summary_a["success"] == summary_b["success"] and summary_b["steps"] == 100


def test_overlapped_runs_do_not_depend_on_workers_and_differ_from_stepping_first(tmp_path):
    rows = {}
    for label, extra in {
        "w0": ["num_workers=0"],
        "w2": ["num_workers=2"],
        "serial": ["num_workers=2", "overlap=false"],
    }.items():
        out = tmp_path / label
        assert main(["train", *ARGS, *extra, "steps=60", "eval.every=0", f"out={out}"]) == 0
        (run,) = out.iterdir()
        rows[label] = comparable(read_metrics(run / "metrics.jsonl"))
    assert rows["w0"] == rows["w2"]
    # the updates see the replay one transition earlier, so training differs
    assert rows["w0"][-1]["train/critic_loss_mean"] != rows["serial"][-1]["train/critic_loss_mean"]


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


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run finished at step 40 (evaluated at 20 and 40, checkpointed at 40)."""
    out = tmp_path_factory.mktemp("finished")
    args = [*ARGS, "steps=40", "warmup=20", "eval.every=20", "checkpoint.every=20", f"out={out}"]
    assert main(["train", *args]) == 0
    (run,) = out.iterdir()
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to spoil."""
    return Path(shutil.copytree(finished, tmp_path / finished.name))


def test_resuming_a_finished_run_changes_nothing(run, capsys):
    before = snapshot(run)
    summary = json.loads(before["summary.json"])
    for more in ([], ["steps=40"]):
        capsys.readouterr()
        assert main(["train", f"resume={run}", *more]) == 0
        out = capsys.readouterr().out
        assert f"run {run} is complete at step 40: nothing to do" in out
        assert f"{summary['success_mean']:7.2f}" in out  # its table, from summary.json
        assert snapshot(run) == before


def test_steps_below_the_checkpoint_is_a_one_line_error(run, capsys):
    before = snapshot(run)
    assert main(["train", f"resume={run}", "steps=20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mtrl: error: steps=20 is below the step of the checkpoint in {run} (40); "
        "resume with steps=40 or more"
    )
    assert snapshot(run) == before


def test_a_run_stopped_before_its_summary_takes_its_last_evaluation(run, capsys):
    before = snapshot(run)
    (run / "summary.json").unlink()
    assert main(["train", f"resume={run}"]) == 0
    assert "is complete at step 40" in capsys.readouterr().out
    after = snapshot(run)
    rebuilt, summary = json.loads(after.pop("summary.json")), json.loads(before.pop("summary.json"))
    assert after == before  # no new evaluation, no new row
    for key in ("steps", "success", "return", "success_mean", "eval_episodes"):
        assert rebuilt[key] == summary[key]
    assert rebuilt["run_dir"] == str(run)


@pytest.mark.parametrize("spoil", ["truncated", "garbage"])
def test_a_corrupt_checkpoint_is_a_one_line_error(run, capsys, spoil):
    checkpoint = run / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2] if spoil == "truncated" else b"\x00garbage" * 64)
    before = snapshot(run)
    for argv in (["train", f"resume={run}", "steps=60"], ["eval", str(run)]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"mtrl: error: {checkpoint} is corrupt or truncated: ")
        assert "\n" not in err and len(err) < 300 + len(str(checkpoint))
        assert snapshot(run) == before


def odd_suite(env: str, workers: int, *kwargs: str) -> list[str]:
    """Overrides for a two-task run where task 1 is the plug-in env ``env``."""
    tasks = (
        f'[{{id: Pendulum-v1, name: pend}}, {{id: "plugin_envs:{env}", name: odd, '
        f"kwargs: {{{', '.join(kwargs)}}}}}]"
    )
    return [
        "quickstart",
        "suite=classic-control",
        f"suite.tasks={tasks}",
        "suite.max_episode_steps=10",
        f"num_workers={workers}",
        "steps=60",
        "warmup=10",
        "eval.every=0",
        "eval.episodes=1",
        "logger.every=10",
        *ARGS[6:],  # small networks, no progress bar, one thread
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_an_env_returning_nan_is_named_not_called_a_divergence(tmp_path, capsys, workers):
    argv = odd_suite("BadValueEnv", workers, "from_step: 25")
    assert main(["train", *argv, "checkpoint.every=20", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "mtrl: error: the env of task 'odd' (task 1) returned NaN in its reward at step 25 "
        "(a bug in the env or its wrapper, not a training divergence)"
    )


@pytest.mark.parametrize(
    ("checks", "method", "when"),
    [
        ("every_update", "pcgrad", "at step 15"),
        # the Gramian goes to the host for pcgrad's solver anyway: checked at once
        ("deferred", "pcgrad", "at step 15"),
        # the loss overflows but the step stays finite: found at the next log point, step 20,
        # before the checkpoint due there is written
        ("deferred", "mean", "between step 11 and step 20"),
    ],
)
@pytest.mark.parametrize("every", [0, 10])
def test_a_divergence_claims_only_a_checkpoint_that_exists(
    tmp_path, capsys, every, checks, method, when
):
    # a finite but huge reward overflows the critic's loss: training diverges, the env is fine
    argv = odd_suite("BadValueEnv", 0, "from_step: 15", "value: 1.0e38")
    # without overlap the update of step 15 already samples step 15's transition
    argv += ["overlap=false", f"finite_checks={checks}", f"surgery={method}"]
    assert main(["train", *argv, f"checkpoint.every={every}", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"mtrl: error: training diverged {when}: ")
    (run,) = tmp_path.iterdir()
    if every:
        assert f"the last checkpoint in {run} (step 10) is intact" in err
        assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 10
    else:
        assert "no checkpoint was written before" in err and "intact" not in err
        assert not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_hanging_env_stops_training_with_an_error_naming_it(tmp_path, capsys, workers):
    argv = odd_suite("HangingEnv", workers, "hang_step: 5", "seconds: 60")
    assert main(["train", *argv, "step_timeout=1", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    where = "worker 1" if workers else "in-process"
    assert err == (
        f"mtrl: error: env of task 'odd' (task 1, {where}) did not return from step within "
        "1 s (step_timeout)"
    )
