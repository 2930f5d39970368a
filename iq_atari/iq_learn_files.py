"""Import of the official IQ-Learn code's expert files (Div99/IQ-Learn `experts/*.pkl`): a pickled
dict of per-episode states, next_states, actions, rewards, dones and lengths, converted into one
of our validated demo files. Pickles can run code when read, so reading needs `trust_pickle`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iq_atari.demo_library import DEMO_DIR, demo_filename
from iq_atari.demos import Trajectory, save_demos
from iq_atari.envs import resolve_game
from iq_atari.errors import DemoError

_IQ_LEARN_KEYS = ("states", "next_states", "actions", "rewards", "dones", "lengths")


class _LazyFramesShim:
    """Unpickles the official code's LazyFrames (a list of frames, or the forced array)."""

    _frames: list | None = None
    _out: np.ndarray | None = None

    def __array__(self, dtype=None, copy=None):
        out = self._out if self._out is not None else np.concatenate(self._frames, axis=0)
        return out if dtype is None else out.astype(dtype)


def _read_iq_learn_file(path: Path, trust_pickle: bool) -> dict[str, Any]:
    if not trust_pickle:
        raise DemoError(
            f"{path}: file: official IQ-Learn files are pickles, which can run code when read; "
            "pass --trust-pickle if you trust where this file came from"
        )
    import pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if name == "LazyFrames":
                return _LazyFramesShim
            return super().find_class(module, name)

    with open(path, "rb") as f:
        if path.suffix == ".npy":
            data = np.load(f, allow_pickle=True)
            data = data.item() if data.ndim == 0 else data
        else:
            data = Unpickler(f).load()
    if not isinstance(data, dict):
        raise DemoError(f"{path}: file: expected a dict of {', '.join(_IQ_LEARN_KEYS)}")
    return data


def _imported_trajectory(name: str, data: dict, i: int, max_steps: int | None) -> Trajectory:
    """Episode i of an official file: obs = states + the last next_state; stacks -> newest frame."""
    length = int(data["lengths"][i])
    states = np.asarray([np.asarray(s) for s in data["states"][i][:length]])
    next_states = np.asarray([np.asarray(s) for s in data["next_states"][i][:length]])
    if len(states) != length or len(next_states) != length or length < 1:
        raise DemoError(f"{name}: states[{i}]: expected lengths[{i}] = {length} entries")
    if not np.array_equal(states[1:], next_states[:-1]):
        raise DemoError(f"{name}: next_states[{i}]: not the following states (subsampled data?)")
    obs = np.concatenate([states, next_states[-1:]])
    if obs.ndim == 4:  # image stacks: keep the newest frame, channel-first (k, H, W) or last
        channel_last = obs.shape[-1] < obs.shape[1]
        obs = (obs[..., -1] if channel_last else obs[:, -1]).astype(np.uint8)
    elif obs.ndim == 2:
        obs = obs.astype(np.float32)
    else:
        raise DemoError(f"{name}: states[{i}]: expected vectors or image stacks, got {obs.shape}")
    actions = np.asarray(data["actions"][i][:length]).reshape(length)
    rewards = np.asarray(data["rewards"][i][:length], dtype=np.float32).reshape(length)
    done = bool(np.asarray(data["dones"][i][:length]).reshape(length)[-1])
    # gym<0.26 "done" mixes both ends; a done at the time limit was a truncation.
    hit_limit = max_steps is not None and length >= max_steps
    return Trajectory(
        obs, actions, rewards, terminated=done and not hit_limit, truncated=not done or hit_limit
    )


def import_iq_learn(
    path: str | Path,
    game: str,
    out: Path | None = None,
    trust_pickle: bool = False,
    min_return: float | None = None,
) -> Path:
    """Convert an official IQ-Learn expert file (dict of per-episode lists) to our demo format.

    Atari stacks keep their newest frame; on load the first k-1 stacks are rebuilt with zero
    padding where the official wrapper repeated the first frame. Returns the written path.
    """
    from iq_atari.envs import action_meanings, env_settings, make_env

    path = Path(path)
    if not path.is_file():
        raise DemoError(f"{path}: file: no such file")
    name = str(path)
    data = _read_iq_learn_file(path, trust_pickle)
    for key in _IQ_LEARN_KEYS:
        if key not in data:
            raise DemoError(f"{name}: {key}: missing key")
    spec = resolve_game(game)
    env = make_env(game)
    try:
        n_actions, meanings = int(env.action_space.n), action_meanings(env)
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    trajectories = [
        _imported_trajectory(name, data, i, max_steps) for i in range(len(data["lengths"]))
    ]
    if min_return is not None:
        trajectories = [t for t in trajectories if t.ret >= min_return]
    if not trajectories:
        raise DemoError(f"{name}: rewards: no episode to import (--min-return {min_return})")
    is_frames = trajectories[0].obs.dtype == np.uint8
    first = np.asarray(data["states"][0][0])
    meta = {
        "env_id": spec.env_id,
        "env_kwargs": env_settings(game) if is_frames else {},
        "frame_stack": int(min(first.shape[0], first.shape[-1])) if is_frames else 1,
        "n_actions": n_actions,
        "action_meanings": meanings,
        "expert": {"name": "iq-learn-import", "kind": "imported", "source": path.name},
    }
    if out is None:
        out = DEMO_DIR / demo_filename(game, "iq-learn-import", len(trajectories))
    save_demos(out, trajectories, meta)
    print(f"imported {len(trajectories)} episodes from {path} -> {out}")
    return Path(out)
