"""Multi-task SAC whose critic and actor updates go through the gradient surgery module.

For a batch with a task axis [T, B, ...] every loss is a vector of T per-task losses; the
per-task gradients of the critic and of the actor are combined by the configured aggregator
(``mean`` is plain MT-SAC on the very same code path), and each task has its own temperature.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from mtrl.agents.config import AgentConfig, SurgeryConfig
from mtrl.agents.networks import Actor, Critic, squashed_sample
from mtrl.agents.shared_layer import LayerGradNorms
from mtrl.surgery import (
    Aggregator,
    LossWeighting,
    NonFiniteGradientError,
    get_aggregator,
    gradient_diagnostics,
    per_task_grads,
    write_grads,
)
from mtrl.surgery.layergrads import Workspace, covers, layer_task_grads
from mtrl.surgery.taskgrads import TaskGradients
from mtrl.timing import SectionTimer

Batch = dict[str, Tensor]
"""Replay batch: obs, action, reward, next_obs, terminated, each [T, B, ...]."""


@torch.no_grad()
def polyak_update(source: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, for all parameters in one foreach call."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def last_shared_layer(module: torch.nn.Module) -> torch.nn.Module:
    """The last layer whose parameters every task uses: the output layer of a single-head
    network, the last hidden layer of a multi-head one (GradNorm's "last shared layer")."""
    return module.net.last_shared_layer()


def per_task_loss(loss_fn: Callable[..., Any], has_aux: bool) -> Callable[..., Any]:
    """A [T, B] -> [T] loss as a per-task loss for vmap: the task's batch becomes T = 1."""

    def task_loss(params: dict[str, Tensor], tb: Batch) -> Any:
        out = loss_fn(params, {k: v[None] for k, v in tb.items()})
        return (out[0][0], out[1][0]) if has_aux else out[0]

    return task_loss


def _task_grad_mode(mode: str, module: torch.nn.Module) -> str:
    if mode == "auto":
        return "layers" if covers(module) else "vmap"
    if mode == "layers" and not covers(module):
        raise ValueError("agent.task_grads=layers needs a network made of layers with a rule")
    return mode


class MTSAC:
    """A shared actor and twin critic conditioned on the one-hot task id, one temperature per task.

    :param obs_dim: observation size, including the one-hot task id at its end.
    :param act_dim: action size (actions in [-1, 1]).
    :param num_tasks: T.
    :param config: hyperparameters.
    :param surgery: the aggregator and the networks it applies to.
    :param device: where every tensor lives.
    :param task_names: used in error messages (e.g. which task's loss became NaN).
    :param seed: seeds the aggregators' random draws.
    :param defer_checks: record non-finite losses and gradients on the device and raise at
        ``raise_if_non_finite`` instead of in every update (no host sync per update); None:
        deferred on a GPU, every update on the CPU.
    :param capturable: ``make_capturable()`` at once: the optimizers' step counts stay on the
        device, so the whole update can be captured in a CUDA graph (``GraphedUpdate``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_tasks: int,
        config: AgentConfig | None = None,
        surgery: SurgeryConfig | None = None,
        device: str | torch.device = "cpu",
        task_names: list[str] | None = None,
        seed: int = 0,
        defer_checks: bool | None = None,
        capturable: bool = False,
    ) -> None:
        self.cfg = config or AgentConfig()
        self.surgery_cfg = surgery or SurgeryConfig()
        self.device = torch.device(device)
        self.num_tasks, self.obs_dim, self.act_dim = num_tasks, obs_dim, act_dim
        cfg = self.cfg
        self.actor = Actor(
            obs_dim,
            act_dim,
            cfg.hidden,
            num_tasks,
            (cfg.log_std_min, cfg.log_std_max),
            cfg.multihead,
            cfg.init,
            cfg.network,
            cfg.network_options,
        ).to(self.device)
        self.critic = Critic(
            obs_dim,
            act_dim,
            cfg.hidden,
            num_tasks,
            cfg.critics,
            cfg.multihead,
            cfg.init,
            cfg.network,
            cfg.network_options,
        ).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full(
            (num_tasks,), float(np.log(cfg.init_alpha)), device=self.device, requires_grad=True
        )
        self.target_entropy = (
            float(-act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        )
        # fused: one kernel per optimizer step (for-loop Adam takes ~10 ops per parameter on the
        # CPU, foreach Adam ~17 multi-tensor ops on a GPU), step counts on the device
        adam = functools.partial(torch.optim.Adam, eps=cfg.adam_eps, fused=True)
        self.actor_opt = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = adam([self.log_alpha], lr=cfg.alpha_lr)
        self.capturable = False
        if capturable:
            self.make_capturable()
        self.aggregators = {
            net: self._make_aggregator(net, seed + i, task_names)
            for i, net in enumerate(("critic", "actor"))
        }
        self.defer_checks = self.device.type == "cuda" if defer_checks is None else defer_checks
        self._non_finite = {
            net: torch.zeros(num_tasks + 1, device=self.device) for net in self.aggregators
        }
        """Per network, since the last check: NaN where a task's loss was non-finite, then where
        the gradient was; 0 elsewhere."""
        if self.defer_checks:
            for agg in self.aggregators.values():
                agg.check_direction = False
        self.task_grad_modes = {
            net: _task_grad_mode(cfg.task_grads, module)
            for net, module in (("critic", self.critic), ("actor", self.actor))
        }
        """How each network's per-task gradients are formed: layers, vmap or loop."""
        self._workspaces = {
            net: Workspace() if self.device.type == "cpu" else None for net in self.aggregators
        }
        """Per network, the buffers its per-task gradients are written into on the CPU (see
        ``Workspace``); on a GPU the caching allocator reuses memory by itself."""
        self.surgery_timer = SectionTimer(self.device)
        """Time in the aggregators (both networks); read and reset with ``take()``."""
        self._fixed_weights: dict[str, Tensor] = {}
        """Fixed task weights of deterministic linear aggregators, kept on the device."""
        self.state_version = 0
        """Bumped by ``load_state_dict``, which replaces optimizer state tensors (a captured
        CUDA graph of the update must then be captured again)."""

    def make_capturable(self) -> None:
        """Let the optimizers step inside a CUDA graph: their step counts live on the device.
        ``load_state_dict`` keeps it so."""
        if self.device.type != "cuda":
            raise ValueError("capturable optimizers (CUDA graphs) need a CUDA device")
        for optimizer in (self.actor_opt, self.critic_opt, self.alpha_opt):
            for group in optimizer.param_groups:
                group["capturable"] = True
            for state in optimizer.state.values():  # restored from a run without graphs
                if "step" in state:
                    state["step"] = state["step"].to(self.device, torch.float32)
        self.capturable = True

    def _make_aggregator(self, network: str, seed: int, task_names: list[str] | None) -> Aggregator:
        s = self.surgery_cfg
        applies = s.networks in ("both", network)
        name = s.name if applies else "mean"
        options = dict(s.options) if applies else {}
        agg = get_aggregator(name, seed=seed, **options)
        agg.task_names = task_names
        return agg

    # ----------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: np.ndarray | Tensor, deterministic: bool = False) -> np.ndarray:
        """Actions [T, act] for observations [T, obs]: sampled, or tanh(mean) when deterministic."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        mean, log_std = self.actor(obs_t)
        action = torch.tanh(mean) if deterministic else squashed_sample(mean, log_std)[0]
        return action.cpu().numpy()

    # ----------------------------------------------------------------------- per-task losses
    # Each loss is written once over a [T, B, ...] batch and returns a [T] vector; the
    # per-task engine vmaps it over the task axis with T = 1 inside (see ``per_task_loss``).
    def _critic_losses(self, params: dict[str, Tensor], tb: Batch) -> Tensor:
        T, B = tb["target"].shape
        obs, action = tb["obs"].reshape(T * B, -1), tb["action"].reshape(T * B, -1)
        q = functional_call(self.critic, params, (obs, action))  # [E, T * B]
        return 0.5 * ((q.view(-1, T, B) - tb["target"]) ** 2).mean(dim=-1).sum(dim=0)

    def _actor_losses(self, params: dict[str, Tensor], tb: Batch) -> tuple[Tensor, Tensor]:
        """Per-task actor losses [T], and mean log-probabilities [T] as the auxiliary output."""
        T, B = tb["obs"].shape[:2]
        obs = tb["obs"].reshape(T * B, -1)
        mean, log_std = functional_call(self.actor, params, (obs,))
        action, log_prob = squashed_sample(mean, log_std, tb["noise"].reshape(T * B, -1))
        q = self.critic(obs, action).min(dim=0).values
        log_prob = log_prob.view(T, B)
        return (tb["alpha"][:, None] * log_prob - q.view(T, B)).mean(dim=-1), log_prob.mean(dim=-1)

    @torch.no_grad()
    def critic_targets(self, batch: Batch) -> Tensor:
        """Bootstrapped soft Q targets [T, B]; truncation bootstraps, termination does not."""
        T, B = batch["reward"].shape
        next_obs = batch["next_obs"].reshape(T * B, -1)
        mean, log_std = self.actor(next_obs)
        next_action, next_log_prob = squashed_sample(mean, log_std)
        next_q = self.critic_target(next_obs, next_action).min(dim=0).values.view(T, B)
        alpha = self.log_alpha.exp()[:, None]
        soft_q = next_q - alpha * next_log_prob.view(T, B)
        return batch["reward"] + self.cfg.gamma * (1.0 - batch["terminated"]) * soft_q

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """The per-task losses [T] (critic, actor, alpha) on ``batch``, without updating."""
        target = self.critic_targets(batch)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            critic = self._critic_losses(
                dict(self.critic.named_parameters()),
                {"obs": batch["obs"], "action": batch["action"], "target": target},
            )
            actor, log_prob = self._actor_losses(
                dict(self.actor.named_parameters()),
                {"obs": batch["obs"], "alpha": alpha, "noise": self._actor_noise(batch)},
            )
        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).detach()
        return {"critic": critic, "actor": actor, "alpha": alpha_loss}

    def _actor_noise(self, batch: Batch) -> Tensor:
        """The actor loss's Gaussian noise [T, B, act], drawn once per update so that every way
        of forming per-task gradients sees the same samples."""
        T, B = batch["obs"].shape[:2]
        return torch.randn(T, B, self.act_dim, device=self.device)

    # ----------------------------------------------------------------------- the update
    def _task_grads(
        self,
        network: str,
        module: torch.nn.Module,
        loss_fn: Callable[..., Any],
        batch: Batch,
        has_aux: bool,
    ) -> tuple[TaskGradients, Tensor, Any]:
        """Per-task gradients of ``module`` (blocks), the losses [T] and the auxiliary output."""
        mode = self.task_grad_modes[network]
        if mode == "layers":
            return layer_task_grads(
                loss_fn, module, batch, self.num_tasks, has_aux, self._workspaces[network]
            )
        out = per_task_grads(
            per_task_loss(loss_fn, has_aux),
            dict(module.named_parameters()),
            batch,
            mode=mode,
            has_aux=has_aux,
            return_losses=True,
            flat=False,
        )
        return out[0], out[1], (out[2] if has_aux else None)

    def _surgery_step(
        self,
        network: str,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Any],
        batch: Batch,
        has_aux: bool,
        diagnostics: dict[str, Any] | None,
    ) -> tuple[Tensor, Any]:
        """One optimizer step of ``module`` on the per-task losses ``loss_fn`` ([T, B] -> [T]).

        A linear aggregator (mean, sum) without diagnostics takes the fused path: one backward
        of the weighted loss sum, the same direction as combining per-task gradients.
        """
        params = dict(module.named_parameters())
        aggregator = self.aggregators[network]
        if isinstance(aggregator, LossWeighting):
            return self._loss_weighted_step(
                network, module, optimizer, loss_fn, batch, has_aux, diagnostics
            )
        weights = None if diagnostics is not None else self._linear_weights(network)
        optimizer.zero_grad(set_to_none=True)
        if weights is not None:
            out = loss_fn(params, batch)
            losses, aux = (out[0], out[1]) if has_aux else (out, None)
            torch.dot(weights, losses).backward()
            check = True
        else:
            G, losses, aux = self._task_grads(network, module, loss_fn, batch, has_aux)
            with self.surgery_timer.section():
                result = aggregator.aggregate(G)
            write_grads(params, result.direction, adopt=result.owned)
            check = self.defer_checks  # else the aggregator has checked G
            if diagnostics is not None:
                diagnostics[network] = gradient_diagnostics(G, result)
        self._clip_and_check(network, module, losses, check)
        optimizer.step()
        return losses.detach(), aux.detach() if aux is not None else None

    def _clip_and_check(
        self, network: str, module: torch.nn.Module, losses: Tensor, check: bool
    ) -> None:
        """Clip the gradient to ``grad_clip`` and, if ``check``, check the losses and the
        gradient for NaN/inf (``_check_finite``), reading the gradient's norm from the clip."""
        norm = None
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip)
        if check:
            self._check_finite(network, losses, module, norm)

    def _linear_weights(self, network: str) -> Tensor | None:
        """The aggregator's fixed task weights on the device (None if it has none); a
        deterministic one's are copied to the device once, not in every update."""
        aggregator = self.aggregators[network]
        if network in self._fixed_weights:
            return self._fixed_weights[network]
        weights = aggregator.fixed_weights(self.num_tasks, self.device)
        if weights is None:
            return None
        weights = weights.to(device=self.device, dtype=torch.float32)
        if not aggregator.stochastic:
            self._fixed_weights[network] = weights
        return weights

    def _loss_weighted_step(
        self,
        network: str,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., Any],
        batch: Batch,
        has_aux: bool,
        diagnostics: dict[str, Any] | None,
    ) -> tuple[Tensor, Any]:
        """One step with a loss-balancing method: its weights on the T losses, one fused backward,
        then ``observe`` with what the method needs (see ``LossWeighting``)."""
        aggregator = self.aggregators[network]
        assert isinstance(aggregator, LossWeighting)
        needs = aggregator.needs
        params = dict(module.named_parameters())
        optimizer.zero_grad(set_to_none=True)
        capture = LayerGradNorms(last_shared_layer(module))
        with capture if "shared_grad_norms" in needs else contextlib.nullcontext():
            out = loss_fn(params, batch)
            losses, aux = (out[0], out[1]) if has_aux else (out, None)
            with self.surgery_timer.section():
                weights = aggregator.weights(losses.detach())
            torch.dot(weights.to(losses), losses).backward()
        norms = capture.norms(self.num_tasks) if "shared_grad_norms" in needs else None
        if diagnostics is not None:
            G = self._task_grads(network, module, loss_fn, batch, has_aux)[0]
            diagnostics[network] = gradient_diagnostics(G, aggregator.aggregate(G))
        self._clip_and_check(network, module, losses, True)
        optimizer.step()
        after = None
        if "losses_after" in needs:  # the same batch through the stepped network
            with torch.no_grad():
                out = loss_fn(dict(module.named_parameters()), batch)
            after = out[0] if has_aux else out
        with self.surgery_timer.section():
            aggregator.observe(losses.detach(), losses_after=after, shared_grad_norms=norms)
        return losses.detach(), aux.detach() if aux is not None else None

    def _check_finite(
        self, network: str, losses: Tensor, module: torch.nn.Module, norm: Tensor | None = None
    ) -> None:
        """Raise NonFiniteGradientError naming the tasks whose loss is NaN/inf (one host sync);
        with deferred checks, mark them on the device for ``raise_if_non_finite``.

        :param norm: the gradient's total norm if already computed (by the clip), else None.
        """
        if norm is None:
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads])
            )
        if self.defer_checks:
            values = torch.cat([losses.detach(), norm.reshape(1).to(losses.dtype)])
            # x - x is 0 for a finite x and NaN for NaN or ±inf: adding it marks the bad entries
            self._non_finite[network].add_(values - values)
            return
        if bool(torch.isfinite(losses.sum() + norm)):
            return
        self._raise(network, ~torch.isfinite(losses))

    def _raise(self, network: str, bad_losses: Tensor) -> None:
        names = self.aggregators[network].task_names or [str(i) for i in range(self.num_tasks)]
        bad = [names[i] for i in torch.nonzero(bad_losses).flatten().tolist()]
        where = f"tasks {', '.join(bad)}" if bad else "the combined gradient (losses are finite)"
        raise NonFiniteGradientError(f"{network}: non-finite loss or gradient in {where}")

    def raise_if_non_finite(self) -> None:
        """With deferred checks: raise NonFiniteGradientError if any update since the last call
        had a non-finite loss or gradient, naming the network and tasks (one host sync)."""
        if not self.defer_checks:
            return
        flags = {net: ~torch.isfinite(marks) for net, marks in self._non_finite.items()}
        for marks in self._non_finite.values():
            marks.zero_()
        found = [(net, bad) for net, bad in flags.items() if bad.any()]
        if found:  # the critic first: a NaN critic makes every actor loss NaN next
            network, flags = found[0]
            self._raise(network, flags[:-1])

    def update(self, batch: Batch, diagnostics: bool = False) -> dict[str, Any]:
        """One gradient step on critic, actor and temperatures; polyak-update the target.

        :param batch: replay batch with a task axis [T, B, ...].
        :param diagnostics: also return the surgery diagnostics of both networks (costs a
            T x T Gramian for aggregators that do not form one).
        :return: per-task losses and temperatures as tensors [T] (no host sync), plus
            ``diagnostics`` -> {network: GradientDiagnostics} when asked.
        """
        diag: dict[str, Any] | None = {} if diagnostics else None
        target = self.critic_targets(batch)
        critic_loss, _ = self._surgery_step(
            "critic",
            self.critic,
            self.critic_opt,
            self._critic_losses,
            {"obs": batch["obs"], "action": batch["action"], "target": target},
            False,
            diag,
        )
        alpha = self.log_alpha.exp().detach()
        self.critic.requires_grad_(False)  # the actor loss differentiates through Q, not into it
        try:
            actor_loss, log_prob = self._surgery_step(
                "actor",
                self.actor,
                self.actor_opt,
                self._actor_losses,
                {"obs": batch["obs"], "alpha": alpha, "noise": self._actor_noise(batch)},
                True,
                diag,
            )
        finally:
            self.critic.requires_grad_(True)
        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy))
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.sum().backward()  # each temperature only sees its own task's loss
        self.alpha_opt.step()
        polyak_update(self.critic, self.critic_target, self.cfg.tau)
        metrics: dict[str, Any] = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "entropy": -log_prob,
        }
        if diag is not None:
            metrics["diagnostics"] = diag
        return metrics

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Networks, target, temperatures, optimizers and aggregator states."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "aggregators": {k: a.state_dict() for k, a in self.aggregators.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        if self.capturable:  # the checkpoint's optimizer groups carry their own flag
            self.make_capturable()
        for key, agg_state in state["aggregators"].items():
            self.aggregators[key].load_state_dict(agg_state)
        self.state_version += 1
