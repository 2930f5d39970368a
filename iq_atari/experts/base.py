"""The expert interface: a name, a provenance record, and `act(obs, env) -> action`."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

RAM_ALGO = "ppo-ram"  # PPO on RAM object features (ram_expert.py)
DISTILLED_ALGO = "distilled"  # a DAgger-distilled pixel student (distill.py)


@runtime_checkable
class Expert(Protocol):
    """A policy that plays an env well enough to imitate.

    `act` gets the observation our env produced (Atari: the (k, 84, 84) uint8 stack) and the env
    itself, so scripted experts can read the emulator (RAM, state clones) through
    `env.unwrapped.ale`. `reset` is called after every `env.reset`, before the first `act`.
    `provenance` is stored in demo metadata: what the expert is, where it came from, its score.
    """

    name: str
    provenance: dict[str, Any]

    def reset(self, env: gym.Env) -> None: ...

    def act(self, obs: np.ndarray, env: gym.Env) -> int: ...
