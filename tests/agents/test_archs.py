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


def reference_paco(in_features: int, out: int, sets=5, width=400, depth=3):
    """Parameters of metaworld_algorithms/nn/paco.py (@30c9991): w_tau, a Dense (with bias) from
    the task id to the K set weights, then depth CompositionalDense layers of width and a
    CompositionalDense head, each K Dense layers, on the observation without the task id.
    MT10 actor: 55 + 5 * 16,000 + 2 * 5 * 160,400 + 5 * 3,208 = 1,700,095; critic (twice):
    55 + 5 * 17,600 + 2 * 5 * 160,400 + 5 * 401 = 1,694,060."""
    torso = dense(in_features, width) + dense(width, width) * (depth - 1) + dense(width, out)
    return dense(T, sets) + sets * torso


def reference_care(in_features: int, out: int, experts=6, enc_w=50, enc_d=2, emb=50, width=400):
    """Parameters of metaworld_algorithms/nn/care.py (@30c9991): nn.Embed, the context MLP
    ("task_embedding_mlp": enc_d layers of enc_w, head emb), the attention MLP (head K), K expert
    MLPs on the observation without the task id (head emb), the torso MLP on [encoder, context]
    (3 x width, head). MT10 actor: 500 + 7,650 + 5,406 + 6 * 7,100 + 364,408 = 420,564; critic
    (twice): 500 + 7,650 + 5,406 + 6 * 7,300 + 361,601 = 418,957."""
    embed = T * emb
    encoder = dense(enc_w, enc_w) * (enc_d - 1)  # the hidden layers after the first
    context = dense(emb, enc_w) + encoder + dense(enc_w, emb)
    attention = dense(emb, enc_w) + encoder + dense(enc_w, experts)
    expert = dense(in_features, enc_w) + encoder + dense(enc_w, emb)
    torso = dense(2 * emb, width) + dense(width, width) * 2 + dense(width, out)
    return embed + context + attention + experts * expert + torso


def reference_soft_modules(
    in_features: int, out: int, width=256, module_w=256, depth=2, m=2, emb=400
):
    """Parameters of metaworld_algorithms/nn/soft_modules.py (@30c9991): f (the MLP default
    width 400, one hidden layer, head emb) on the observation without the task id, z (a Dense
    from the task id to emb), the routing MLP (task_embedding_fc: one hidden layer of width,
    head width), per routing layer W_d (width -> m * m, the last -> m) and, from the second
    on, W_u (the l * m * m earlier weights -> width; flax never builds the first layer's),
    depth layers of m modules (emb, then module_w -> module_w) and the head. MT10 actor:
    176,400 + 4,400 + 168,448 + 1,028 + (1,280 + 514) + 2 * 102,656 + 2 * 65,792 + 2,056 =
    691,022; critic (twice): 178,000 + 4,400 + 168,448 + 2,822 + 336,896 + 257 = 690,823."""
    f = dense(in_features, 400) + dense(400, emb)
    z = dense(T, emb)
    routing = dense(emb, width) + dense(width, width)
    for layer in range(depth):
        routing += dense(width, m * m if layer < depth - 1 else m)
        routing += dense(layer * m * m, width) if layer else 0
    modules = m * dense(emb, module_w) + (depth - 1) * m * dense(module_w, module_w)
    return f + z + routing + modules + dense(module_w, out)


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
    # PaCo and CARE too (the reference's QValueFunction input is (action, state), task id last)
    "paco": (reference_paco(OBS, 2 * ACT), 2 * reference_paco(OBS + ACT, 1)),
    "care": (reference_care(OBS, 2 * ACT), 2 * reference_care(OBS + ACT, 1)),
    "softmod": (
        reference_soft_modules(OBS, 2 * ACT),
        2 * reference_soft_modules(OBS + ACT, 1),
    ),
}
OVERRIDES = {"softmod": ["agent.hidden=[400]"]}
"""agent.hidden is Soft Modularization's base encoder f: one hidden layer of 400 in the reference."""


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


