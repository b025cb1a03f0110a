"""One Stable-Baselines3 SAC per task (agent.algorithm=sb3-sac-per-task) end to end on the cheap
suite: its run directory, `mtrl compare` beside MT-SAC, `mtrl eval`, learning, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtrl.baselines.sb3_per_task import load_policy
from mtrl.cli import main
from mtrl.config import resolve_config
from mtrl.envs import load_suite
from mtrl.evaluation import eval_seed, evaluate
from mtrl.logging import read_metrics
from mtrl.rundir import make_device, read_run_config
from mtrl.runners import make_runner

TESTS_DIR = Path(__file__).resolve().parents[1]
TASKS = ["goal000", "goal090-inv", "goal180", "goal270-inv"]
TINY = [
    "agent.hidden=[64, 64]",
    "agent.batch_size=32",
    "warmup=50",
    "eval.every=50",
    "eval.episodes=2",
    "logger.every=50",
    "logger.progress=false",
    "torch_threads=1",
]
SB3 = ["agent.algorithm=sb3-sac-per-task", "surgery=mean"]


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 150-step MT-SAC run and a 150-step per-task SAC run of quickstart (cheap4, seed 0)."""
    out = {}
    for label, extra in (("mean", ["surgery=mean"]), ("sb3", SB3)):
        out[label] = tmp_path_factory.mktemp(label)
        argv = ["train", "quickstart", f"out={out[label]}", "steps=150", "checkpoint.every=100"]
        assert main([*argv, *TINY, *extra]) == 0
    return {label: only_run(folder) for label, folder in out.items()}


def test_run_directory_matches_mtsac(runs):
    sb3 = runs["sb3"]
    assert sb3.name.startswith("cheap4__sb3-sac-per-task__seed0__")
    assert {"config.yaml", "metrics.jsonl", "summary.json", "system.json", "models"} <= {
        p.name for p in sb3.iterdir()
    }
    assert sorted(p.name for p in (sb3 / "models").iterdir()) == [
        f"{i:02d}-{name}.zip" for i, name in enumerate(TASKS)
    ]
    config = yaml.safe_load((sb3 / "config.yaml").read_text())
    assert config["agent"]["algorithm"] == "sb3-sac-per-task"
    assert read_run_config(sb3).agent.algorithm == "sb3-sac-per-task"
    summaries = {k: json.loads((run / "summary.json").read_text()) for k, run in runs.items()}
    assert summaries["sb3"].keys() == summaries["mean"].keys()
    assert summaries["sb3"]["aggregator"] == "sb3-sac-per-task"
    assert summaries["sb3"]["steps"] == 150 and list(summaries["sb3"]["success"]) == TASKS
    assert summaries["sb3"]["wall_s"] > 0

    rows = {k: read_metrics(run / "metrics.jsonl") for k, run in runs.items()}
    assert [r["step"] for r in rows["sb3"]] == [r["step"] for r in rows["mean"]] == [50, 100, 150]
    last = rows["sb3"][-1]
    for key in ("eval/success_mean", "eval/return_mean", "train/episode_return_mean"):
        assert key in last
    for name in ("critic_loss", "actor_loss", "alpha", "alpha_loss"):
        assert f"train/{name}_mean" in last
        assert {f"train/{name}/{task}" for task in TASKS} <= last.keys()
    perf = {k for k in last if k.startswith("perf/")}
    assert perf == {k for k in rows["mean"][-1] if k.startswith("perf/")} - {"perf/time_surgery_s"}
    assert "train/critic_loss_mean" not in rows["sb3"][0]  # no updates before warmup ends
    assert not any(k.startswith("surgery/") for r in rows["sb3"] for k in r)


def test_compare_puts_it_beside_mtsac(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(runs["mean"]), str(runs["sb3"]), "--out", str(out), "--reps", "50"])
    assert code == 0
    result = json.loads((out / "comparison.json").read_text())
    assert list(result["methods"]) == ["mean", "sb3-sac-per-task"]
    assert result["baseline"] == "mean"
    text = capsys.readouterr().out
    assert "sb3-sac-per-task" in text and "x mean" in text  # its time relative to MT-SAC


