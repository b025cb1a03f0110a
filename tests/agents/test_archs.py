"""Architectures (agent.network): parameter counts as the reference code builds them, options
checked as one-line errors, and each combined with surgery in a real update."""

import pytest
import torch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.agents.registry import list_networks
from mtrl.cli import main
from mtrl.config import resolve_config

OBS, ACT, T = 39, 4, 10  # MT10


def dense(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def reference_film(in_features: int, out: int, width=400, depth=3, enc_w=50, enc_d=2, emb=50):
    """Parameters of metaworld_algorithms/nn/film.py (@30c9991) for one network: nn.Embed,
    the FiLM MLP (enc_d hidden layers, head 2 * (enc_d + 1)), the encoder (enc_d Dense layers
    then one to emb), the torso MLP on [encoder, embedding] (depth x width, head)."""
    embed = T * emb
    film = dense(emb, enc_w) + dense(enc_w, enc_w) * (enc_d - 1) + dense(enc_w, 2 * (enc_d + 1))
    encoder = dense(in_features, enc_w) + dense(enc_w, enc_w) * (enc_d - 1) + dense(enc_w, emb)
    torso = dense(2 * emb, width) + dense(width, width) * (depth - 1) + dense(width, out)
    return embed + film + encoder + torso


def reference_mlp(in_features: int, out: int, heads: int = 1, width=400, depth=3):
    """metaworld_algorithms/nn/base.py's MLP (heads=1) or nn/multi_head.py (one Dense head per
    task on the shared trunk), on the observation with its one-hot task id."""
    trunk = dense(in_features, width) + dense(width, width) * (depth - 1)
    return trunk + heads * dense(width, out)


def reference_moore(in_features: int, out: int, experts=4, width=400, depth=3):
    """Parameters of metaworld_algorithms/nn/moore.py (@30c9991): a bias-free Dense from the
    task id to the expert weights, K expert MLPs (depth - 1 hidden layers and a width-sized
    head, on the observation without the task id), one Dense head per task."""
    expert = dense(in_features, width) + dense(width, width) * (depth - 1)
    return dense(T, experts, bias=False) + experts * expert + T * dense(width, out)


REFERENCE = {
    # actor: obs -> mean and log-std; critic: twice (action, obs) -> Q
    "mlp": (reference_mlp(OBS + T, 2 * ACT), 2 * reference_mlp(OBS + T + ACT, 1)),
    "multihead": (
        reference_mlp(OBS + T, 2 * ACT, heads=T),
        2 * reference_mlp(OBS + T + ACT, 1, heads=T),
    ),
    # FiLM and MOORE drop the task id from their encoders' input
    "film": (reference_film(OBS, 2 * ACT), 2 * reference_film(OBS + ACT, 1)),
    "moore": (reference_moore(OBS, 2 * ACT), 2 * reference_moore(OBS + ACT, 1)),
}


def test_moore_orthonormalises_the_experts_per_sample():
    from mtrl.agents.archs.moore import orthonormalise

    x = torch.randn(2, 5, 4, 7, dtype=torch.float64)  # [E, N, K, D]
    basis = orthonormalise(x)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(basis @ basis.transpose(-1, -2), eye.expand(2, 5, 4, 4))
    # the first expert keeps its direction; each basis row lies in the span of the experts so far
    torch.testing.assert_close(
        basis[..., 0, :], x[..., 0, :] / x[..., 0, :].norm(dim=-1)[..., None]
    )
    coeffs = torch.linalg.lstsq(x[..., :2, :].transpose(-1, -2), basis[..., 1, :, None]).solution
    torch.testing.assert_close((x[..., :2, :].transpose(-1, -2) @ coeffs)[..., 0], basis[..., 1, :])


@pytest.mark.parametrize("network", sorted(REFERENCE))
def test_parameter_counts_match_the_reference_for_mt10(network):
    cfg = resolve_config("mt10-mtsac", [f"agent.network={network}"]).agent
    agent = MTSAC(OBS + T, ACT, T, cfg)
    actor = sum(p.numel() for p in agent.actor.parameters())
    critic = sum(p.numel() for p in agent.critic.parameters())
    assert (actor, critic) == REFERENCE[network]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.network=flim", "agent.network='flim': unknown network (did you mean: film?)"),
        (
            "agent.network_options.encoder_width=0",
            "agent.network_options.encoder_width=0: must be >= 1",
        ),
        (
            "agent.network_options.width=3",
            "unknown option agent.network_options.width for network 'film'",
        ),
    ],
)
def test_bad_network_settings_are_one_line_errors(override, message, capsys):
    argv = ["train", "quickstart", "agent.network=film", override, "out=/nonexistent/x"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_multihead_flag_goes_with_the_mlp_only(capsys):
    assert main(["train", "quickstart", "agent.network=film", "agent.multihead=true"]) == 2
    assert "multihead=true goes with network=mlp, not 'film'" in capsys.readouterr().err


def test_the_resolved_config_holds_every_option():
    cfg = resolve_config("quickstart", ["agent=mtsac-film"]).agent
    assert cfg.network == "film"
    assert cfg.network_options == {"encoder_width": 50, "encoder_depth": 2, "embedding_dim": 50}


@pytest.mark.parametrize("network", list(list_networks()))
@pytest.mark.parametrize("surgery", ["mean", "pcgrad", "famo"])
def test_every_architecture_trains_with_surgery(network, surgery):
    torch.manual_seed(0)
    cfg = AgentConfig(hidden=[16, 16], network=network)
    agent = MTSAC(8 + 4, 2, 4, cfg, SurgeryConfig(name=surgery))
    from batches import replay_batch

    before = [p.detach().clone() for p in agent.actor.parameters()]
    for step in range(2):
        out = agent.update(replay_batch(4, 8, 12, 2, seed=step), diagnostics=step == 1)
    assert all(torch.isfinite(v).all() for k, v in out.items() if k != "diagnostics")
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters(), strict=True))