def test_paco_is_the_layer_with_task_combined_parameters():
    """Each layer's output is that of the layer with parameters sum_k w_tau[k] theta_k."""
    from mtrl.agents.registry import build_network

    torch.manual_seed(0)
    members, sets, tasks, features = 2, 3, 4, 6
    net = build_network(
        "paco",
        {"num_parameter_sets": sets},
        members=members,
        in_features=features + tasks,
        hidden=[7, 5],
        out_features=2,
        tasks=tasks,
        task_columns=(features, features + tasks),
    )
    net.init_metaworld(1e-3)  # every parameter set of the output layer U(1e-3), zero biases
    assert net.layers[-1].weight.abs().max() <= 1e-3 and net.layers[-1].bias.abs().max() <= 1e-3
    assert not net.task_weights.bias.any() and not net.layers[0].bias.any()
    one_hot = torch.eye(tasks)[torch.arange(9) % tasks]
    x = torch.cat([torch.randn(9, features), one_hot], dim=-1)
    out = net(x, one_hot)
    assert out.shape == (members, 9, 2)
    for e in range(members):
        w = one_hot @ net.task_weights.weight[e] + net.task_weights.bias[e]  # [N, K]
        h = x[:, :features]
        for i, layer in enumerate(net.layers):
            sets_e = slice(e * sets, (e + 1) * sets)
            weight = torch.einsum("nk,kio->nio", w, layer.weight[sets_e])
            bias = torch.einsum("nk,ko->no", w, layer.bias[sets_e, 0])
            h = torch.einsum("ni,nio->no", h, weight) + bias
            h = torch.relu(h) if i < len(net.layers) - 1 else h
        torch.testing.assert_close(out[e], h)


def test_care_mixes_its_experts_by_a_softmax_of_the_task_context():
    """The torso reads [sum_k softmax(attention / temperature)_k expert_k, context]."""
    from mtrl.agents.registry import build_network

    torch.manual_seed(0)
    net = build_network(
        "care",
        {"num_experts": 3, "encoder_temperature": 0.5},
        members=2,
        in_features=6 + 4,
        hidden=[8],
        out_features=1,
        tasks=4,
        task_columns=(6, 10),
    )
    net.init_metaworld(3e-3)
    assert net.torso[-1].weight.abs().max() <= 3e-3 and net.torso[-1].bias.abs().max() <= 3e-3
    seen = {}
    for name in ("context", "attention", "experts"):
        getattr(net, name)[-1].register_forward_hook(
            lambda m, i, o, name=name: seen.update({name: o})
        )
    net.torso[0].register_forward_hook(lambda m, i, o: seen.update(torso=i[0]))
    one_hot = torch.eye(4)
    out = net(torch.cat([torch.randn(4, 6), one_hot], dim=-1), one_hot)
    assert out.shape == (2, 4, 1)
    weights = torch.softmax(seen["attention"] / 0.5, dim=-1)  # [E, N, K]
    experts = seen["experts"].view(2, 3, 4, -1)  # [E, K, N, D]
    mixed = (weights.transpose(1, 2)[..., None] * experts).sum(dim=1)
    torch.testing.assert_close(seen["torso"], torch.cat([mixed, seen["context"]], dim=-1))


def test_soft_modules_mix_module_outputs_by_per_layer_routing_softmaxes():
    """Every routing layer gives softmax distributions over the modules ([M, M] per next module,
    [M] for the output layer); module j of the next layer reads relu(sum_k p[j, k] out_k), the
    head relu(sum_k p[k] out_k), and the first layer's modules all read relu(f(s))."""
    from mtrl.agents.registry import build_network

    torch.manual_seed(0)
    members, m, depth, tasks, n = 2, 3, 3, 4, 8
    options = {"embedding_dim": 12, "routing_width": 10, "module_width": 9}
    net = build_network(
        "softmod",
        {**options, "depth": depth, "num_modules": m},
        members=members,
        in_features=6 + tasks,
        hidden=[8],
        out_features=2,
        tasks=tasks,
        task_columns=(6, 6 + tasks),
    )
    # W_u of layer l reads all earlier weights (skip connections)
    assert [layer.weight.shape[1] for layer in net.prob_embeddings] == [m * m, 2 * m * m]
    seen = {}
    for i, layer in enumerate(net.modules_):
        layer.register_forward_hook(lambda mod, i_, o, i=i: seen.update({i: (i_[0], o)}))
    net.encoder[-1].register_forward_hook(lambda mod, i_, o: seen.update(f=o))
    net.head.register_forward_hook(lambda mod, i_, o: seen.update(head=i_[0]))
    one_hot = torch.eye(tasks)[torch.arange(n) % tasks]
    x = torch.cat([torch.randn(n, 6), one_hot], dim=-1)
    out = net(x, one_hot)
    assert out.shape == (members, n, 2)
    weights = net.routing_weights(one_hot, seen["f"])
    shapes = [(members, n, m, m)] * (depth - 1) + [(members, n, m)]
    assert [tuple(w.shape) for w in weights] == shapes
    for w in weights:
        assert (w > 0).all()
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(w.shape[:-1]))
    assert not torch.allclose(weights[0][:, 0], weights[0][:, 1])  # tasks route differently
    first = torch.relu(seen["f"])[:, None].expand(-1, m, -1, -1).flatten(0, 1)
    torch.testing.assert_close(seen[0][0], first)
    for layer in range(depth):
        outs = seen[layer][1].view(members, m, n, -1)  # [E, M, N, d]
        if layer < depth - 1:
            mixed = (weights[layer][..., None] * outs.permute(0, 2, 1, 3)[:, :, None]).sum(3)
            torch.testing.assert_close(
                seen[layer + 1][0], torch.relu(mixed).transpose(1, 2).flatten(0, 1)
            )
        else:
            mixed = (weights[layer].transpose(1, 2)[..., None] * outs).sum(dim=1)
            torch.testing.assert_close(seen["head"], torch.relu(mixed))
    net.init_metaworld(3e-3)  # the reference's routing output layers U(1e-3), zero biases
    for layer in net.prob_outputs:
        assert layer.weight.abs().max() <= 1e-3 and not layer.bias.any()
    assert net.head.weight.abs().max() <= 3e-3 and net.head.bias.abs().max() <= 3e-3
    assert not net.modules_[0].bias.any() and not net.task_embedding.bias.any()


