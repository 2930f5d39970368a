"""The discrete IQ-Learn objective (Garg et al., 2021) as a pure function, and its options.

The learner that takes gradient steps on it is `iq_learner.IQLearner`.

With y = gamma * (1 - terminated) * V(s') and the recovered reward r = Q(s, a) - y:

    loss = -E_expert[phi'(r) * r]                      (phi' = 1 for chi2; weights otherwise)
         + value term                                  (`value_term`)
         + 1 / (4 alpha_chi) * E[r^2]                  (chi2 only; `regularize_over`)

value terms: `value_expert` E_expert[V(s) - y], `value` E_all[V(s) - y], `v0` (1 - gamma) E[V(s0)]
over episode-initial states (of the demos), as in the paper. (The official `v0` averages V over
every state of the expert batch instead, `getV(obs[is_expert])`: a different quantity, not the
telescoped initial-state term.) The chi2 regulariser runs over the expert samples,
`all` samples, or `policy`: the expert samples plus the agent's states with actions drawn from
the current policy (the official `method.regularize`).

Defaults (config.MODE_DEFAULTS): `value_expert` in both modes; chi2 over the expert samples
offline, and online over the expert samples plus the agent's states with policy actions
(`policy`), so the agent's transitions train Q through the regulariser. With `value` or `v0`
online, IQ tends to learn negative rewards on the agent's own states, so ending an episode early
looks good (V = 0 after termination); how each combination fared is in docs/RESULTS.md,
"Online IQ".

Absorbing state (`absorbing_rows`, DAC: Kostrikov et al. 2019): with V = 0 after a termination
the recovered reward fixes the value of ending, so learning negative rewards on the agent's own
states makes ending early pay. With it, a termination bootstraps from a learned V_abs and each
terminated row brings one self-transition of the absorbing state (r = (1 - gamma) V_abs).
Opt-in (`absorbing`); its effect on learning is in docs/RESULTS.md, "Absorbing state".
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import torch

from iq_atari.errors import InputError

ValueTerm = Literal["value_expert", "value", "v0"]
Divergence = Literal["chi2", "kl", "kl_fix", "js", "hellinger"]
RegularizeOver = Literal["expert", "all", "policy"]


class OptionError(InputError):
    """An option outside its allowed set."""


def check_choice(name: str, value: object, allowed: object) -> None:
    """Raise OptionError unless `value` is one of the Literal `allowed`'s values."""
    choices = typing.get_args(allowed)
    if value not in choices:
        raise OptionError(f"{name}: unknown value {value!r}; expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class IQLossConfig:
    """Options of the IQ loss (names of the official code in brackets)."""

    gamma: float = 0.99
    value_term: ValueTerm = "value_expert"  # [method.loss]
    divergence: Divergence = "chi2"  # [method.div; chi2 = method.chi=True]
    chi2_alpha: float = 0.5  # alpha_chi of the chi2 regulariser 1/(4 alpha_chi) [method.alpha]
    # chi2 term over: expert samples; all samples (agent rows with their buffer actions); or
    # expert samples + agent states with actions of the current policy [method.regularize]
    regularize_over: RegularizeOver = "expert"

    def __post_init__(self) -> None:
        check_choice("value_term", self.value_term, ValueTerm)
        check_choice("divergence", self.divergence, Divergence)
        check_choice("regularize_over", self.regularize_over, RegularizeOver)
        if self.chi2_alpha <= 0:
            raise OptionError(f"chi2_alpha must be > 0, got {self.chi2_alpha}")


def phi_weights(reward: torch.Tensor, divergence: Divergence) -> torch.Tensor | float:
    """phi'(r): weights of the expert term for each f-divergence (no gradient through them)."""
    with torch.no_grad():
        if divergence == "chi2":
            return 1.0
        if divergence == "kl":
            return torch.exp(-reward - 1)
        if divergence == "kl_fix":
            return torch.exp(-reward)
        if divergence == "js":
            return torch.exp(-reward) / (2 - torch.exp(-reward))
        if divergence == "hellinger":
            return 1 / (1 + reward) ** 2
    raise OptionError(f"divergence: unknown value {divergence!r}")


def iq_loss(
    q_sa: torch.Tensor,
    v: torch.Tensor,
    next_v: torch.Tensor,
    terminated: torch.Tensor,
    is_expert: torch.Tensor,
    config: IQLossConfig,
    v_init: torch.Tensor | None = None,
    q_policy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The IQ-Learn loss on a batch of (B,) tensors; metrics are detached 0-d tensors.

    q_sa = Q(s, a), v = V(s), next_v = V(s') (with or without gradient, the caller decides),
    `is_expert` marks expert rows; `v_init` = V over initial states, needed by `v0`;
    `q_policy` = Q(s, a') with a' drawn from the current policy, needed by regularize_over="policy".
    """
    y = config.gamma * (1.0 - terminated.float()) * next_v
    reward = q_sa - y
    expert_reward = reward[is_expert]
    loss = -(phi_weights(expert_reward, config.divergence) * expert_reward).mean()
    metrics = {"softq_loss": loss.detach()}

    if config.value_term == "value_expert":
        value_loss = (v - y)[is_expert].mean()
    elif config.value_term == "value":
        value_loss = (v - y).mean()
    elif config.value_term == "v0":
        if v_init is None:
            raise ValueError("value_term='v0' needs v_init, V over initial states")
        value_loss = (1 - config.gamma) * v_init.mean()
    else:
        raise OptionError(f"value_term: unknown value {config.value_term!r}")
    loss = loss + value_loss
    metrics["value_loss"] = value_loss.detach()

    if config.divergence == "chi2":
        if config.regularize_over == "expert":
            regularized = expert_reward
        elif config.regularize_over == "all":
            regularized = reward
        else:  # "policy": the agent's states with the current policy's actions
            if q_policy is None:
                raise ValueError("regularize_over='policy' needs q_policy")
            regularized = torch.cat([expert_reward, (q_policy - y)[~is_expert]])
        chi2_loss = (regularized**2).mean() / (4 * config.chi2_alpha)
        loss = loss + chi2_loss
        metrics["chi2_loss"] = chi2_loss.detach()

    metrics["total_loss"] = loss.detach()
    metrics["reward_expert"] = expert_reward.detach().mean()
    metrics["v_expert"] = v[is_expert].detach().mean()
    if not is_expert.all():
        metrics["reward_agent"] = reward[~is_expert].detach().mean()
    return loss, metrics


def absorbing_rows(
    q_sa: torch.Tensor,
    v: torch.Tensor,
    next_v: torch.Tensor,
    terminated: torch.Tensor,
    is_expert: torch.Tensor,
    v_absorb: torch.Tensor,
    q_policy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """The batch with an absorbing state: terminated rows bootstrap from `v_absorb` (a 0-d
    tensor) instead of 0, and one absorbing self-transition (Q = V = V' = V_abs) per terminated
    row joins the batch on that row's side (expert or agent), as DAC adds one per episode end.

    Returns (q_sa, v, next_v, terminated, is_expert, q_policy) for `iq_loss`; `terminated` is
    all False afterwards (no row ends in V = 0).
    """
    ended = terminated.bool()
    absorb = v_absorb.expand(int(ended.sum()))
    next_v = torch.where(ended, v_absorb, next_v)
    q_sa, v, next_v = (torch.cat([x, absorb]) for x in (q_sa, v, next_v))
    is_expert = torch.cat([is_expert, is_expert[ended]])
    if q_policy is not None:
        q_policy = torch.cat([q_policy, absorb])
    return q_sa, v, next_v, torch.zeros_like(is_expert), is_expert, q_policy


def gradient_penalty(
    net: torch.nn.Module,
    expert_obs: torch.Tensor,
    agent_obs: torch.Tensor,
    weight: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """W1-style penalty weight * E[(||dQ_a/dx|| - 1)^2] at random interpolations of expert and
    agent inputs, per action a (as the official `grad_pen`), in the network's input scale."""
    x_expert, x_agent = net.preprocess(expert_obs), net.preprocess(agent_obs)
    shape = (len(x_expert),) + (1,) * (x_expert.dim() - 1)
    mix = torch.rand(shape, generator=generator).to(x_expert.device)
    x = (mix * x_expert + (1 - mix) * x_agent).detach().requires_grad_(True)
    q = net.forward_features(x)
    norms = []
    for a in range(q.shape[1]):
        (grad,) = torch.autograd.grad(q[:, a].sum(), x, create_graph=True)
        norms.append(grad.flatten(1).norm(2, dim=1))
    return weight * ((torch.stack(norms, dim=1) - 1) ** 2).mean()