def test_saved_models_reproduce_the_last_evaluation(runs, capsys):
    run = runs["sb3"]
    cfg = read_run_config(run)
    policy, step = load_policy(run, cfg, make_device("cpu"))
    assert step == 150
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "eval/success_mean" in r]
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
    again = evaluate(policy, suite, cfg.eval.episodes, eval_seed(cfg.seed, len(evals) - 1))
    assert again.return_mean == pytest.approx(evals[-1]["eval/return_mean"], rel=1e-5)
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "(1 deterministic episodes per task, 150 steps)" in capsys.readouterr().out


def test_saved_models_act_on_rows_by_their_task_id(runs):
    """Evaluation rows come copy-major (and only the envs still running): each row goes to its
    own task's model whatever the order and number of rows."""
    run = runs["sb3"]
    cfg = read_run_config(run)
    policy, _ = load_policy(run, cfg, make_device("cpu"))
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
    obs = np.stack(
        [suite.make_env(t).reset(seed=c)[0] for c in range(2) for t in range(suite.num_tasks)]
    )
    actions = policy(obs)
    for i in range(len(obs)):
        np.testing.assert_allclose(policy(obs[i : i + 1])[0], actions[i], rtol=1e-6)
    order = np.random.default_rng(0).permutation(len(obs))[:5]
    np.testing.assert_allclose(policy(obs[order]), actions[order], rtol=1e-6)
    swapped = obs.copy()
    swapped[:, -suite.num_tasks :] = np.roll(swapped[:, -suite.num_tasks :], 1, axis=0)
    assert not np.allclose(policy(swapped), actions)  # the one-hot picks the model


def test_one_sac_per_task_solves_cheap4(tmp_path):
    # each point-mass task alone is solved within ~800 steps (seeds 0-3 all reach 1.0 by then);
    # a policy acting on the wrong task's rows, or broken learning rates, fails the inverted ones
    cfg = resolve_config(
        "quickstart",
        [
            *TINY,
            *SB3,
            "steps=800",
            "warmup=100",
            "eval.every=0",
            "eval.episodes=5",
            f"out={tmp_path}",
        ],
    )
    summary = make_runner(cfg).run()
    assert summary["success_mean"] >= 0.9, summary["success"]


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["agent=sb3-sac-per-task"],
            "trains without gradient surgery, but surgery is set to 'pcgrad'",
        ),
        ([*SB3, "surgery.networks=critic"], "trains without gradient surgery"),
        ([*SB3, "agent.multihead=true"], "agent.multihead does not apply to agent.algorithm="),
        (["agent.algorithm=sb3-sac-per-tsk"], "did you mean: sb3-sac-per-task"),
    ],
)
def test_bad_settings_are_one_line_errors(overrides, message, tmp_path, capsys):
    code, err = run_cli(capsys, "train", "quickstart", f"out={tmp_path}", *overrides)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_resume_is_a_one_line_error(runs, capsys):
    code, err = run_cli(capsys, "train", f"resume={runs['sb3']}", "steps=300")
    assert code == 2 and len(err) == 1 and "cannot be resumed" in err[0]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan_step: 30", "training diverged by step "),
        (
            "fail_step: 30",
            "env of task 'faulty' (task 1) raised during step: RuntimeError: step 30",
        ),
    ],
)
def test_nan_and_env_errors_are_one_line(fault, message, tmp_path, capsys):
    tasks = (
        "[{id: Pendulum-v1, name: pendulum}, "
        f'{{id: "rollout_faulty_env:FaultyEnv", name: faulty, kwargs: {{{fault}}}}}]'
    )
    code, err = run_cli(
        capsys,
        "train",
        "quickstart",
        *TINY,
        *SB3,
        "suite=classic-control",
        f"suite.tasks={tasks}",
        "suite.max_episode_steps=10",
        f"out={tmp_path}",
        "steps=100",
        "warmup=10",
        "eval.every=0",
        "checkpoint.every=20",
    )
    assert code == 2, err
    assert err[-1].startswith("mtrl: error: ") and message in err[-1], err
    if fault.startswith("nan"):
        assert "'faulty'" in err[-1] and "models" in err[-1]
