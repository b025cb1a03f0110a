"""mtrl compare: rliable statistics against hand-computed values, and the command end to end on
tiny real runs of the cheap suite (made once for the module)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from mtrl.cli import main
from mtrl.compare import stats
from mtrl.compare.runs import expand_paths, load_run
from mtrl.config import resolve_config
from mtrl.errors import MtrlError
from mtrl.logging import read_metrics
from mtrl.trainer import Trainer

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [  # learns a little in 200 steps, so success is not all zeros
    "agent.hidden=[64, 64]",
    "agent.batch_size=32",
    "agent.actor_lr=0.003",
    "agent.critic_lr=0.003",
    "warmup=50",
    "eval.every=50",
    "eval.episodes=2",
    "logger.every=50",
    "logger.progress=false",
    "checkpoint.every=0",
]


# --------------------------------------------------------------------------- statistics
def test_iqm_drops_the_lowest_and_highest_quarter():
    # 8 scores: int(0.25 * 8) = 2 cut at each end, mean of 3, 4, 5, 6
    assert stats.iqm([[8, 1, 7, 2], [3, 6, 4, 5]]) == pytest.approx(4.5)
    # 10 scores: int(2.5) = 2 cut at each end (no fractional weights): mean of 0, 1, 1, 1, 1, 1
    scores = np.array([[0, 0, 0, 1, 1], [1, 1, 1, 10, 10]])
    assert stats.iqm(scores) == pytest.approx(5 / 6)
    # 3 scores: int(0.75) = 0, nothing is cut (as scipy.stats.trim_mean)
    assert stats.iqm([[1], [2], [9]]) == pytest.approx(4.0)


def test_iqm_is_rliables_trim_mean_and_batches():
    rng = np.random.default_rng(3)
    for shape in [(3, 10), (5, 7), (1, 1), (2, 3)]:
        x = rng.random(shape)
        expected = scipy.stats.trim_mean(x, proportiontocut=0.25, axis=None)
        assert stats.iqm(x) == pytest.approx(expected)
    batch = rng.random((6, 3, 10))
    assert stats.iqm(batch) == pytest.approx([stats.iqm(b) for b in batch])
    assert stats.mean(batch) == pytest.approx(batch.mean(axis=(1, 2)))


def test_stratified_bootstrap_resamples_runs_per_task():
    scores = np.array([[0.0, 10.0, 20.0], [1.0, 11.0, 21.0], [2.0, 12.0, 22.0]])
    rng = np.random.default_rng(0)
    rows = np.random.default_rng(0).integers(0, 3, size=(50, 3, 3))
    resampled = stats.stratified_bootstrap(scores, 50, rng)
    for r in range(50):  # rliable: scores[indices, task] with indices [runs, tasks] per replicate
        for j in range(3):
            assert list(resampled[r, :, j]) == [scores[i, j] for i in rows[r, :, j]]
    # runs are drawn independently per task: some replicate mixes run 0 of task 0 with run 1 of
    # task 1, which resampling whole runs never does
    mixed = (resampled[:, :, 1] - resampled[:, :, 0] != 10.0).any()
    assert mixed


def test_stratified_bootstrap_distribution_of_the_mean():
    # 2 runs x 2 tasks, runs scoring 0 and 1: each task's mean is 0, 0.5 or 1 independently,
    # so the overall mean is 0, .25, .5, .75, 1 with probabilities 1, 4, 6, 4, 1 / 16
    scores = np.array([[0.0, 0.0], [1.0, 1.0]])
    values = stats.mean(stats.stratified_bootstrap(scores, 16000, np.random.default_rng(1)))
    levels, counts = np.unique(values, return_counts=True)
    assert levels.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert counts / counts.sum() == pytest.approx(np.array([1, 4, 6, 4, 1]) / 16, abs=0.015)
    # 1/16 of the mass at each end: the 95% percentile interval is [0, 1]
    assert stats.bootstrap_ci(scores, stats.mean, reps=4000, seed=0) == (0.0, 1.0)


def test_bootstrap_ci_values():
    assert stats.percentile_ci(np.arange(101)) == pytest.approx((2.5, 97.5))
    assert stats.percentile_ci(np.arange(101), size=0.5) == pytest.approx((25.0, 75.0))
    assert stats.bootstrap_ci(np.full((3, 4), 0.7), stats.iqm) == pytest.approx((0.7, 0.7))
    # one run: every replicate is the run itself
    one = np.array([[0.2, 0.4, 1.0]])
    assert stats.bootstrap_ci(one, stats.mean) == pytest.approx((one.mean(), one.mean()))
    rng = np.random.default_rng(5)
    x = rng.random((5, 10))
    ci = stats.bootstrap_ci(x, stats.iqm, reps=500, seed=7)
    assert ci == stats.bootstrap_ci(x, stats.iqm, reps=500, seed=7)
    assert ci != stats.bootstrap_ci(x, stats.iqm, reps=500, seed=8)
    assert ci[0] < stats.iqm(x) < ci[1]
    # the same replicates whether the bootstrap runs in one chunk or many
    reference = stats.percentile_ci(
        stats.iqm(stats.stratified_bootstrap(x, 500, np.random.default_rng(7)))
    )
    assert ci == pytest.approx(reference)


def test_bootstrap_curve_band_over_seeds():
    curves = np.array([[0.0, 0.5, 1.0], [0.0, 1.0, 1.0]])
    mean, low, high = stats.bootstrap_curve(curves, reps=2000, seed=0)
    assert mean.tolist() == [0.0, 0.75, 1.0]
    assert low.tolist() == [0.0, 0.5, 1.0] and high.tolist() == [0.0, 1.0, 1.0]


# --------------------------------------------------------------------------- real runs
def train(out: Path, surgery: str, seed: int, steps: int = 200, suite: str = "cheap4") -> Path:
    overrides = [f"surgery={surgery}", f"seed={seed}", f"steps={steps}", f"out={out}"]
    cfg = resolve_config("quickstart", [*TINY, *overrides, f"suite={suite}"])
    trainer = Trainer(cfg, run_dir=out / f"{suite}__{surgery}__seed{seed}")
    trainer.run()
    return trainer.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four finished cheap4 runs: mean and pcgrad, seeds 0 and 1, 200 steps, evals every 50."""
    out = tmp_path_factory.mktemp("runs")
    for surgery in ("mean", "pcgrad"):
        for seed in (0, 1):
            train(out, surgery, seed)
    return out


