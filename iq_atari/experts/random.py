"""A uniformly random policy: the floor every expert must beat, and a cheap stand-in in tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class RandomExpert:
    """Uniform random actions from its own generator (seeded once; it never touches the env's)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.provenance = {"kind": "random", "description": "uniform random actions", "seed": seed}
        self._rng = np.random.default_rng(seed)

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        return int(self._rng.integers(env.action_space.n))
