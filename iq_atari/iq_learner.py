"""The IQ-Learn learner: one gradient step on `iq.iq_loss` per update, from an expert batch and
(online) an agent batch, with the temperature optionally learned towards a target entropy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from iq_atari.agent import SoftQAgent
from iq_atari.buffers import Batch
from iq_atari.errors import InputError
from iq_atari.iq import IQLossConfig, absorbing_rows, check_choice, gradient_penalty, iq_loss
from iq_atari.tensors import sample_softmax, to_tensor
from iq_atari.utils import set_lr


@dataclass(frozen=True)
class IQLearnerConfig:
    """Optimisation options around the loss."""

    loss: IQLossConfig = dataclasses.field(default_factory=IQLossConfig)
    lr: float = 1e-4
    next_v: Literal["online", "target"] = "online"  # V(s') source [train.use_target]
    tau: float = 1.0  # target update: 1 = hard copy [critic_tau with train.soft_update]
    target_interval: int = 1  # updates between target updates [critic_target_update_frequency]
    grad_penalty: float = 0.0  # weight of the gradient penalty, 0 = off [lambda_gp, grad_pen]
    target_entropy: float = 0.1  # learned alpha: target entropy as a fraction of log(n_actions)

    def __post_init__(self) -> None:
        check_choice("next_v", self.next_v, Literal["online", "target"])


@dataclass(frozen=True)
class UpdateTensors:
    """One update's inputs on the learner's device: the expert rows first, then the agent's."""

    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    terminated: torch.Tensor
    is_expert: torch.Tensor  # bool (B,)
    n_expert: int


class IQLearner:
    """One IQ-Learn gradient step per `update(expert_batch, agent_batch)`; greedy/softmax `act`."""

    def __init__(
        self,
        agent: SoftQAgent,
        config: IQLearnerConfig,
        initial_obs: np.ndarray | None = None,
        seed: int = 0,
    ):
        self.agent = agent
        self.config = config
        self.device = agent.device
        self.optimizer = torch.optim.Adam(agent.q_parameters(), lr=config.lr)
        self.alpha_optimizer = None
        if isinstance(agent.log_alpha, torch.nn.Parameter):
            self.alpha_optimizer = torch.optim.Adam([agent.log_alpha], lr=config.lr)
        self.initial_obs = None if initial_obs is None else to_tensor(initial_obs, self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0

    def update(self, expert_batch: Batch, agent_batch: Batch | None) -> dict[str, torch.Tensor]:
        """One gradient step on the IQ loss from sampled batches; returns detached metrics."""
        return self.update_on(self.tensors(expert_batch, agent_batch))

    def tensors(self, expert_batch: Batch, agent_batch: Batch | None) -> UpdateTensors:
        """The expert (and agent) batch as one set of tensors on the learner's device."""
        batches = [expert_batch] if agent_batch is None else [expert_batch, agent_batch]
        actions = to_tensor(np.concatenate([b.actions for b in batches]), self.device)
        is_expert = torch.zeros(len(actions), dtype=torch.bool, device=self.device)
        is_expert[: len(expert_batch)] = True
        return UpdateTensors(
            obs=to_tensor(np.concatenate([b.obs for b in batches]), self.device),
            next_obs=to_tensor(np.concatenate([b.next_obs for b in batches]), self.device),
            actions=actions,
            terminated=to_tensor(np.concatenate([b.terminated for b in batches]), self.device),
            is_expert=is_expert,
            n_expert=len(expert_batch),
        )

    def update_on(self, t: UpdateTensors) -> dict[str, torch.Tensor]:
        """One gradient step on the IQ loss from tensors (`tensors`); returns detached metrics."""
        agent, cfg = self.agent, self.config
        obs, next_obs, actions, terminated = t.obs, t.next_obs, t.actions, t.terminated

        # One forward pass over everything the online network must see.
        inputs = [obs] if cfg.next_v == "target" else [obs, next_obs]
        if cfg.loss.value_term == "v0":
            if self.initial_obs is None:
                raise ValueError("value_term='v0' needs the initial observations (initial_obs)")
            inputs.append(self.initial_obs)
        q_all = agent.q(torch.cat(inputs)).float()
        n = len(obs)
        q_obs = q_all[:n]
        next_v = (
            agent.target_v(next_obs) if cfg.next_v == "target" else agent.value(q_all[n : 2 * n])
        )
        v_init = (
            agent.value(q_all[-len(self.initial_obs) :]) if cfg.loss.value_term == "v0" else None
        )
        q_sa = q_obs.gather(1, actions.view(-1, 1)).squeeze(1)
        q_policy = None
        if cfg.loss.regularize_over == "policy":
            sampled = sample_softmax(q_obs, self.generator, agent.alpha)
            q_policy = q_obs.gather(1, sampled.view(-1, 1)).squeeze(1)
        rows = (q_sa, agent.value(q_obs), next_v, terminated, t.is_expert)
        if agent.v_absorb is not None:
            *rows, q_policy = absorbing_rows(*rows, agent.v_absorb, q_policy)
        loss, metrics = iq_loss(*rows, cfg.loss, v_init, q_policy)
        if agent.v_absorb is not None:
            metrics["v_absorb"] = agent.v_absorb.detach().clone()
        if cfg.grad_penalty > 0:
            if t.n_expert == len(actions):
                raise InputError("the gradient penalty needs agent samples (online mode)")
            n_e = t.n_expert
            gp = gradient_penalty(
                agent.q_net, obs[:n_e], obs[n_e:], cfg.grad_penalty, self.generator
            )
            loss = loss + gp
            metrics["grad_penalty"] = gp.detach()

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.alpha_optimizer is not None:
            metrics.update(self._update_alpha(q_obs.detach()))
        self.updates += 1
        if agent.target_net is not None and self.updates % cfg.target_interval == 0:
            agent.update_target(cfg.tau)
        metrics["alpha"] = agent.alpha
        return metrics

    def _update_alpha(self, q: torch.Tensor) -> dict[str, torch.Tensor]:
        """Move alpha so the policy's entropy approaches the target (as in discrete SAC)."""
        target = self.config.target_entropy * float(np.log(self.agent.n_actions))
        entropy = self.agent.policy_entropy(q).mean()
        alpha_loss = self.agent.log_alpha.exp() * (entropy - target).detach()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {"entropy": entropy.detach(), "alpha_loss": alpha_loss.detach()}

    def set_lr_scale(self, scale: float) -> None:
        """Set every optimizer's learning rate to `config.lr * scale` (the loop's schedule)."""
        for optimizer in (self.optimizer, self.alpha_optimizer):
            if optimizer is not None:
                set_lr(optimizer, self.config.lr * scale)

    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray:
        """Actions for a batch of observations: argmax Q, or sampled from softmax(Q / alpha)."""
        return self.agent.act(obs, greedy, generator=self.generator)

    def state_dict(self) -> dict:
        state = {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        return state

    def policy_state(self) -> dict:
        """What acting needs: the agent's weights (Q network, alpha), without the target copy."""
        return {k: v for k, v in self.agent.state_dict().items() if not k.startswith("target_net.")}

    def load_policy_state(self, state: dict) -> None:
        """Load `policy_state()` weights; a target network starts as a copy of the Q network."""
        result = self.agent.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("target_net.")]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing {missing}, unexpected {list(result.unexpected_keys)}")
        if self.agent.target_net is not None:
            self.agent.target_net.load_state_dict(self.agent.q_net.state_dict())

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