def copy_run(src: Path, dst: Path, keep_until: int | None = None, summary: bool = True) -> Path:
    """A copy of a run, optionally cut to its first steps and without summary.json (running)."""
    shutil.copytree(src, dst)
    if keep_until is not None:
        rows = [r for r in read_metrics(dst / "metrics.jsonl") if r["step"] <= keep_until]
        (dst / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not summary:
        (dst / "summary.json").unlink()
    return dst


def summaries(out: Path, pattern: str) -> list[dict]:
    return [json.loads((p / "summary.json").read_text()) for p in sorted(out.glob(pattern))]


def test_compare_writes_the_report_with_the_runs_numbers(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "*"), "--out", str(out), "--reps", "500"]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # same suite, same length, all finished: no warnings
    for name in ["comparison.md", "comparison.json", "comparison.csv"]:
        assert (out / name).stat().st_size > 0
    for name in ["success_curve.png", "task_success.png", "conflict.png"]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    report = (out / "comparison.md").read_text()
    for name in ["success_curve.png", "task_success.png", "conflict.png"]:
        assert f"]({name})" in report

    result = json.loads((out / "comparison.json").read_text())
    assert result["suite"] == "cheap4" and result["step"] == 200 and result["baseline"] == "mean"
    assert list(result["methods"]) == ["mean", "pcgrad"]
    nonzero = False
    for method in ("mean", "pcgrad"):
        m = result["methods"][method]
        done = summaries(runs, f"cheap4__{method}__seed*")
        scores = np.array([list(s["success"].values()) for s in done])
        nonzero |= scores.any()
        assert m["n"] == 2 and sorted(m["seeds"]) == [0, 1]
        assert m["success_mean"] == pytest.approx(np.mean([s["success_mean"] for s in done]))
        assert m["iqm"] == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))
        assert m["task_success"] == pytest.approx(
            dict(zip(done[0]["success"], scores.mean(0), strict=True))
        )
        assert m["iqm_ci"][0] <= m["iqm"] <= m["iqm_ci"][1]
        per_step = np.mean([s["wall_s"] / (s["steps"] * 4) for s in done])
        assert m["seconds_per_env_step"] == pytest.approx(per_step)
        assert m["curve"]["steps"] == [50, 100, 150, 200]
        assert set(m["conflict"]) == {"critic", "actor"}
    assert nonzero  # the runs learned something, so the checks above compare real values
    assert result["methods"]["mean"]["time_vs_baseline"] == pytest.approx(1.0)

    lines = printed.out.splitlines()
    assert lines[0].startswith("cheap4: 4 runs grouped by aggregator")
    (mean_row,) = [line for line in lines if line.startswith("mean ")]
    assert f"{result['methods']['mean']['success_mean']:.3f} [" in mean_row
    assert mean_row.endswith("1.00x mean")
    csv_lines = (out / "comparison.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,runs,step,success_mean") and len(csv_lines) == 3


