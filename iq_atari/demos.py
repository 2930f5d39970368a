"""Expert demonstrations: the typed `Trajectory`, and demo files (.npz) written, read and validated.

A demo file stores each episode's observations once. For Atari frame stacks that is the single
newest 84x84 frame per step (T+1 frames per episode of T steps); the (k, 84, 84) stacks are rebuilt
on load by `envs.rebuild_stacks`, exactly as `FrameStackObservation(padding_type="zero")` builds
them. Keys of the .npz (all episodes concatenated):

  frames   uint8 (sum(T+1), H, W)   Atari: single newest frames     } exactly one of
  obs      float32 (sum(T+1), D)    vector observations             } these two
  actions  int64 (sum T,)            rewards  float32 (sum T,), raw (unclipped)
  terminated, truncated  bool (n_episodes,)   episode_lengths  int64 (n_episodes,), T per episode
  meta     JSON string: format_version, env_id, env_kwargs, frame_stack, n_actions,
           action_meanings, expert, returns, seed, versions

`load_demos` validates every field before anything trains (`demo_checks.validate_arrays`, which
`save_demos` applies to what it writes too) and checks the demos fit the env they are for
(`check_match`); each failure raises one `DemoError` naming the file and the field.
"""

from __future__ import annotations

import json
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.demo_checks import FORMAT_VERSION, check_steps, parse_meta, validate_arrays
from iq_atari.envs import AtariSettings, rebuild_stacks, resolve_game
from iq_atari.errors import DemoError
from iq_atari.utils import atomic_path


@dataclass(frozen=True)
class Trajectory:
    """One episode: T+1 observations, T actions and raw rewards, and how it ended.

    Atari obs are the single newest frame per step, (T+1, H, W) uint8; vector obs are
    (T+1, D) float32. Transitions are (obs[t], actions[t], rewards[t], obs[t+1]); the last one
    stops bootstrapping only if `terminated` (a time-limit `truncated` end still bootstraps).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool

    def __post_init__(self) -> None:
        obs, actions, rewards = (np.asarray(x) for x in (self.obs, self.actions, self.rewards))
        if obs.dtype == np.uint8:
            if obs.ndim != 3:
                raise DemoError(
                    f"trajectory: obs: uint8 frames must be (T+1, H, W), got {obs.shape}"
                )
        elif obs.dtype.kind == "f":
            if obs.ndim != 2:
                raise DemoError(f"trajectory: obs: vector obs must be (T+1, D), got {obs.shape}")
            obs = obs.astype(np.float32, copy=False)
        else:
            raise DemoError(
                f"trajectory: obs: expected uint8 frames or float vectors, got {obs.dtype}"
            )
        if actions.ndim != 1 or (actions.dtype.kind not in "iu" and actions.size):
            raise DemoError(
                f"trajectory: actions: expected a 1-D integer array, got {actions.dtype} "
                f"{actions.shape}"
            )
        if rewards.ndim != 1 or (rewards.dtype.kind not in "fiu" and rewards.size):
            raise DemoError(f"trajectory: rewards: expected 1-D numbers, got {rewards.dtype}")
        lengths = np.array([len(actions)])
        check_steps("trajectory", "obs", obs, actions, rewards, lengths, "actions")
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "actions", actions.astype(np.int64, copy=False))
        object.__setattr__(self, "rewards", rewards.astype(np.float32, copy=False))
        object.__setattr__(self, "terminated", bool(self.terminated))
        object.__setattr__(self, "truncated", bool(self.truncated))

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        """The episode's raw return."""
        return float(self.rewards.sum(dtype=np.float64))


