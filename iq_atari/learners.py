"""What the training loop trains: the `Learner` protocol that IQ-Learn and BC both meet, and the
learner a `TrainConfig` names, built fresh or read back from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from iq_atari.agent import SoftQAgent
from iq_atari.averaging import WeightAverage
from iq_atari.bc import BCConfig, BCLearner, hold_out
from iq_atari.buffers import Batch, FrameBuffer
from iq_atari.checkpoint import read_checkpoint, restore
from iq_atari.config import (
    TrainConfig,
    config_from_dict,
    loss_config,
    options_from,
    parse_hidden,
    resolve_config,
)
from iq_atari.errors import InputError
from iq_atari.iq_learner import IQLearner, IQLearnerConfig
from iq_atari.networks import make_q_network
from iq_atari.utils import resolve_device

# The learner-state key of a checkpoint slimmed to what acting needs (`shipped.export_agent`).
POLICY_ONLY = "policy_weights"
# The checkpoint key of the run's weight average (`averaging.WeightAverage.state_dict`).
AVERAGE = "average"


class Learner(Protocol):
    """What the loop trains. Metric values are anything `float()` accepts."""

    def update(self, expert_batch: Batch, agent_batch: Batch | None) -> dict[str, Any]: ...
    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def policy_state(self) -> dict: ...  # the weights acting needs (a shipped agent's file)
    def load_policy_state(self, state: dict) -> None: ...
    def set_lr_scale(self, scale: float) -> None: ...  # learning rate = configured lr * scale


def make_learner(
    config: TrainConfig,
    obs_space: gym.Space,
    n_actions: int,
    device: torch.device,
    initial_obs: np.ndarray | None = None,
    expert: FrameBuffer | None = None,
) -> Learner:
    """The learner `config.algo` names, with fresh networks on `device`. BC holds a validation
    split out of the `expert` buffer (so the loop never samples it)."""
    q_net = make_q_network(
        obs_space,
        n_actions,
        parse_hidden(config.hidden),
        config.activation,
        bf16=config.bf16,
        encoder=config.encoder,
    )
    if config.algo == "bc":
        return _bc_learner(config, q_net, device, expert)
    agent = SoftQAgent(
        q_net,
        n_actions,
        alpha=config.alpha,
        learn_alpha=config.learn_alpha,
        use_target=config.next_v == "target",
        absorbing=config.absorbing,
    ).to(device)
    learner_config = options_from(IQLearnerConfig, config, loss=loss_config(config))
    v0_obs = initial_obs if config.value_term == "v0" else None
    return IQLearner(agent, learner_config, v0_obs, seed=config.seed)


def _bc_learner(
    config: TrainConfig, net: torch.nn.Module, device: torch.device, expert: FrameBuffer | None
) -> BCLearner:
    """BC on the network body IQ would use, with logits as outputs. With the run's `expert`
    buffer, a validation split is held out of it (`bc.hold_out`) for early stopping; the split
    depends only on the seed, so a resumed run holds out the same."""
    # Validate ten times per evaluation interval: every 100 updates on classic control.
    bc_config = options_from(BCConfig, config, val_interval=max(1, config.eval_interval // 10))
    validation = None
    if expert is not None:
        rng = np.random.default_rng([config.seed, 0xBC])
        validation = hold_out(expert, bc_config.val_fraction, rng)
    return BCLearner(net, bc_config, validation, device)


def load_learner(checkpoint: str | Path, device: str = "cpu") -> tuple[Learner, TrainConfig]:
    """A trained learner (e.g. for videos) and its config, from a checkpoint or a run directory.
    Where the run averaged weights (`TrainConfig.average_from`), it acts with the average: the
    policy the run evaluated."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = read_checkpoint(path)
    config = saved_config(state, path)
    space = _obs_space(state["obs_shape"], state["obs_dtype"])
    learner = make_learner(config, space, state["n_actions"], resolve_device(device))
    if POLICY_ONLY in state["learner"]:  # a shipped agent: the policy's weights, maybe fp16
        weights = {
            k: v.float() if torch.is_floating_point(v) else v
            for k, v in state["learner"][POLICY_ONLY].items()
        }
        restore(path, f"its {config.algo} policy", lambda: learner.load_policy_state(weights))
    else:
        restore(
            path, f"its {config.algo} learner", lambda: learner.load_state_dict(state["learner"])
        )
        if AVERAGE in state:
            average = WeightAverage()
            restore(path, "its weight average", lambda: average.load_state_dict(state[AVERAGE]))
            if average.count:
                what = f"its averaged {config.algo} policy"
                restore(path, what, lambda: learner.load_policy_state(average.weights))
    return learner, config


def saved_config(state: dict, path: Path) -> TrainConfig:
    """The resolved TrainConfig a checkpoint was trained with, checked as a new one would be."""
    try:
        config = config_from_dict(state["config"])
        parse_hidden(config.hidden)
        return resolve_config(config)
    except (InputError, TypeError, ValueError) as err:
        raise InputError(f"{path}: config: {err}") from err


def _obs_space(shape: list[int], dtype: str) -> gym.Space:
    if dtype == "uint8":
        return gym.spaces.Box(0, 255, tuple(shape), np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, tuple(shape), np.float32)
