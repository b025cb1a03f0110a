"""Run config resolution: presets, overrides read as meant, types and ranges, one-line errors."""

import pytest

from mtrl.cli import main
from mtrl.config import config_from_dict, config_to_dict, resolve_config
from mtrl.errors import MtrlError
from mtrl.yamlio import yaml_dump, yaml_load


def test_experiment_preset_and_overrides():
    cfg = resolve_config(
        "quickstart",
        [
            "seed=3",
            "surgery=cagrad",
            "surgery.c=0.9",
            "agent.hidden=[32, 32]",
            "eval.every=7",
            "suite.max_episode_steps=20",
            "logger.wandb=offline",
        ],
    )
    assert cfg.name == "quickstart" and cfg.suite == "cheap4" and cfg.seed == 3
    assert cfg.surgery.name == "cagrad"
    # the resolved config holds every option of the aggregator, defaults filled in
    assert cfg.surgery.options == {
        "c": 0.9,
        "rescale": 1,
        "tol": 1e-10,
        "max_iter": 200,
        "solver": "auto",
        "device_iters": 12,
    }
    assert cfg.agent.hidden == [32, 32] and cfg.agent_preset == "mtsac-small"
    assert cfg.agent.batch_size == 64  # from the preset
    assert cfg.eval.every == 7 and cfg.suite_overrides == {"max_episode_steps": 20}
    assert cfg.logger.wandb == "offline"
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict(yaml_load(yaml_dump(config_to_dict(cfg)))) == cfg


def test_surgery_mapping_in_experiment():
    cfg = resolve_config({"surgery": {"name": "pcgrad", "reduction": "mean"}})
    assert cfg.surgery.name == "pcgrad"
    assert cfg.surgery.options == {"reduction": "mean", "order": "per_task", "solver": "auto"}


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("logger.wandb=off", "logger.wandb", "off"),  # YAML 1.1 read this as false
        ("seed=010", "seed", 10),  # not octal 8
        ("out=2024-01-01", "out", "2024-01-01"),  # not a date
        ("name=on", "name", "on"),  # not true
        ("name=2024.10", "name", "2024.10"),  # text keys keep the text as written
        ("logger.project=123", "logger.project", "123"),
        ("logger.entity=null", "logger.entity", None),
        ("steps=2e6", "steps", 2_000_000),  # an integral float is an integer
        ("agent.actor_lr=3e-3", "agent.actor_lr", 0.003),  # YAML 1.1 read this as text
        ("agent.grad_clip=1", "agent.grad_clip", 1.0),
        ("agent.target_entropy=-4", "agent.target_entropy", -4.0),
        ("checkpoint.replay=false", "checkpoint.replay", False),
        ("device=cuda:1", "device", "cuda:1"),
        ("agent.hidden=[64, 64]", "agent.hidden", [64, 64]),
    ],
)
def test_values_are_read_as_meant(override, key, value):
    cfg = resolve_config("quickstart", [override])
    got = cfg
    for part in key.split("."):
        got = getattr(got, part)
    assert got == value and type(got) is type(value)


def test_aggregator_option_values_are_read_by_their_types():
    cfg = resolve_config("quickstart", ["surgery=cagrad", "surgery.c=1", "surgery.rescale=2"])
    assert cfg.surgery.options["c"] == 1.0 and isinstance(cfg.surgery.options["c"], float)
    assert cfg.surgery.options["rescale"] == 2
    cfg = resolve_config("quickstart", ["surgery.reduction=mean", "surgery.order=shared"])
    assert cfg.surgery.options == {"reduction": "mean", "order": "shared", "solver": "auto"}


