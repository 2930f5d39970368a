"""Experts from stable-baselines3 / RL-Zoo checkpoints (.zip of DQN, QR-DQN, PPO, A2C).

Needs the optional `zoo` extra (stable-baselines3, sb3-contrib). The checkpoint's policy sees
observations in the layout it was trained on: RL-Zoo Atari agents were trained on SB3's
AtariWrapper (84x84 gray, max-pooled skip 4) + VecFrameStack(4), i.e. channel-last (84, 84, 4)
stacks, so our (4, 84, 84) stacks are transposed for it; demos still record our layout.
Vector observations pass through unchanged.

Differences to be aware of: AtariWrapper grays with cv2 from RGB while our env uses ALE's own
grayscale (a few gray levels apart), and RL-Zoo agents were trained without sticky actions.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.envs import resolve_game
from iq_atari.errors import InputError

ALGOS = ("dqn", "qrdqn", "ppo", "a2c")
# What SB3's `load` raises on a file that is not a whole checkpoint of its class (a truncated
# zip, a zip without SB3's members: it asserts their presence, a foreign pickle).
UNREADABLE = (
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    AssertionError,
    EOFError,
    RuntimeError,
    TypeError,
    AttributeError,
    OSError,
)
# Schedules saved in old checkpoints may not unpickle across versions; prediction needs none.
CUSTOM_OBJECTS = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "exploration_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
}


def algo_class(algo: str) -> type:
    """The stable-baselines3 / sb3-contrib class for an algorithm name."""
    try:
        if algo == "qrdqn":
            from sb3_contrib import QRDQN

            return QRDQN
        import stable_baselines3 as sb3
    except ImportError as err:
        raise InputError(
            f"loading {algo} checkpoints needs the zoo extra: pip install -e '.[zoo]' ({err})"
        ) from err
    classes = {"dqn": sb3.DQN, "ppo": sb3.PPO, "a2c": sb3.A2C}
    if algo not in classes:
        raise InputError(f"--algo: unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")
    return classes[algo]


def detect_algo(path: Path) -> str:
    """The algorithm of an SB3 .zip: from its file name (dqn-Pong...zip) or its saved data."""
    stem = path.stem.lower()
    for algo in ("qrdqn", "dqn", "ppo", "a2c"):  # qrdqn before dqn: one contains the other
        if stem.startswith(algo) or f"_{algo}" in stem or f"-{algo}" in stem:
            return algo
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        if not isinstance(data, dict):
            raise ValueError("its data is not a JSON object")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a stable-baselines3 checkpoint ({err})") from err
    module = str(data.get("policy_class", {}).get("__module__", ""))
    if "qrdqn" in module:
        return "qrdqn"
    if "dqn" in module:
        return "dqn"
    if "clip_range" in data:
        return "ppo"
    if "policy_class" in data:
        return "a2c"
    raise InputError(f"{path}: cannot tell the algorithm; name the file <algo>-<env>.zip")


class SB3Expert:
    """A stable-baselines3 policy acting greedily (deterministic=True) on our observations."""

    def __init__(self, model: Any, path: Path, algo: str, obs_shape: tuple[int, ...]) -> None:
        self.model = model
        self.algo = algo
        self.name = path.stem if path.stem.lower().startswith(algo) else f"{algo}-{path.stem}"
        model_shape = tuple(model.observation_space.shape)
        if model_shape == obs_shape:
            self._axes = None
        elif len(obs_shape) == 3 and model_shape == (*obs_shape[1:], obs_shape[0]):
            self._axes = (1, 2, 0)  # (k, H, W) -> channel-last (H, W, k)
        else:
            raise InputError(
                f"{path}: the model expects observations {model_shape}, the env gives {obs_shape}"
            )
        self.provenance = {
            "kind": "sb3",
            "algo": algo,
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "obs_layout": "channel-last (H, W, k)" if self._axes else "as the env gives it",
        }
        score_file = path.with_suffix(".json")
        if score_file.is_file():
            self.provenance["score"] = json.loads(score_file.read_text())

    def sb3_obs(self, obs: np.ndarray) -> np.ndarray:
        """Our observation in the layout the model was trained on."""
        return np.transpose(obs, self._axes) if self._axes else obs

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        action, _ = self.model.predict(self.sb3_obs(np.asarray(obs)), deterministic=True)
        return int(action)


def load_zoo_expert(path: str | Path, game: str, algo: str | None = None) -> SB3Expert:
    """Load an SB3 / RL-Zoo checkpoint as an expert for `game`."""
    from iq_atari.envs import make_env

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--expert: no such file {str(path)!r}")
    algo = algo or detect_algo(path)
    cls = algo_class(algo)
    try:
        model = cls.load(path, device="cpu", custom_objects=CUSTOM_OBJECTS)
    except UNREADABLE as err:
        raise InputError(
            f"{path}: cannot load as a {algo} checkpoint ({type(err).__name__}: {err})"
        ) from err
    env = make_env(game)
    try:
        obs_shape = tuple(env.observation_space.shape)
        n_actions = int(env.action_space.n)
    finally:
        env.close()
    model_actions = getattr(model.action_space, "n", None)
    if model_actions != n_actions:
        raise InputError(
            f"{path}: the model has {model_actions} actions, {resolve_game(game).name} has "
            f"{n_actions}"
        )
    return SB3Expert(model, path, algo, obs_shape)
