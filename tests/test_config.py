"""Run config resolution: presets, overrides and one-line errors."""

import pytest

from mtrl.config import config_from_dict, config_to_dict, resolve_config
from mtrl.errors import MtrlError


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
    assert cfg.surgery.name == "cagrad" and cfg.surgery.options == {"c": 0.9}
    assert cfg.agent.hidden == [32, 32] and cfg.agent_preset == "mtsac-small"
    assert cfg.agent.batch_size == 64  # from the preset
    assert cfg.eval.every == 7 and cfg.suite_overrides == {"max_episode_steps": 20}
    assert cfg.logger.wandb == "offline"
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_surgery_mapping_in_experiment():
    cfg = resolve_config({"surgery": {"name": "pcgrad", "reduction": "mean"}})
    assert cfg.surgery.name == "pcgrad" and cfg.surgery.options == {"reduction": "mean"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sed=1", r"unknown config key 'sed' \(did you mean: seed"),
        ("surgery=pcgard", r"unknown aggregator 'pcgard' \(did you mean: pcgrad"),
        (
            "surgery.c=0.5",
            r"unknown option surgery.c for aggregator 'pcgrad'; its options: reduction",
        ),
        ("agent.hiden=[8]", r"unknown config key 'agent.hiden' \(did you mean: hidden"),
        ("agent=mtsak", r"unknown agent 'mtsak' \(did you mean: mtsac"),
        ("steps=many", r"steps: expected an integer, got 'many'"),
        ("steps=0", r"steps must be >= 1"),
        ("logger.wandb=maybe", r"logger.wandb: 'maybe' is not one of"),
        ("device=tpu", r"device must be cpu or cuda"),
        ("noequals", r"not of the form key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(MtrlError, match=message) as info:
        resolve_config("quickstart", [override])
    assert "\n" not in str(info.value)


def test_missing_experiment_lists_presets():
    with pytest.raises(
        MtrlError, match=r"unknown experiment 'quickstrat'.*did you mean: quickstart"
    ):
        resolve_config("quickstrat")
    with pytest.raises(MtrlError, match="experiment file not found"):
        resolve_config("nowhere/exp.yaml")


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads 3e-3 as a string; the override and preset parser reads it as a float."""
    cfg = resolve_config("quickstart", ["agent.actor_lr=3e-3", "agent.hidden=[64, 64]"])
    assert cfg.agent.actor_lr == pytest.approx(0.003) and isinstance(cfg.agent.actor_lr, float)
    with pytest.raises(MtrlError, match="seed"):
        resolve_config("quickstart", ["seed=e5"])
