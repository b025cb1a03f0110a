"""The logging layer end to end: metric names, W&B offline and its fallbacks, TensorBoard, system info."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from wandb_helpers import isolate_wandb, wandb_records

from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.logging import ConsoleSink, JsonlSink, Logger, Sink, read_metrics
from mtrl.logging.figures import cosine_heatmap
from mtrl.logging.system import git_state
from mtrl.timing import SectionTimer
from mtrl.trainer import Trainer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
TASKS = ["goal000", "goal090-inv", "goal180", "goal270-inv"]  # the cheap4 suite of quickstart
PER_TASK = [
    "eval/success",
    "eval/return",
    "train/critic_loss",
    "train/actor_loss",
    "train/alpha_loss",
    "train/alpha",
    "train/entropy",
    "surgery/critic/grad_norm",
    "surgery/actor/grad_norm",
]


def tiny_config(out, *overrides):
    return resolve_config(
        "quickstart",
        [
            "steps=200",
            "warmup=50",
            "eval.every=100",
            "eval.episodes=1",
            "logger.every=50",
            "logger.progress=false",
            "agent.hidden=[32, 32]",
            "agent.batch_size=16",
            f"out={out}",
            *overrides,
        ],
    )


def offline_run_of(run_dir: Path) -> Path:
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))
    return offline


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run with every sink on: metrics file, W&B offline, TensorBoard."""
    import wandb

    tmp = tmp_path_factory.mktemp("logging")
    with pytest.MonkeyPatch.context() as mp:
        isolate_wandb(mp, tmp)
        trainer = Trainer(tiny_config(tmp, "logger.wandb=offline", "logger.tensorboard=true"))
        summary = trainer.run()
        wandb.teardown()
    return trainer.run_dir, summary


def test_metrics_file_has_the_documented_keys_with_finite_values(run):
    run_dir, summary = run
    assert summary["steps"] == 200 and list(summary["success"]) == TASKS
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [50, 100, 150, 200]  # one row per log point
    last = rows[-1]
    expected = {f"{prefix}/{task}" for prefix in PER_TASK for task in TASKS}
    expected |= {f"{prefix}_mean" for prefix in PER_TASK}
    expected |= {
        "train/episode_return_mean",
        "train/success_mean",
        "surgery/critic/conflict_fraction",
        "surgery/critic/direction_norm",
        "surgery/actor/conflict_fraction",
        "surgery/actor/direction_norm",
        "perf/env_steps_per_s",
        "perf/updates_per_s",
        "perf/time_env_s",
        "perf/time_update_s",
        "perf/time_surgery_s",
        "perf/time_eval_s",
    }
    assert expected <= set(last), sorted(expected - set(last))
    for row in rows:
        for key, value in row.items():
            assert isinstance(value, int | float) and math.isfinite(value), (row["step"], key)
    assert last["perf/time_update_s"] >= last["perf/time_surgery_s"] > 0
    assert [r["step"] for r in rows if "eval/success_mean" in r] == [100, 200]


def test_every_logged_key_is_documented(run):
    run_dir, _ = run
    names = re.findall(r"^\| `([^`]+)`", DOCS.read_text(), flags=re.MULTILINE)
    patterns = [
        re.compile(
            re.escape(name).replace("<task>", "[^/]+").replace("<net>", "(critic|actor)") + "$"
        )
        for name in names
    ]
    keys = {k for row in read_metrics(run_dir / "metrics.jsonl") for k in row if k != "step"}
    undocumented = [k for k in keys if not any(p.match(k) for p in patterns)]
    assert not undocumented


def test_wandb_offline_run_holds_the_history_config_and_heatmaps(run):
    run_dir, _ = run
    records = wandb_records(offline_run_of(run_dir))
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    evals = [h for h in history if "eval/success_mean" in h]
    assert [h["env_steps"] for h in evals] == [100, 200]
    assert "train/critic_loss/goal180" in evals[-1] and "perf/time_surgery_s" in evals[-1]
    images = [h for h in history if "surgery/critic/cosine._type" in h]
    assert [h["env_steps"] for h in images] == [100, 200]
    (run_record,) = [r["run"] for r in records if r["type"] == "run"]
    assert run_record["display_name"] == run_dir.name
    assert run_record["config"]["update"]["surgery"]["name"] == "pcgrad"
    config_updates = [r["config"]["update"] for r in records if r["type"] == "config"]
    system = next(u["system"] for u in config_updates if "system" in u)
    assert system["versions"]["torch"] == torch.__version__