@dataclass
class DemoSet:
    """Trajectories of one demo file, its metadata, and where it came from."""

    trajectories: list[Trajectory]
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def frame_stack(self) -> int:
        """Stack depth of the observations the env produces (1 for vector obs)."""
        return int(self.meta.get("frame_stack", 1))

    @property
    def returns(self) -> np.ndarray:
        """Per-episode raw returns."""
        return np.array([t.ret for t in self.trajectories], dtype=np.float64)

    @property
    def lengths(self) -> np.ndarray:
        """Per-episode number of steps T."""
        return np.array([len(t) for t in self.trajectories], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.trajectories)

    def stacked_obs(self, i: int) -> np.ndarray:
        """Trajectory i's observations as the env gave them: (T+1, k, H, W) stacks, or vectors."""
        obs = self.trajectories[i].obs
        if obs.ndim == 2:
            return obs
        return rebuild_stacks(obs, self.frame_stack)


def library_versions() -> dict[str, str]:
    """Versions recorded in demo metadata."""
    import ale_py

    import iq_atari

    return {
        "iq_atari": iq_atari.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "ale_py": ale_py.__version__,
        "python": platform.python_version(),
    }


def save_demos(path: str | Path, trajectories: list[Trajectory], meta: dict[str, Any]) -> Path:
    """Write trajectories + metadata to a compressed .npz atomically; returns the path.

    `meta` needs env_id, n_actions and expert at least; format_version, returns, frame_stack
    (1 for vector obs), action_meanings, env_kwargs, seed and versions are filled in if missing.
    """
    path = Path(path)
    if not trajectories:
        raise DemoError(f"{path}: trajectories: nothing to save (0 episodes)")
    kinds = {t.obs.dtype for t in trajectories}
    shapes = {t.obs.shape[1:] for t in trajectories}
    if len(kinds) != 1 or len(shapes) != 1:
        raise DemoError(f"{path}: obs: episodes differ in dtype/shape: {kinds} {shapes}")
    is_frames = trajectories[0].obs.dtype == np.uint8
    meta = dict(meta)
    for key in ("env_id", "n_actions", "expert"):
        if key not in meta:
            raise DemoError(f"{path}: meta: missing {key!r}")
    meta["format_version"] = FORMAT_VERSION
    meta["returns"] = [t.ret for t in trajectories]
    meta.setdefault("frame_stack", AtariSettings().frame_stack if is_frames else 1)
    meta.setdefault("action_meanings", [f"a{i}" for i in range(int(meta["n_actions"]))])
    meta.setdefault("env_kwargs", {})
    meta.setdefault("seed", None)
    meta.setdefault("versions", library_versions())
    arrays = demo_arrays(trajectories, meta)
    # Check what we write with the same validation as what we read.
    validate_arrays(str(path), arrays, meta)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def demo_arrays(trajectories: list[Trajectory], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a demo file holding `trajectories` (of one observation dtype and shape)."""
    is_frames = trajectories[0].obs.dtype == np.uint8
    return {
        "frames" if is_frames else "obs": np.concatenate([t.obs for t in trajectories]),
        "actions": np.concatenate([t.actions for t in trajectories]),
        "rewards": np.concatenate([t.rewards for t in trajectories]),
        "terminated": np.array([t.terminated for t in trajectories], dtype=bool),
        "truncated": np.array([t.truncated for t in trajectories], dtype=bool),
        "episode_lengths": np.array([len(t) for t in trajectories], dtype=np.int64),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }


def load_demos(
    path: str | Path,
    env: gym.Env | None = None,
    game: str | None = None,
    settings: AtariSettings | None = None,
) -> DemoSet:
    """Read and fully validate a demo file; with `env` / `game` / `settings`, also check the match.

    Raises DemoError ("<file>: <field>: ...") on the first problem found. A Minari dataset
    ("minari:<DATASET_ID>") is read by `demo_sources.load_demo_source`, which takes either.
    """
    path = Path(path)
    name = str(path)
    arrays = _read_arrays(path)
    meta = parse_meta(name, arrays)
    validate_arrays(name, arrays, meta)
    obs_key = "frames" if "frames" in arrays else "obs"
    lengths = arrays["episode_lengths"]
    act_starts = np.concatenate([[0], np.cumsum(lengths)])
    obs_starts = np.concatenate([[0], np.cumsum(lengths + 1)])
    trajectories = [
        Trajectory(
            obs=arrays[obs_key][obs_starts[i] : obs_starts[i + 1]],
            actions=arrays["actions"][act_starts[i] : act_starts[i + 1]],
            rewards=arrays["rewards"][act_starts[i] : act_starts[i + 1]],
            terminated=bool(arrays["terminated"][i]),
            truncated=bool(arrays["truncated"][i]),
        )
        for i in range(len(lengths))
    ]
    demos = DemoSet(trajectories, meta, path)
    check_match(demos, env, game, settings)
    return demos


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta record of the demo file at `path` (expert, env settings, returns), read without
    loading its frames; DemoError naming the file when it is not a demo file."""
    return parse_meta(str(path), _read_arrays(Path(path), keys=("meta",)))


def _read_arrays(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the .npz at `path` (only `keys` of them, where present, when given)."""
    if not path.is_file():
        raise DemoError(f"{path}: file: no such demo file")
    name = str(path)
    if not zipfile.is_zipfile(path):
        raise DemoError(f"{name}: file: cannot read as .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in (keys or npz.files) if k in npz.files}
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise DemoError(f"{name}: file: not a plain numeric .npz ({err})") from err
    except Exception as err:
        raise DemoError(f"{name}: file: cannot read as .npz ({type(err).__name__}: {err})") from err


def check_match(
    demos: DemoSet, env: gym.Env | None, game: str | None, settings: AtariSettings | None
) -> None:
    """Raise DemoError unless the demos are for `game`, fit `env` and were recorded with
    `settings` (each check only where it is given)."""
    name, meta = str(demos.path), demos.meta
    if game is not None:
        expected = resolve_game(game).env_id
        if meta["env_id"] != expected:
            raise DemoError(f"{name}: meta.env_id: demos are for {meta['env_id']}, not {expected}")
    if env is not None:
        check_env_match(demos, env)
    if settings is not None:
        _check_settings(name, meta, settings)


def check_env_match(demos: DemoSet, env: gym.Env) -> None:
    """Raise DemoError unless the demos fit `env`: env id, action count, observation shape."""
    name = str(demos.path) if demos.path else "<demos>"
    meta = demos.meta
    env_id = env.spec.id if env.spec is not None else None
    if env_id is not None and env_id != meta["env_id"]:
        raise DemoError(f"{name}: meta.env_id: demos are for {meta['env_id']}, the env is {env_id}")
    n = getattr(env.action_space, "n", None)
    if n is None:
        raise DemoError(f"{name}: env: the env's action space {env.action_space} is not discrete")
    if int(n) != meta["n_actions"]:
        raise DemoError(
            f"{name}: meta.n_actions: demos have {meta['n_actions']} actions, the env has {int(n)}"
        )
    first = demos.trajectories[0].obs
    demo_shape = (demos.frame_stack, *first.shape[1:]) if first.ndim == 3 else first.shape[1:]
    env_shape = tuple(env.observation_space.shape or ())
    if tuple(demo_shape) != env_shape:
        what = "frame_stack" if first.ndim == 3 and env_shape[1:] == first.shape[1:] else "obs"
        raise DemoError(
            f"{name}: {'meta.' if what == 'frame_stack' else ''}{what}: demo observations are "
            f"{tuple(demo_shape)}, the env gives {env_shape}"
        )


def _check_settings(name: str, meta: dict, settings: AtariSettings) -> None:
    recorded = meta["env_kwargs"]
    if not recorded:
        return  # classic control: no settings
    for key, value in settings.to_dict().items():
        if key in recorded and recorded[key] != value:
            raise DemoError(
                f"{name}: meta.env_kwargs.{key}: demos were recorded with {recorded[key]!r}, "
                f"the env uses {value!r}"
            )
