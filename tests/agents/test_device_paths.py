"""Every aggregator with a device path, taken inside MT-SAC's update as a captured update takes
it (``in_cuda_graph``, deferred finite checks), on the CPU: the deterministic ones leave the
parameters their host paths leave, the random ones (their draws come from torch's generator
there, not their seeded one) train to finite parameters. The capture itself needs a GPU:
tests/test_cuda.py replays these updates from graphs there."""

import copy

import pytest
import torch
from batches import replay_batch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.surgery import aggregator_class, list_aggregators, option_specs

T, OBS, ACT = 4, 10 + 4, 2
DEVICE_PATHS = [
    name
    for name in sorted(list_aggregators())
    if aggregator_class(name).device_solver and "solver" in option_specs(name)
]
"""The methods with a host and a device path (``solver``; FairGrad's names its algorithm)."""


def agent(name: str, options: dict) -> MTSAC:
    torch.manual_seed(0)
    surgery = SurgeryConfig(name=name, options=options)
    return MTSAC(OBS, ACT, T, AgentConfig(hidden=[16]), surgery, seed=0, defer_checks=True)


def parameters(a: MTSAC) -> list[torch.Tensor]:
    return [p for net in (a.actor, a.critic) for p in net.parameters()]


def test_the_list_covers_the_newer_device_paths():
    newer = {"config", "aligned-mtl", "fairgrad", "sdmgrad", "gradvac", "moco", "imtl-g"}
    assert newer <= set(DEVICE_PATHS)


@pytest.mark.parametrize("name", DEVICE_PATHS)
def test_device_paths_inside_the_update(name):
    """The critic's direction of one update (its ``.grad``, left by the update) equals the host
    path's to 1e-6 of its largest entry for the deterministic methods (the parameters after
    Adam would not tell: a rounding difference in a gradient entry near 0 is a step of up to
    lr there); three updates of every method leave finite, changed parameters and no
    deferred non-finite mark."""
    # FairGrad's solver option names its algorithm: the captured path alone takes the device
    forced = {} if name == "fairgrad" else {"solver": "device"}
    device, host = agent(name, forced), agent(name, {"solver": "host"} if forced else {})
    for aggregator in device.aggregators.values():
        aggregator.in_cuda_graph = True  # as GraphedUpdate sets it: IMTL-G & co. take Jacobi
    before = [p.clone() for p in parameters(device)]
    for seed in range(3):
        batch = replay_batch(T, 8, OBS, ACT, seed=seed)
        for a in (device, host):
            torch.manual_seed(seed)  # the policy's noise
            a.update(copy.deepcopy(batch))
        if seed == 0 and not aggregator_class(name).stochastic:
            for a, b in zip(device.critic.parameters(), host.critic.parameters(), strict=True):
                scale = float(b.grad.abs().max())
                torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6 * scale)
    device.raise_if_non_finite()
    assert all(torch.isfinite(p).all() for p in parameters(device))
    assert any(not torch.equal(a, b) for a, b in zip(before, parameters(device), strict=True))
