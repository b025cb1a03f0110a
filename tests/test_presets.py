"""The MT10/MT50 experiment presets match the Meta-World+ reference protocol (README table)."""

import pytest

from mtrl.config import resolve_config

# rainx0r/metaworld-algorithms@30c9991: examples/multi_task/mtsac_mt10.py, pcgrad_mt10.py and the
# config defaults (config/rl.py, optim.py, nn.py, networks.py, envs.py), in our per-task units.
METAWORLD_PLUS = {
    "steps": 2_000_000,
    "warmup": 4_000,
    "utd": 1,
    "buffer_size": 100_000,
    "eval.every": 20_000,
    "eval.episodes": 50,
    "eval.end_on_success": True,  # metaworld.evaluation switches terminate-on-success on
    "agent.hidden": [400, 400, 400],
    "agent.critics": 2,
    "agent.batch_size": 128,
    "agent.actor_lr": 3e-4,
    "agent.critic_lr": 3e-4,
    "agent.alpha_lr": 3e-4,
    "agent.adam_eps": 1e-5,
    "agent.grad_clip": 1.0,
    "agent.init": "metaworld",
    "agent.gamma": 0.99,
    "agent.tau": 0.005,
    "agent.init_alpha": 1.0,
    "agent.target_entropy": None,  # -|A|
    "agent.log_std_min": -20.0,
    "agent.log_std_max": 2.0,
}
SURGERY = {
    "mtsac": ("mean", {}),
    "pcgrad": ("pcgrad", {"reduction": "mean", "order": "shared", "solver": "auto"}),
}
CAGRAD_C = {"mt10": 0.9, "mt50": 0.5}  # the CAGrad paper's MTRL runs


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("suite", ["mt10", "mt50"])
@pytest.mark.parametrize("method", ["mtsac", "pcgrad", "cagrad"])
def test_protocol_presets_match_metaworld_plus(suite, method):
    cfg = resolve_config(f"{suite}-{method}")
    assert cfg.suite == suite
    assert {key: _get(cfg, key) for key in METAWORLD_PLUS} == METAWORLD_PLUS
    assert cfg.agent.multihead is False  # surgery compared on one architecture (README)
    if method == "cagrad":
        assert cfg.surgery.name == "cagrad"
        assert cfg.surgery.options["c"] == CAGRAD_C[suite] and cfg.surgery.options["rescale"] == 1
    else:
        assert (cfg.surgery.name, cfg.surgery.options) == SURGERY[method]
