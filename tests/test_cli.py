"""The mtrl command line end to end: short real runs on the cheap suite and on Meta-World MT10."""

import json

import pytest
import yaml

from mtrl.cli import main
from mtrl.logging import read_metrics

FAST = [
    "agent.hidden=[32, 32]",
    "agent.batch_size=16",
    "logger.progress=false",
    "logger.every=50",
    "eval.episodes=2",
]


def run_dir_of(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_train_cheap_suite_writes_the_run_directory(tmp_path, capsys):
    code = main(
        [
            "train",
            "quickstart",
            f"out={tmp_path}",
            "steps=200",
            "warmup=50",
            "eval.every=100",
            "checkpoint.every=100",
            "surgery=cagrad",
            "surgery.c=0.5",
            *FAST,
        ]
    )
    assert code == 0
    run = run_dir_of(tmp_path)
    assert run.name.startswith("cheap4__cagrad__seed0__")
    assert {"config.yaml", "metrics.jsonl", "checkpoint.pt", "summary.json"} <= {
        p.name for p in run.iterdir()
    }
    config = yaml.safe_load((run / "config.yaml").read_text())
    options = {  # defaults filled in
        "c": 0.5,
        "rescale": 1,
        "tol": 1e-10,
        "max_iter": 200,
        "solver": "auto",
        "device_iters": 12,
    }
    assert config["surgery"] == {"name": "cagrad", "networks": "both", "options": options}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 200 and set(summary["success"]) == {
        "goal000",
        "goal090-inv",
        "goal180",
        "goal270-inv",
    }
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/success_mean" in r] == [100, 200]
    train_rows = [r for r in rows if "train/critic_loss_mean" in r]
    assert train_rows and "train/critic_loss/goal090-inv" in train_rows[0]
    assert "surgery/critic/conflict_fraction" in train_rows[0]
    out = capsys.readouterr().out
    assert "goal270-inv" in out and "mean" in out and str(run) in out


def test_train_on_metaworld_mt10(tmp_path):
    code = main(
        [
            "train",
            "quickstart",
            "suite=mt10",
            "suite.max_episode_steps=15",
            f"out={tmp_path}",
            "steps=20",
            "warmup=10",
            "eval.every=0",
            "eval.episodes=1",
            "surgery=pcgrad",
            *FAST,
        ]
    )
    assert code == 0
    summary = json.loads((run_dir_of(tmp_path) / "summary.json").read_text())
    assert len(summary["success"]) == 10 and "reach-v3" in summary["success"]


def test_eval_command_reads_a_run(tmp_path, capsys):
    main(["train", "quickstart", f"out={tmp_path}", "steps=60", "warmup=30", "eval.every=0", *FAST])
    capsys.readouterr()
    assert main(["eval", str(run_dir_of(tmp_path)), "--episodes", "1"]) == 0
    assert "goal180" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "quickstart", "sed=1"], "unknown config key 'sed'"),
        (["train", "quickstart", "suite=mt11"], "unknown suite 'mt11' (did you mean: mt10"),
        (["train", "nope"], "unknown experiment 'nope'"),
        (["train", "resume=/does/not/exist"], "is not a run directory"),
        (["eval", "/does/not/exist"], "is not a run directory"),
        (["envs", "mt11"], "unknown suite 'mt11'"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrl: error: ") and message in err and "\n" not in err


def test_listing_commands(capsys):
    assert main(["aggregators"]) == 0
    out = capsys.readouterr().out
    assert "pcgrad" in out and "c=0.4" in out
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "mt10" in out and "cheap4" in out
    assert main(["envs", "cheap4"]) == 0
    assert "goal090-inv" in capsys.readouterr().out


def test_help_explains_overrides(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("surgery=NAME", "resume=RUN_DIR", "logger.wandb", "eval.episodes"):
        assert key in out


def test_env_returning_nan_stops_with_a_clear_error_and_an_intact_checkpoint(tmp_path, capsys):
    tasks = (
        "[{id: Pendulum-v1, name: pendulum}, "
        '{id: "rollout_faulty_env:FaultyEnv", name: faulty, kwargs: {nan_step: 25}}]'
    )
    code = main(
        [
            "train",
            "quickstart",
            "suite=classic-control",
            f"suite.tasks={tasks}",
            "suite.max_episode_steps=10",
            f"out={tmp_path}",
            "steps=200",
            "warmup=10",
            "checkpoint.every=20",
            "eval.every=0",
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mtrl: error: the env of task 'faulty' (task 1) returned NaN")
    assert "at step 25" in err and "not a training divergence" in err
    run = run_dir_of(tmp_path)
    from mtrl.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoint.pt")["step"] == 20


def test_train_help_lists_every_key_and_real_examples(capsys):
    from mtrl.agents.config import AgentConfig
    from mtrl.cli import TRAIN_HELP
    from mtrl.config import TrainConfig, experiment_path
    from mtrl.confighelp import config_keys
    from mtrl.envs.config import SuiteConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    keys = [k for k, *_ in config_keys(TrainConfig) if not k.startswith(("agent.", "surgery.o"))]
    keys = [k for k in keys if k not in ("suite_overrides", "agent_preset")]
    keys += [k for k, *_ in config_keys(AgentConfig, "agent.")]
    keys += [k for k, *_ in config_keys(SuiteConfig, "suite.")]
    for key in [*keys, "logger.progress", "logger.tensorboard", "eval.num_workers"]:
        assert f"  {key}=" in text, key
    assert "(0: only at the end)" in text  # what every=0 means
    for line in TRAIN_HELP.splitlines():
        words = line.split()
        if words[:2] == ["mtrl", "train"] and "=" not in words[2]:
            experiment_path(words[2])  # raises if the example names no experiment


def test_aggregators_lists_each_option_once_with_its_type(capsys):
    assert main(["aggregators"]) == 0
    out = capsys.readouterr().out
    assert out.count("surgery.c=0.4  (number >= 0)") == 1
    assert out.count("surgery.reduction=sum  (sum|mean)") == 1
    assert "generator" not in out and "surgery.seed" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "runs/x", "--episodes", "0"], "argument --episodes: must be >= 1, got 0"),
        (["eval", "runs/x", "--episodes", "-2"], "argument --episodes: must be >= 1, got -2"),
        (["eval", "runs/x", "--num-workers", "-1"], "argument --num-workers: must be >= 0"),
        (["compare", "runs/x", "--step", "0"], "argument --step: must be >= 1, got 0"),
        (["compare", "runs/x", "--step", "-5"], "argument --step: must be >= 1, got -5"),
        (["compare", "runs/x", "--reps", "many"], "argument --reps: expected an integer"),
    ],
)
def test_bad_numeric_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
