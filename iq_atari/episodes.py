"""Play one episode of a policy: its `Trajectory`, raw score and, if asked, RGB frames for video.

Atari trajectories record the single newest frame of each observation stack (`obs[-1]`); the
stacks are rebuilt from them (`DemoSet.stacked_obs`), exactly as the env built them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from iq_atari.demos import Trajectory

Policy = Callable[[np.ndarray], int]


@dataclass
class Episode:
    """One played episode: its trajectory, raw score, and (if asked) its rendered RGB frames."""

    trajectory: Trajectory
    score: float  # raw game score (info["episode"]["r"]); equals the return of the trajectory
    seed: int
    frames: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.trajectory)


def single_frame(obs: np.ndarray) -> np.ndarray:
    """What a trajectory stores per step: the newest frame of an image stack, else the vector."""
    obs = np.asarray(obs)
    return obs[-1].copy() if obs.ndim == 3 else obs.astype(np.float32)


def run_episode(
    env: gym.Env,
    policy: Policy,
    seed: int,
    *,
    on_reset: Callable[[], None] | None = None,
    render: bool = False,
    perturb: Callable[[int], int] | None = None,
) -> Episode:
    """Play one episode from `env.reset(seed=seed)` with `policy(obs) -> action`.

    `on_reset` runs after the reset, before the first action (an expert's `reset`). With
    `render`, the env must have render_mode="rgb_array"; frames holds one RGB image per step.
    `perturb` maps the policy's action to the one the env executes (DART noise); the trajectory
    records the policy's action.
    """
    obs, info = env.reset(seed=seed)
    if on_reset is not None:
        on_reset()
    observations, actions, rewards = [single_frame(obs)], [], []
    frames = [env.render()] if render else []
    while True:
        action = int(policy(obs))
        executed = action if perturb is None else perturb(action)
        obs, reward, terminated, truncated, info = env.step(executed)
        observations.append(single_frame(obs))
        actions.append(action)
        rewards.append(float(reward))
        if render:
            frames.append(env.render())
        if terminated or truncated:
            break
    trajectory = Trajectory(
        obs=np.stack(observations),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=terminated,
        truncated=truncated,
    )
    score = float(info["episode"]["r"]) if "episode" in info else trajectory.ret
    return Episode(trajectory, score, seed, frames)
