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

`load_demos` validates every field before anything trains; each failure raises one `DemoError`
naming the file and the field.
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

from iq_atari.envs import AtariSettings, rebuild_stacks, resolve_game
from iq_atari.errors import InputError
from iq_atari.utils import atomic_path

FORMAT_VERSION = 1
META_KEYS = (
    "format_version",
    "env_id",
    "env_kwargs",
    "frame_stack",
    "n_actions",
    "action_meanings",
    "expert",
    "returns",
    "seed",
    "versions",
)
ARRAY_KEYS = ("actions", "rewards", "terminated", "truncated", "episode_lengths", "meta")


class DemoError(InputError):
    """A demo file (or trajectory) is malformed or does not fit the env: "<file>: <field>: ..."."""


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
        _check_steps("trajectory", "obs", obs, actions, rewards, lengths, "actions")
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
    if not path.is_file():
        raise DemoError(f"{path}: file: no such demo file")
    name = str(path)
    if not zipfile.is_zipfile(path):
        raise DemoError(f"{name}: file: cannot read as .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:  # object arrays need pickle, which we refuse
        raise DemoError(f"{name}: file: not a plain numeric .npz ({err})") from err
    except Exception as err:
        raise DemoError(f"{name}: file: cannot read as .npz ({type(err).__name__}: {err})") from err
    meta = _parse_meta(name, arrays)
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


def check_match(
    demos: DemoSet, env: gym.Env | None, game: str | None, settings: AtariSettings | None
) -> None:
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


def _parse_meta(name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if "meta" not in arrays:
        raise DemoError(f"{name}: meta: missing key (expected a JSON string)")
    raw = arrays["meta"]
    if raw.shape != () or raw.dtype.kind not in "US":
        raise DemoError(f"{name}: meta: expected a JSON string, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise DemoError(f"{name}: meta: not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise DemoError(f"{name}: meta: expected a JSON object, got {type(meta).__name__}")
    return meta


def _check_steps(
    where: str,
    obs_key: str,
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    lengths: np.ndarray,
    lengths_key: str,
) -> None:
    """What a `Trajectory` and a demo file are both checked for (`lengths`: T per episode; one
    for a trajectory): every episode has a step, one action and one reward per step, T+1
    observations per episode, and no NaN or inf in the rewards or in vector observations."""
    if (lengths < 1).any():
        raise DemoError(f"{where}: {lengths_key}: every episode needs at least one step")
    n_steps, n_episodes = int(lengths.sum()), len(lengths)
    for key, values in (("actions", actions), ("rewards", rewards)):
        if len(values) != n_steps:
            raise DemoError(
                f"{where}: {key}: expected {n_steps} (one per step, sum of episode_lengths), "
                f"got {len(values)}"
            )
    rows = n_steps + n_episodes
    if len(obs) != rows:
        count = f"T+1 = {rows}" if n_episodes == 1 else str(rows)
        raise DemoError(
            f"{where}: {obs_key}: expected {count} rows for {n_steps} actions (T+1 per "
            f"episode), got {len(obs)}"
        )
    if not np.isfinite(rewards).all():
        raise DemoError(f"{where}: rewards: contains NaN or inf")
    if obs.dtype != np.uint8 and not np.isfinite(obs).all():
        raise DemoError(f"{where}: {obs_key}: contains NaN or inf")


def validate_arrays(name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Check every key, dtype, shape, length, range and metadata field; raise on the first fault."""
    for key in META_KEYS:
        if key not in meta:
            raise DemoError(f"{name}: meta.{key}: missing")
    if meta["format_version"] != FORMAT_VERSION:
        raise DemoError(
            f"{name}: meta.format_version: got {meta['format_version']!r}, this library reads "
            f"version {FORMAT_VERSION}"
        )
    if not isinstance(meta["env_id"], str) or not meta["env_id"]:
        raise DemoError(f"{name}: meta.env_id: expected a gymnasium id string")
    n_actions = meta["n_actions"]
    if not isinstance(n_actions, int) or isinstance(n_actions, bool) or n_actions < 1:
        raise DemoError(f"{name}: meta.n_actions: expected a positive integer, got {n_actions!r}")
    meanings = meta["action_meanings"]
    if not isinstance(meanings, list) or len(meanings) != n_actions:
        raise DemoError(f"{name}: meta.action_meanings: expected a list of {n_actions} names")
    if not isinstance(meta["env_kwargs"], dict):
        raise DemoError(f"{name}: meta.env_kwargs: expected an object")
    stack = meta["frame_stack"]
    if not isinstance(stack, int) or isinstance(stack, bool) or stack < 1:
        raise DemoError(f"{name}: meta.frame_stack: expected a positive integer, got {stack!r}")

    has_frames, has_obs = "frames" in arrays, "obs" in arrays
    if has_frames == has_obs:
        raise DemoError(f"{name}: frames/obs: expected exactly one of 'frames' (uint8) or 'obs'")
    for key in ARRAY_KEYS:
        if key not in arrays:
            raise DemoError(f"{name}: {key}: missing key")
    obs_key = "frames" if has_frames else "obs"
    obs = arrays[obs_key]
    if has_frames and (obs.dtype != np.uint8 or obs.ndim != 3):
        raise DemoError(f"{name}: frames: expected uint8 (N, H, W), got {obs.dtype} {obs.shape}")
    if has_obs and (obs.dtype != np.float32 or obs.ndim != 2):
        raise DemoError(f"{name}: obs: expected float32 (N, D), got {obs.dtype} {obs.shape}")
    if has_obs and stack != 1:
        raise DemoError(f"{name}: meta.frame_stack: vector observations need 1, got {stack}")
    expected = {
        "actions": (np.int64, 1),
        "rewards": (np.float32, 1),
        "terminated": (np.bool_, 1),
        "truncated": (np.bool_, 1),
        "episode_lengths": (np.int64, 1),
    }
    for key, (dtype, ndim) in expected.items():
        arr = arrays[key]
        if arr.dtype != dtype or arr.ndim != ndim:
            raise DemoError(
                f"{name}: {key}: expected {np.dtype(dtype).name} with {ndim} dim, got "
                f"{arr.dtype} {arr.shape}"
            )
    lengths = arrays["episode_lengths"]
    n_episodes = len(lengths)
    if n_episodes == 0:
        raise DemoError(f"{name}: episode_lengths: no episodes")
    for key in ("terminated", "truncated"):
        if len(arrays[key]) != n_episodes:
            raise DemoError(
                f"{name}: {key}: expected {n_episodes} (one per episode), got {len(arrays[key])}"
            )
    actions = arrays["actions"]
    _check_steps(name, obs_key, obs, actions, arrays["rewards"], lengths, "episode_lengths")
    if actions.size and (actions.min() < 0 or actions.max() >= n_actions):
        raise DemoError(
            f"{name}: actions: values must lie in [0, {n_actions}), got "
            f"{actions.min()}..{actions.max()}"
        )
    returns = meta["returns"]
    if not isinstance(returns, list) or len(returns) != n_episodes:
        raise DemoError(
            f"{name}: meta.returns: expected a list of {n_episodes} per-episode returns"
        )
    sums = np.add.reduceat(arrays["rewards"].astype(np.float64), np.r_[0, np.cumsum(lengths)[:-1]])
    if not np.allclose(sums, np.asarray(returns, dtype=np.float64), rtol=1e-4, atol=1e-3):
        raise DemoError(f"{name}: meta.returns: do not match the sums of rewards per episode")