def test_tensorboard_event_files_hold_scalars_images_and_system_text(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    success = events.Scalars("eval/success_mean")
    assert [e.step for e in success] == [100, 200]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert success[-1].value == pytest.approx(rows[-1]["eval/success_mean"])
    assert "train/alpha/goal090-inv" in tags["scalars"]
    assert {"surgery/critic/cosine", "surgery/actor/cosine"} <= set(tags["images"])
    assert "system/text_summary" in tags["tensors"]


def test_system_json_names_versions_device_and_cpus(run):
    run_dir, _ = run
    system = json.loads((run_dir / "system.json").read_text())
    assert system["versions"]["torch"] == torch.__version__
    assert system["versions"]["mtrl"] and system["versions"]["python"]
    assert system["device"] == "cpu" and system["cpu_count"] >= 1


def test_git_state_is_silently_absent_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == {}


def test_wandb_online_failure_falls_back_to_offline_and_training_goes_on(
    tmp_path, monkeypatch, capsys
):
    import wandb

    isolate_wandb(monkeypatch, tmp_path)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # a login, for a server that cannot be reached
    try:
        summary = Trainer(
            tiny_config(
                tmp_path,
                "steps=100",
                "logger.wandb=online",
                "logger.progress=true",
                "logger.wandb_timeout=2",
            )
        ).run()
    finally:
        wandb.teardown()
    assert summary["steps"] == 100
    captured = capsys.readouterr()
    (warning,) = warnings_in(captured.err)
    assert "W&B" in warning and "logging offline" in warning
    offline_run_of(Path(summary["run_dir"]))
    assert re.search(
        r"^step 100  success \d\.\d\d  return -?\d+\.\d  env-steps/s \d+$", captured.out, re.M
    )


def test_a_sink_that_raises_does_not_stop_training(tmp_path, monkeypatch, capsys):
    import wandb

    from mtrl.logging.wandb_sink import WandbSink

    isolate_wandb(monkeypatch, tmp_path)
    broken = WandbSink("offline", tmp_path / "broken", project="mtrl")
    broken.run.finish()  # every later log raises wandb.errors.UsageError
    try:
        summary = Trainer(tiny_config(tmp_path / "runs"), sinks=[broken]).run()
    finally:
        wandb.teardown()
    assert summary["steps"] == 200
    rows = read_metrics(Path(summary["run_dir"]) / "metrics.jsonl")
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    (warning,) = warnings_in(capsys.readouterr().err)  # reported once, not at every row
    assert warning.startswith("warning: WandbSink.") and "(UsageError: " in warning


def test_tensorboard_without_the_package_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MtrlError, match=r"logger.tensorboard=true needs .*pip install tensorboard"):
        Trainer(tiny_config(tmp_path, "logger.tensorboard=true"))


def test_logger_expands_per_task_vectors_even_for_one_task(tmp_path):
    sink = JsonlSink(tmp_path / "m.jsonl")
    logger = Logger([sink], ["only"])
    logger.record("train/alpha", torch.tensor([0.5]))
    logger.record("train/alpha", torch.tensor([1.5]))
    logger.record("perf/x", 2.0)
    assert logger.dump(7) == {"train/alpha/only": 1.0, "train/alpha_mean": 1.0, "perf/x": 2.0}
    logger.close()
    assert read_metrics(tmp_path / "m.jsonl") == [
        {"step": 7, "train/alpha/only": 1.0, "train/alpha_mean": 1.0, "perf/x": 2.0}
    ]
    assert not logger.accepts_images  # nothing to render heatmaps for


def test_console_sink_prints_one_line_per_evaluation(capsys):
    sink = ConsoleSink()
    sink.write(50, {"train/critic_loss_mean": 1.0})
    sink.write(
        100,
        {"eval/success_mean": 0.75, "eval/return_mean": -12.34, "perf/env_steps_per_s": 410.2},
    )
    assert capsys.readouterr().out == "step 100  success 0.75  return -12.3  env-steps/s 410\n"


def test_cosine_heatmap_is_an_rgb_image_red_for_conflict_blue_for_agreement():
    cosine = np.array([[1.0, -1.0], [-1.0, 1.0]])
    image = cosine_heatmap(cosine, ["a", "b"], "critic")
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    r, g, b = (image[..., i].astype(int) for i in range(3))
    assert ((r > 80) & (g < 30) & (b < 60)).sum() > 1000  # the two dark red cells
    assert ((b > 80) & (r < 30) & (g < 60)).sum() > 1000  # the two dark blue cells


def test_section_timer_sums_and_resets_on_cpu():
    timer = SectionTimer("cpu")
    for _ in range(3):
        with timer.section():
            torch.ones(100, 100).sum()
    first = timer.take()
    assert first > 0 and timer.take() == 0.0


class BrokenSink(Sink):
    """An optional sink whose every write fails (a plug-in with a bug, a full remote disk)."""

    def write(self, step, metrics):
        raise OSError("no space left")

    def close(self):
        pass


def test_a_failing_metrics_file_stops_the_run_but_other_sinks_only_warn(tmp_path, capsys):
    metrics = JsonlSink(tmp_path / "metrics.jsonl")
    logger = Logger([BrokenSink(), metrics], TASKS)
    logger.dump(1, {"eval/success_mean": 0.5})
    logger.dump(2, {"eval/success_mean": 0.5})
    err = capsys.readouterr().err
    assert err.count("warning: BrokenSink.write failed (OSError: no space left)") == 1
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]
    metrics.close()  # e.g. the disk went away: writing raises
    with pytest.raises(MtrlError, match=r"JsonlSink.write failed .*checkpoint is intact"):
        logger.dump(3, {"eval/success_mean": 0.6})
