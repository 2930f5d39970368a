"""What a demo file's arrays and metadata must be, checked before anything is built from them.

`validate_arrays` checks every key, dtype, shape, length, range and metadata field of a demo
file's arrays (`demos.load_demos` and `minari_import` on what they read, `demos.save_demos` on
what it writes); `check_steps` is the part a single `demos.Trajectory` is checked for too. Each
failure raises one `DemoError` "<file>: <field>: ...". The layout itself is described in
`demos`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from iq_atari.errors import DemoError

FORMAT_VERSION = 1  # written by demos.save_demos; a file of another version is refused
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


def parse_meta(name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The file's `meta` key read as a JSON object (its fields are checked by `validate_arrays`)."""
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


def check_steps(
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
    check_steps(name, obs_key, obs, actions, arrays["rewards"], lengths, "episode_lengths")
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