def test_compare_at_a_chosen_step_uses_the_evaluations_there(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "*"), "--out", str(out), "--step", "100"]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["step"] == 100 and capsys.readouterr().err == ""
    for method in ("mean", "pcgrad"):
        rows = [
            next(r for r in read_metrics(d / "metrics.jsonl") if r["step"] == 100)
            for d in sorted(runs.glob(f"cheap4__{method}__seed*"))
        ]
        expected = np.mean([r["eval/success_mean"] for r in rows])
        assert result["methods"][method]["success_mean"] == pytest.approx(expected)
        assert result["methods"][method]["curve"]["steps"] == [50, 100]
    assert main(["compare", str(runs / "*"), "--out", str(out), "--step", "300"]) == 2
    err = capsys.readouterr().err
    assert "--step 300: not reached by every run" in err and "and 1 more" in err


def fake_run(path: Path, template: Path, surgery: str, seed: int, success, wall_s: float):
    """A finished run directory with chosen final success per task (config from a real run)."""
    path.mkdir(parents=True)
    config = yaml.safe_load((template / "config.yaml").read_text())
    config["seed"], config["surgery"]["name"] = seed, surgery
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    tasks = ["goal000", "goal090-inv", "goal180", "goal270-inv"]
    rows = [{"step": 50, "eval/success_mean": 0.0, **{f"eval/success/{t}": 0.0 for t in tasks}}]
    final = dict(zip(tasks, success, strict=True))
    rows.append(
        {"step": 100, "eval/success_mean": float(np.mean(success)), "perf/env_steps_per_s": 1.0}
        | {f"eval/success/{t}": v for t, v in final.items()}
    )
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"steps": 100, "success": final, "success_mean": float(np.mean(success))}
    (path / "summary.json").write_text(json.dumps({**summary, "wall_s": wall_s}))


def test_hand_computed_comparison(runs, tmp_path, capsys):
    template = runs / "cheap4__mean__seed0"
    mean = [[1, 1, 0, 0], [1, 0.5, 0.5, 0], [1, 1, 1, 0]]
    for seed, success in enumerate(mean):
        fake_run(tmp_path / f"m{seed}", template, "mean", seed, success, wall_s=4.0)
    for seed, success in enumerate([[1, 1, 1, 1], [0, 0, 0, 0]]):
        fake_run(tmp_path / f"p{seed}", template, "pcgrad", seed, success, wall_s=6.0)
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "m*"), str(tmp_path / "p*"), "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    m, p = result["methods"]["mean"], result["methods"]["pcgrad"]
    # mean: 12 scores 0 0 0 0 .5 .5 1 1 1 1 1 1; IQM cuts 3 at each end: 0 .5 .5 1 1 1 -> 4/6
    assert m["success_mean"] == pytest.approx(7 / 12) and m["iqm"] == pytest.approx(4 / 6)
    assert list(m["task_success"].values()) == pytest.approx([1, 2.5 / 3, 0.5, 0])
    assert m["success_std"] == pytest.approx(np.std([0.5, 0.5, 0.75], ddof=1))
    # pcgrad: 0 0 0 0 1 1 1 1, cut 2 at each end -> 0 0 1 1
    assert p["success_mean"] == pytest.approx(0.5) and p["iqm"] == pytest.approx(0.5)
    # a resample holds K ~ Binomial(8, 1/2) ones and its IQM is clip(K - 2, 0, 4) / 4:
    # 0 with probability 37/256 and 1 with 37/256, both above 2.5%
    assert p["iqm_ci"] == [0.0, 1.0]
    # wall-clock per env step: wall_s / (100 steps x 4 tasks)
    assert m["seconds_per_env_step"] == pytest.approx(0.01)
    assert p["seconds_per_env_step"] == pytest.approx(0.015)
    assert p["time_vs_baseline"] == pytest.approx(1.5)
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pcgrad")]
    assert row.split()[1:3] == ["2", "0.500"] and row.endswith("15.000  1.50x mean")


