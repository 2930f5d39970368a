"""Behavioural cloning: a softmax policy on the soft-Q network bodies, cross-entropy on expert
actions, with a held-out validation split of the demos and early stopping on its loss.

The training loop (`iq_atari.train`) drives BC exactly as it drives IQ-Learn (same batches,
evaluation, checkpoints and logs); `iq_atari.learners.make_learner` builds it. The validation
transitions are contiguous blocks of each demo episode (neighbouring steps of one episode are
nearly identical, so randomly scattered held-out steps would say little about generalisation),
taken out of the expert buffer so that they are never trained on.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iq_atari.buffers import Batch, FrameBuffer
from iq_atari.tensors import sample_softmax, to_tensor
from iq_atari.utils import set_lr


def bc_loss(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    """Cross-entropy of expert `actions` (B,) under softmax(`logits`) (B, n_actions).

    Metrics (detached 0-d tensors): the loss, the accuracy of the argmax action, and the mean
    entropy of the policy.
    """
    logits = logits.float()
    loss = F.cross_entropy(logits, actions.long())
    with torch.no_grad():
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1).mean()
        accuracy = (logits.argmax(dim=-1) == actions).float().mean()
    return loss, {"bc_loss": loss.detach(), "accuracy": accuracy, "entropy": entropy}


@dataclass(frozen=True)
class BCConfig:
    """Optimisation and early-stopping options of behavioural cloning."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # of each demo episode's transitions, held out for validation
    val_interval: int = 100  # updates between validation checks
    patience: int = 10  # checks without a lower validation loss before training stops
    val_chunk: int = 1024  # validation observations per forward pass (bounds memory on Atari)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_interval < 1 or self.patience < 1:
            raise ValueError("val_interval and patience must be >= 1")


@dataclass(frozen=True)
class Validation:
    """Held-out expert observations and actions."""

    obs: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


def hold_out(buffer: FrameBuffer, fraction: float, rng: np.random.Generator) -> Validation | None:
    """Take a validation split out of a single-stream expert buffer; returns it (None if empty).

    From every episode, a contiguous block of ceil(fraction * n) of its n sampleable transitions
    (at a random start) is returned and marked unsampleable in `buffer`, so training never sees
    it. Episodes with fewer than two transitions keep them all.
    """
    if buffer.n_envs != 1:
        raise ValueError("hold_out needs a single-stream (expert) buffer")
    if fraction <= 0:
        return None
    # Expert buffers are filled once from slot 0, so slot order is episode order and every
    # episode starts at a slot whose step counter is 0.
    episode = np.cumsum(buffer.t[0] == 0)
    slots = np.flatnonzero(buffer.has_next[0])
    episode = episode[slots]
    held = []
    for ep in np.unique(episode):
        ep_slots = slots[episode == ep]
        if len(ep_slots) < 2:
            continue
        size = min(len(ep_slots) - 1, math.ceil(fraction * len(ep_slots)))
        start = int(rng.integers(len(ep_slots) - size + 1))
        held.append(ep_slots[start : start + size])
    if not held:
        return None
    slot = np.concatenate(held)
    # Stacks are rebuilt from the frames, which stay in the buffer: only sampling is blocked.
    validation = Validation(buffer.observations(slot), buffer.actions[0, slot])
    buffer.has_next[0, slot] = False
    return validation


class BCLearner:
    """One cross-entropy step per `update`; every `val_interval` updates the validation loss is
    checked, the best weights kept, and after `patience` checks without improvement the best
    weights are restored and further updates do nothing (metric `stopped` = 1)."""

    def __init__(
        self,
        policy_net: torch.nn.Module,
        config: BCConfig,
        validation: Validation | None = None,
        device: torch.device | str = "cpu",
    ):
        self.device = torch.device(device)
        self.net = policy_net.to(self.device)
        self.config = config
        self.optimizer = torch.optim.Adam(
            self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.validation = validation if validation is not None and len(validation) else None
        self.updates = 0  # gradient steps actually taken
        self.best_val_loss = math.inf
        self.best_update = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.bad_checks = 0
        self.stopped = False

    def update(self, expert_batch: Batch, agent_batch: Batch | None) -> dict[str, Any]:
        """One gradient step on the BC loss (nothing once stopped); returns detached metrics."""
        if agent_batch is not None:
            raise ValueError("behavioural cloning trains on expert data only (offline)")
        if self.stopped:
            return {"stopped": 1.0, "best_val_loss": self.best_val_loss}
        obs = to_tensor(expert_batch.obs, self.device)
        actions = to_tensor(expert_batch.actions, self.device)
        self.net.train()
        loss, metrics = bc_loss(self.net(obs), actions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        if self.validation is not None and self.updates % self.config.val_interval == 0:
            metrics.update(self._validate())
        metrics["stopped"] = float(self.stopped)
        return metrics

    @torch.no_grad()
    def validation_metrics(self) -> dict[str, float]:
        """BC loss and accuracy on the held-out split (empty without one)."""
        if self.validation is None:
            return {}
        self.net.eval()
        loss = correct = 0.0
        for start in range(0, len(self.validation), self.config.val_chunk):
            end = start + self.config.val_chunk
            actions = to_tensor(self.validation.actions[start:end], self.device)
            logits = self.net(to_tensor(self.validation.obs[start:end], self.device))
            _, metrics = bc_loss(logits, actions)
            loss += float(metrics["bc_loss"]) * len(actions)
            correct += float(metrics["accuracy"]) * len(actions)
        n = len(self.validation)
        return {"val_loss": loss / n, "val_accuracy": correct / n}

    def _validate(self) -> dict[str, Any]:
        metrics = self.validation_metrics()
        val_loss = float(metrics["val_loss"])
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_update, self.bad_checks = val_loss, self.updates, 0
            self.best_weights = copy.deepcopy(self.net.state_dict())
        else:
            self.bad_checks += 1
            if self.bad_checks >= self.config.patience:
                self.net.load_state_dict(self.best_weights)
                self.stopped = True
        return {**metrics, "best_val_loss": self.best_val_loss}

    @torch.no_grad()
    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray:
        """Actions for a batch of observations: the argmax, or a sample of softmax(logits)."""
        self.net.eval()
        logits = self.net(torch.as_tensor(obs, device=self.device)).float()
        actions = logits.argmax(dim=-1) if greedy else sample_softmax(logits, self.generator)
        return actions.cpu().numpy()

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
            "best_val_loss": self.best_val_loss,
            "best_update": self.best_update,
            "best_weights": self.best_weights,
            "bad_checks": self.bad_checks,
            "stopped": self.stopped,
        }

    def policy_state(self) -> dict:
        """What acting needs: the policy network's weights."""
        return self.net.state_dict()

    def load_policy_state(self, state: dict) -> None:
        self.net.load_state_dict(state)

    def set_lr_scale(self, scale: float) -> None:
        """Set the learning rate to `config.lr * scale` (the loop's schedule)."""
        set_lr(self.optimizer, self.config.lr * scale)

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        self.best_val_loss = float(state["best_val_loss"])
        self.best_update = int(state["best_update"])
        self.best_weights = state["best_weights"]
        self.bad_checks = int(state["bad_checks"])
        self.stopped = bool(state["stopped"])