def test_soft_modules_preset_takes_the_reference_config():
    """SoftModulesConfig defaults (MT10) with the MT-SAC MT10 script's settings; agent.hidden is
    the base encoder's hidden layer (the reference's MLP default width, 400)."""
    cfg = resolve_config("mt10-softmod")
    assert cfg.suite == "mt10" and cfg.agent.network == "softmod"
    assert cfg.agent.network_options == {
        "embedding_dim": 400,
        "routing_width": 256,
        "module_width": 256,
        "depth": 2,
        "num_modules": 2,
    }
    assert (cfg.agent.hidden, cfg.agent.init, cfg.agent.grad_clip) == ([400], "metaworld", 1)
    agent = MTSAC(OBS + T, ACT, T, cfg.agent)
    counts = [sum(p.numel() for p in net.parameters()) for net in (agent.actor, agent.critic)]
    assert tuple(counts) == REFERENCE["softmod"] == (691_022, 1_381_646)


@pytest.mark.parametrize("network", sorted(REFERENCE))
def test_parameter_counts_match_the_reference_for_mt10(network):
    overrides = [f"agent.network={network}", *OVERRIDES.get(network, [])]
    cfg = resolve_config("mt10-mtsac", overrides).agent
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


@pytest.mark.parametrize(
    ("experiment", "network", "options"),
    [
        ("mt10-paco", "paco", {"num_parameter_sets": 5}),
        (
            "mt10-care",
            "care",
            {
                "encoder_width": 50,
                "encoder_depth": 2,
                "encoder_temperature": 1.0,
                "embedding_dim": 50,
                "num_experts": 6,
            },
        ),
    ],
)
def test_paco_and_care_presets_take_the_reference_config(experiment, network, options):
    """PaCoConfig / CAREConfig defaults (MT10) with the MT-SAC MT10 script's settings."""
    cfg = resolve_config(experiment)
    assert cfg.suite == "mt10" and cfg.agent.network == network
    assert cfg.agent.network_options == options
    assert (cfg.agent.hidden, cfg.agent.init, cfg.agent.grad_clip) == ([400] * 3, "metaworld", 1)


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


@pytest.mark.parametrize("network", ["film", "care"])
def test_task_embeddings_start_as_flax_embed_tables(network):
    # flax's nn.Embed: truncated normal with variance 1 / features (50 here), not 1 / tasks
    torch.manual_seed(0)
    cfg = AgentConfig(network=network, init="metaworld", hidden=[32])
    table = MTSAC(49, 4, 10, cfg).critic.net.embedding.weight  # [2 critics, 10 tasks, 50]
    assert table.shape == (2, 10, 50)
    assert abs(table.std().item() - 50**-0.5) < 0.1 * 50**-0.5
    assert table.abs().max().item() <= 2 * 50**-0.5 / 0.8796 + 1e-6