def test_mismatched_suites_are_one_line_errors(runs, tmp_path, capsys):
    other = train(tmp_path, "mean", 0, steps=10, suite="cheap16")
    code = main(["compare", str(runs / "*"), str(other), "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "different suites" in err and "cheap4 (4 runs)" in err and "cheap16 (1 run)" in err


def test_bad_paths_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nothing__*")]) == 2
    assert "matches no file or directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(empty), "--out", str(tmp_path / "cmp")]) == 2
    assert "holds no run directories" in capsys.readouterr().err
    with pytest.raises(MtrlError, match="matches no file"):
        expand_paths([str(tmp_path / "missing")])


def test_shorter_running_and_empty_runs_are_reported(runs, tmp_path, capsys):
    mix = tmp_path / "mix"
    for name in ("cheap4__mean__seed0", "cheap4__mean__seed1", "cheap4__pcgrad__seed0"):
        copy_run(runs / name, mix / name)
    running = copy_run(
        runs / "cheap4__pcgrad__seed1", mix / "running", keep_until=100, summary=False
    )
    copy_run(runs / "cheap4__mean__seed1", mix / "warming-up", keep_until=49, summary=False)
    assert not load_run(running).finished and load_run(running).last_step == 100
    out = tmp_path / "cmp"
    assert main(["compare", str(mix / "*"), "--out", str(out), "--reps", "200"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("mtrl compare: warning: ") for line in err)
    assert "skipping" in err[0] and "warming-up: no evaluation yet" in err[0]
    assert "comparing all at step 100" in err[1] and "cheap4__mean__seed0 (200 steps)" in err[1]
    assert "1 run still running" in err[2] and err[2].endswith(": running")
    result = json.loads((out / "comparison.json").read_text())
    assert result["step"] == 100 and len(result["warnings"]) == 3
    pcgrad = result["methods"]["pcgrad"]
    assert pcgrad["n"] == 2 and pcgrad["curve"]["steps"] == [50, 100]
    rows = [read_metrics(mix / n / "metrics.jsonl") for n in pcgrad["runs"]]
    at_100 = [next(r["eval/success_mean"] for r in rs if r["step"] == 100) for rs in rows]
    assert pcgrad["success_mean"] == pytest.approx(np.mean(at_100))


def test_group_by_other_keys(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "*"), "--by", "seed", "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert list(result["methods"]) == ["seed=0", "seed=1"] and result["baseline"] is None
    assert all(m["time_vs_baseline"] is None for m in result["methods"].values())
    assert "n/a" in capsys.readouterr().out
    assert main(["compare", str(runs / "*"), "--by", "experiment", "--out", str(out)]) == 0
    assert list(json.loads((out / "comparison.json").read_text())["methods"]) == ["quickstart"]
    assert main(["compare", str(runs / "*"), "--by", "surgery.nme", "--out", str(out)]) == 2
    assert "no run has the config key 'surgery.nme'" in capsys.readouterr().err


def test_wandb_offline_upload(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no login
    out = tmp_path / "cmp"
    args = ["compare", str(runs / "cheap4__*"), "--out", str(out), "--wandb", "--reps", "100"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "W&B: no login found" in captured.err
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert f"W&B run: {run_dir}" in captured.out
    assert list(run_dir.glob("*.wandb"))
    media = run_dir / "files" / "media"
    names = sorted(p.name.split("_0_")[0] for p in (media / "images").glob("*.png"))
    assert names == ["conflict", "success_curve", "task_success"]
    (table,) = (media / "table").glob("comparison_*.table.json")
    table = json.loads(table.read_text())
    assert table["columns"][:3] == ["method", "runs", "step"]
    assert [row[:3] for row in table["data"]] == [["mean", 2, 200], ["pcgrad", 2, 200]]


def test_every_method_gets_its_own_colour_and_line_style():
    from types import SimpleNamespace

    from mtrl.compare.plots import _colors

    for count in (3, 10, 24):
        methods = [SimpleNamespace(label=f"m{i}") for i in range(count)]
        styles = _colors(SimpleNamespace(methods=methods))
        assert len(set(styles.values())) == count