# Each bad value gives one line naming the key, the value and what is allowed.
BAD_VALUES = [
    ("surgery=cagrad surgery.c=yes", "surgery.c='yes': expected a number"),
    ("surgery=cagrad surgery.c=-1", "surgery.c=-1: must be >= 0"),
    ("surgery=cagrad surgery.rescale=5", "surgery.rescale=5: must be <= 2"),
    ("surgery=cagrad surgery.rescale=true", "surgery.rescale=true: expected an integer"),
    ("surgery=cagrad surgery.tol=abc", "surgery.tol='abc': expected a number"),
    ("surgery=cagrad surgery.max_iter=0", "surgery.max_iter=0: must be >= 1"),
    ("surgery.reduction=max", "surgery.reduction='max': must be sum or mean"),
    ("surgery.generator=abc", "unknown option surgery.generator for aggregator 'pcgrad'"),
    ("surgery.seed=1", "unknown option surgery.seed for aggregator 'pcgrad'"),
    ("surgery=cagrad surgery.cc=1", "unknown option surgery.cc for aggregator 'cagrad' (did you"),
    ("surgery.c=0.5", "unknown option surgery.c for aggregator 'pcgrad'; its options: reduction,"),
    ("surgery.order=random", "surgery.order='random': must be per_task or shared"),
    ("surgery=pcgard", "unknown aggregator 'pcgard' (did you mean: pcgrad"),
    ("surgery.networks=all", "surgery.networks='all': must be both, critic or actor"),
    ("seed=-1", "seed=-1: must be >= 0"),
    ("seed=4294967296", "seed=4294967296: must be < 4294967296"),
    ("seed=true", "seed=true: expected an integer"),
    ("steps=3:20", "steps='3:20': expected an integer"),
    ("steps=many", "steps='many': expected an integer"),
    ("steps=2.5", "steps=2.5: expected an integer"),
    ("steps=0", "steps=0: must be >= 1"),
    ("warmup=-1", "warmup=-1: must be >= 0"),
    ("utd=0", "utd=0: must be >= 1"),
    ("buffer_size=10", "buffer_size=10 is below agent.batch_size=64"),
    ("num_workers=-2", "num_workers=-2: must be >= 0"),
    ("step_timeout=0", "step_timeout=0: must be > 0"),
    ("device=tpu", "device='tpu': must be cpu, cuda or cuda:<index>"),
    ("out=", "out='': needs at least 1 item(s)"),
    ("agent.hidden=[0]", "agent.hidden[0]=0: must be >= 1"),
    ("agent.hidden=[]", "agent.hidden=[]: needs at least 1 item(s)"),
    ("agent.hidden=400", "agent.hidden=400: expected a list"),
    ("agent.critics=0", "agent.critics=0: must be >= 1"),
    ("agent.gamma=2", "agent.gamma=2: must be <= 1"),
    ("agent.gamma=.nan", "agent.gamma=NaN: expected a finite number"),
    ("agent.tau=0", "agent.tau=0: must be > 0"),
    ("agent.actor_lr=-3e-4", "agent.actor_lr=-0.0003: must be > 0"),
    ("agent.grad_clip=-1", "agent.grad_clip=-1: must be > 0"),
    ("agent.init_alpha=0", "agent.init_alpha=0: must be > 0"),
    ("agent.log_std_min=5", "agent: log_std_min (5) must be below log_std_max (2)"),
    ("agent.batch_size=0", "agent.batch_size=0: must be >= 1"),
    ("agent.multihead=1", "agent.multihead=1: expected true or false"),
    ("agent.hiden=[8]", "unknown config key 'agent.hiden' (did you mean: hidden"),
    ("agent=mtsak", "unknown agent 'mtsak' (did you mean: mtsac"),
    ("eval.episodes=0", "eval.episodes=0: must be >= 1"),
    ("eval.every=-5", "eval.every=-5: must be >= 0"),
    ("logger.every=0", "logger.every=0: must be >= 1"),
    ("logger.wandb=maybe", "logger.wandb='maybe': must be online, offline or off"),
    ("logger.wandb=false", "logger.wandb='false': must be online, offline or off"),
    ("logger.wandb_timeout=-1", "logger.wandb_timeout=-1: must be > 0"),
    ("logger.progress=yes", "logger.progress='yes': expected true or false"),
    ("checkpoint.replay=1", "checkpoint.replay=1: expected true or false"),
    ("checkpoint.every=-1", "checkpoint.every=-1: must be >= 0"),
    ("suite.max_episode_steps=0", "suite.max_episode_steps=0: must be >= 1"),
    ("suite.num_tasks=0", "suite.num_tasks=0: must be >= 1"),
    ("suite.reward_scales=[1,-2]", "suite.reward_scales[1]=-2: must be > 0"),
    ("suite.reward_version=v3", "suite.reward_version='v3': must be v2 or v1"),
    ("suite.max_episode_step=3", "unknown config key 'suite.max_episode_step' (did you mean"),
    ("sed=1", "unknown config key 'sed' (did you mean: seed"),
    ("noequals", "not of the form key=value"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES)
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(MtrlError) as info:
        resolve_config("quickstart", overrides.split())
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override", ["agent.critics=0", "surgery.tol=abc", "suite.max_episode_steps=0", "seed=-1"]
)
def test_bad_values_stop_before_a_run_directory_exists(override, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "quickstart", f"out={out}", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtrl: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_missing_experiment_lists_presets():
    with pytest.raises(
        MtrlError, match=r"unknown experiment 'quickstrat'.*did you mean: quickstart"
    ):
        resolve_config("quickstrat")
    with pytest.raises(MtrlError, match="experiment file not found"):
        resolve_config("nowhere/exp.yaml")


def test_preset_files_read_as_yaml_1_2(tmp_path):
    """Experiment files use the same reading: ``off`` stays text, ``010`` is ten."""
    path = tmp_path / "exp.yaml"
    path.write_text("suite: cheap4\nseed: 010\nlogger: {wandb: off}\nagent.actor_lr: 3e-4\n")
    cfg = resolve_config(path)
    assert cfg.seed == 10 and cfg.logger.wandb == "off" and cfg.agent.actor_lr == 3e-4


def test_saved_configs_read_back_in_yaml_1_1_and_1_2():
    import yaml

    cfg = resolve_config("quickstart", ["name=on", "out=010", "logger.project=off"])
    text = yaml_dump(config_to_dict(cfg))
    assert yaml.safe_load(text) == yaml_load(text) == config_to_dict(cfg)
