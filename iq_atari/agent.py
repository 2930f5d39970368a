"""SoftQAgent: a soft-Q network, its optional target copy, and the temperature alpha.

V(s) = alpha * logsumexp(Q(s, .) / alpha); the policy is softmax(Q(s, .) / alpha), and greedy
play takes the argmax. The reward the agent has recovered is
r(s, a) = Q(s, a) - gamma * (1 - terminated) * V(s'), or with an absorbing state (`absorbing`)
r(s, a) = Q(s, a) - gamma * V_abs at a termination, V_abs learned.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
from torch import nn

from iq_atari.tensors import sample_softmax
from iq_atari.utils import atomic_path


class SoftQAgent(nn.Module):
    """Q network + optional target network + temperature; all on one device.

    `learn_alpha=True` makes log(alpha) a parameter (trained by the learner against a target
    entropy); otherwise alpha is a fixed buffer saved with the weights.

    `absorbing=True` adds `v_absorb`, the learned value of the absorbing state that every
    termination leads to (DAC, Kostrikov et al. 2019), in place of a fixed V = 0 after the end.
    """

    def __init__(
        self,
        q_net: nn.Module,
        n_actions: int,
        alpha: float = 1e-3,
        learn_alpha: bool = False,
        use_target: bool = False,
        absorbing: bool = False,
    ):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.q_net = q_net
        self.n_actions = n_actions
        self.target_net: nn.Module | None = None
        if use_target:
            self.target_net = copy.deepcopy(q_net).requires_grad_(False)
        log_alpha = torch.tensor(math.log(alpha), dtype=torch.float32)
        if learn_alpha:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)
        self.v_absorb: nn.Parameter | None = None
        if absorbing:
            self.v_absorb = nn.Parameter(torch.zeros(()))

    @property
    def device(self) -> torch.device:
        return self.log_alpha.device

    @property
    def alpha(self) -> torch.Tensor:
        """The temperature, detached: losses on Q never move alpha."""
        return self.log_alpha.detach().exp()

    def q_parameters(self) -> list[nn.Parameter]:
        """What the IQ loss trains: the Q network, and V_abs with an absorbing state."""
        extra = [] if self.v_absorb is None else [self.v_absorb]
        return [*self.q_net.parameters(), *extra]

    def q(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) for a batch of raw observations: (B, n_actions)."""
        return self.q_net(obs)

    def value(self, q: torch.Tensor) -> torch.Tensor:
        """V from Q(s, .) rows: alpha * logsumexp(Q / alpha), computed in float32. (B,)."""
        alpha = self.alpha
        return alpha * torch.logsumexp(q.float() / alpha, dim=-1)

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) through the online network."""
        return self.value(self.q(obs))

    @torch.no_grad()
    def target_v(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) through the target network (no gradient); the online one if there is none."""
        net = self.target_net if self.target_net is not None else self.q_net
        return self.value(net(obs))

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """Polyak-average the online weights into the target: tau=1 is a hard copy."""
        if self.target_net is None:
            return
        for target, online in zip(
            self.target_net.parameters(), self.q_net.parameters(), strict=True
        ):
            target.lerp_(online, tau)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray | torch.Tensor, greedy: bool, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Actions for a batch of observations: argmax Q, or a sample from softmax(Q / alpha)."""
        obs_t = torch.as_tensor(obs, device=self.device)
        q = self.q(obs_t).float()
        actions = q.argmax(dim=-1) if greedy else sample_softmax(q, generator, self.alpha)
        return actions.cpu().numpy()

    @torch.no_grad()
    def recovered_reward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        gamma: float,
    ) -> torch.Tensor:
        """r(s, a) = Q(s, a) - gamma * (1 - terminated) * V(s'), with the online network; with an
        absorbing state a termination bootstraps from V_abs instead. (B,)."""
        q_sa = self.q(obs).float().gather(1, actions.long().view(-1, 1)).squeeze(1)
        next_v = self.v(next_obs)
        if self.v_absorb is not None:
            return q_sa - gamma * torch.where(terminated.bool(), self.v_absorb, next_v)
        return q_sa - gamma * (1.0 - terminated.float()) * next_v

    def policy_entropy(self, q: torch.Tensor) -> torch.Tensor:
        """Entropy of softmax(Q / alpha) per row, (B,)."""
        logp = torch.log_softmax(q.float() / self.alpha, dim=-1)
        return -(logp.exp() * logp).sum(dim=-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the weights (Q, target, log alpha) atomically."""
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)

    def load(self, path: str | os.PathLike) -> None:
        """Read weights written by `save` into this (same-shaped) agent."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
