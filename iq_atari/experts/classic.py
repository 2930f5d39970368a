"""Hand-written experts for classic control: no weights, deterministic, read the observation only.

LunarLander-v3 uses gymnasium's own `heuristic`. Their scores are in docs/RESULTS.md (Experts,
"Scripted experts and the classic-control controllers") and expert_demos/README.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class ControllerExpert:
    """An expert that is a pure function of the observation."""

    name: str
    policy: Callable[[np.ndarray], int]
    provenance: dict[str, Any] = field(default_factory=dict)

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        return int(self.policy(obs))


def cartpole_policy(obs: np.ndarray) -> int:
    """Push toward where the pole falls, with small cart-position/velocity terms to stay centred."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs)
    return 1 if theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0 else 0


def acrobot_policy(obs: np.ndarray) -> int:
    """Energy pumping: torque along the second link's velocity, damped by the first link's."""
    dtheta1, dtheta2 = float(obs[4]), float(obs[5])
    return 2 if dtheta2 - 0.5 * dtheta1 > 0 else 0


# MountainCar-v0 dynamics (gymnasium's mountain_car.py), used to look ahead.
_MC_FORCE, _MC_GRAVITY, _MC_MAX_SPEED = 0.001, 0.0025, 0.07
_MC_MIN_X, _MC_MAX_X, _MC_GOAL_X = -1.2, 0.6, 0.5


def _mountain_car_step(x: float, v: float, action: int) -> tuple[float, float]:
    v += (action - 1) * _MC_FORCE - math.cos(3 * x) * _MC_GRAVITY
    v = min(max(v, -_MC_MAX_SPEED), _MC_MAX_SPEED)
    x = min(max(x + v, _MC_MIN_X), _MC_MAX_X)
    if x == _MC_MIN_X and v < 0:
        v = 0.0
    return x, v


def _steps_to_goal(x: float, v: float, first: int, limit: int = 200) -> int:
    """Steps to the flag taking `first`, then always pushing along the velocity."""
    x, v = _mountain_car_step(x, v, first)
    for n in range(1, limit):
        if x >= _MC_GOAL_X and v >= 0:
            return n
        x, v = _mountain_car_step(x, v, 2 if v >= 0 else 0)
    return limit


def mountain_car_policy(obs: np.ndarray) -> int:
    """One-step look-ahead over the push-along-velocity heuristic, with the known dynamics."""
    x, v = float(obs[0]), float(obs[1])
    default = 2 if v >= 0 else 0
    return min((0, 2), key=lambda a: (_steps_to_goal(x, v, a), a != default))


def lunar_lander_policy(obs: np.ndarray) -> int:
    """gymnasium's own hand-written `heuristic` for LunarLander (discrete)."""
    from gymnasium.envs.box2d.lunar_lander import heuristic

    return int(heuristic(_DISCRETE_LANDER, obs))


class _DiscreteLander:
    """Stands in for the env: `heuristic` only reads `env.unwrapped.continuous`."""

    continuous = False

    @property
    def unwrapped(self) -> _DiscreteLander:
        return self


_DISCRETE_LANDER = _DiscreteLander()


_CLASSIC = {
    "CartPole-v1": ("controller", cartpole_policy),
    "Acrobot-v1": ("controller", acrobot_policy),
    "MountainCar-v0": ("planner", mountain_car_policy),
    "LunarLander-v3": ("heuristic", lunar_lander_policy),
}


def classic_expert(env_id: str) -> ControllerExpert | None:
    """The hand-written expert for a classic-control env id, or None."""
    if env_id not in _CLASSIC:
        return None
    name, policy = _CLASSIC[env_id]
    doc = (policy.__doc__ or "").strip()
    return ControllerExpert(
        name=name,
        policy=policy,
        provenance={
            "kind": "scripted",
            "env_id": env_id,
            "source": f"{__name__}.{policy.__name__}",
            "description": doc,
        },
    )
