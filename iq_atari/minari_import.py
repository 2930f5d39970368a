"""Minari datasets in: a local dataset read as demos, and what export shares with it (the
"minari:" prefix, the metadata key of our record, the import of minari itself).

`load_minari_demos` reads a local dataset, ours (`minari_export`) or one made by anyone else's
code (e.g. Minari's `DataCollector` around a gymnasium env), into a `DemoSet` and validates it like
a demo file: a Discrete action space, Box observations (vectors, or uint8 frames or channel-first
frame stacks, of which the newest frame is kept), an env iq_atari knows, whole episodes. Every
problem raises one `DemoError` "minari:<ID>: <field>: ...". Nothing is downloaded: only local
datasets count.

Our own datasets carry our whole metadata record under the dataset metadata key "iq_atari"; for
another's, the record is rebuilt from the env spec and the spaces (Atari settings as far as the
spec records them). Atari frames come back as single 84x84 frames, the newest of each step, and
stacks are rebuilt on load, oldest frame first, zero frames before the episode's first
(`envs.rebuild_stacks`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.demo_checks import FORMAT_VERSION, validate_arrays
from iq_atari.demos import DemoSet, Trajectory, demo_arrays, library_versions
from iq_atari.envs import MAX_EPISODE_FRAMES, AtariSettings, resolve_game
from iq_atari.errors import DemoError, InputError

MINARI_PREFIX = "minari:"
META_KEY = "iq_atari"  # our metadata record inside the Minari dataset metadata


def require_minari(what: str) -> ModuleType:
    """Import minari, or raise one InputError saying how to install it."""
    try:
        import minari
    except ImportError as err:
        raise InputError(
            f"{what}: Minari datasets need the minari package: pip install 'iq-atari[minari]' "
            f"(or pip install 'minari[hdf5]')"
        ) from err
    return minari


def check_dataset_id(dataset_id: str, what: str) -> None:
    """InputError, prefixed with `what`, unless `dataset_id` is a Minari dataset id."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError as err:
        raise InputError(
            f"{what}: {dataset_id!r} is not a Minari dataset id; expected "
            f"(namespace/)name-v<version>, e.g. iq_atari/cartpole/controller-v0"
        ) from err


def load_minari_demos(dataset_id: str) -> DemoSet:
    """Read the local Minari dataset `dataset_id` as a validated DemoSet (path "minari:<ID>").

    The env match (game, action count, observation shape, settings) is checked by
    `demo_sources.load_demo_source`, as for a demo file.
    """
    name = MINARI_PREFIX + dataset_id
    minari = require_minari(name)
    check_dataset_id(dataset_id, name)
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        dataset = minari.load_dataset(dataset_id)
    except FileNotFoundError as err:
        local = sorted(minari.list_local_datasets())
        raise DemoError(
            f"{name}: dataset: no local Minari dataset with this id under "
            f"{get_dataset_path()} (set MINARI_DATASETS_PATH to read another folder; nothing is "
            f"downloaded); local datasets: {', '.join(local) or 'none'}"
        ) from err
    except Exception as err:  # a malformed metadata.json, an unsupported Minari version, ...
        raise DemoError(f"{name}: dataset: cannot read ({type(err).__name__}: {err})") from err

    action_space, obs_space = dataset.action_space, dataset.observation_space
    if not isinstance(action_space, gym.spaces.Discrete) or int(action_space.start) != 0:
        raise DemoError(
            f"{name}: action_space: {action_space} is not Discrete(n) from 0; iq_atari learns "
            f"discrete-action policies"
        )
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 2, 3):
        raise DemoError(
            f"{name}: observation_space: {obs_space}: expected a Box of vectors, of uint8 frames "
            f"(H, W) or of frame stacks (k, H, W)"
        )
    shape = tuple(obs_space.shape)
    if obs_space.dtype == np.uint8 and not (
        len(shape) == 2 or shape[-1:] == (1,) or (len(shape) == 3 and shape[0] <= 16)
    ):
        raise DemoError(
            f"{name}: observation_space: {shape} uint8: expected grayscale frames (H, W) or "
            f"channel-first stacks (k, H, W); raw RGB screens need AtariPreprocessing (84x84)"
        )
    metadata = dataset.storage.metadata
    ours = metadata.get(META_KEY)
    meta = dict(ours["meta"]) if isinstance(ours, dict) and "meta" in ours else None
    if meta is None:
        meta = _meta_from_spec(name, dataset, metadata)
    trajectories, seeds = _read_episodes(name, dataset, obs_space)
    if meta.get("episode_seeds") is None and any(s is not None for s in seeds):
        meta["episode_seeds"] = seeds
    if ours is None:
        meta["returns"] = [t.ret for t in trajectories]
    shapes = {t.obs.shape[1:] for t in trajectories}
    if len(shapes) != 1:
        raise DemoError(f"{name}: observations: episodes differ in shape: {sorted(shapes)}")
    arrays = demo_arrays(trajectories, meta)
    validate_arrays(name, arrays, meta)  # every check a demo file gets
    if meta["n_actions"] != int(action_space.n):
        raise DemoError(
            f"{name}: action_space: Discrete({int(action_space.n)}) but the iq_atari record says "
            f"{meta['n_actions']} actions"
        )
    return DemoSet(trajectories, meta, Path(name))


def _meta_from_spec(name: str, dataset: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Our metadata record for a dataset made by other code, from its env spec and spaces."""
    spec = dataset.env_spec
    if spec is None:
        raise DemoError(
            f"{name}: env_spec: the dataset names no environment (made without env=...), so it "
            f"cannot be checked against the game to train"
        )
    try:
        game = resolve_game(spec.id)
    except InputError as err:
        raise DemoError(f"{name}: env_spec.id: {err}") from err
    n_actions = int(dataset.action_space.n)
    shape = dataset.observation_space.shape
    if game.is_atari:
        settings = _atari_settings(spec, shape)
        env_kwargs, frame_stack = settings.to_dict(), settings.frame_stack
    else:
        env_kwargs, frame_stack = {}, 1
    return {
        "format_version": FORMAT_VERSION,
        "env_id": game.env_id,
        "env_kwargs": env_kwargs,
        "frame_stack": frame_stack,
        "n_actions": n_actions,
        "action_meanings": [f"a{i}" for i in range(n_actions)],
        "expert": {
            "name": str(metadata.get("algorithm_name") or "minari"),
            "kind": "imported",
            "source": name,
            "env_spec_id": spec.id,
            "author": sorted(metadata.get("author") or []),
            "description": metadata.get("description"),
            "minari_version": metadata.get("minari_version"),
        },
        "returns": [],
        "seed": None,
        "versions": library_versions(),
    }


def _atari_settings(spec: Any, obs_shape: tuple[int, ...]) -> AtariSettings:
    """Our Atari settings as far as a gymnasium spec records them (defaults for the rest)."""
    kwargs = spec.kwargs or {}
    wrappers = {w.name: (w.kwargs or {}) for w in spec.additional_wrappers}
    pre = wrappers.get("AtariPreprocessing", {})
    ale_skip = kwargs.get("frameskip", 1)
    ale_skip = ale_skip if isinstance(ale_skip, int) else 1  # a (min, max) range: stochastic
    base = AtariSettings()
    if obs_shape[-1:] == (1,):  # (H, W, 1) frames
        obs_shape = obs_shape[:-1]
    if len(obs_shape) == 3:  # (k, H, W) stacks
        stack = obs_shape[0]
    else:
        stack = wrappers.get("FrameStackObservation", {}).get("stack_size", base.frame_stack)
    max_frames = kwargs.get("max_num_frames_per_episode")
    if max_frames is None and spec.max_episode_steps:
        max_frames = spec.max_episode_steps * ale_skip
    return AtariSettings(
        sticky_actions=float(kwargs.get("repeat_action_probability", base.sticky_actions)),
        noop_max=int(pre.get("noop_max", base.noop_max)),
        frame_skip=int(pre.get("frame_skip", base.frame_skip if ale_skip == 1 else 1)) * ale_skip,
        screen_size=int(pre.get("screen_size", obs_shape[-1])),
        frame_stack=int(stack),
        terminal_on_life_loss=bool(
            pre.get("terminal_on_life_loss", False) or "EpisodicLifeEnv" in wrappers
        ),
        fire_reset="FireResetEnv" in wrappers,
        max_episode_frames=int(max_frames or MAX_EPISODE_FRAMES),
    )


def _read_episodes(
    name: str, dataset: Any, obs_space: gym.spaces.Box
) -> tuple[list[Trajectory], list[int | None]]:
    """All episodes as Trajectories (image stacks -> newest frame) and their reset seeds."""
    total = int(dataset.total_episodes)
    if total == 0:
        raise DemoError(f"{name}: episodes: the dataset has no episodes")
    episodes = dataset.iterate_episodes()
    trajectories = []
    for i in range(total):
        try:
            episode = next(episodes)
        except StopIteration:
            raise DemoError(
                f"{name}: episodes: the metadata counts {total} episodes, the data holds {i}"
            ) from None
        except Exception as err:
            raise DemoError(
                f"{name}: episode {i}: missing or unreadable ({type(err).__name__}: {err}); the "
                f"metadata counts {total} episodes"
            ) from err
        trajectories.append(_trajectory(f"{name}: episode {i}", episode, obs_space))
    try:  # reset seeds live in the per-episode metadata
        seeds = [m.get("seed") for m in dataset.storage.get_episode_metadata(range(total))]
    except Exception as err:
        raise DemoError(f"{name}: episode metadata: unreadable ({type(err).__name__})") from err
    return trajectories, [None if s is None else int(s) for s in seeds]


def _trajectory(where: str, episode: Any, obs_space: gym.spaces.Box) -> Trajectory:
    obs = np.asarray(episode.observations)
    actions = np.asarray(episode.actions)
    if actions.ndim == 2 and actions.shape[1] == 1:  # (T, 1) from some writers
        actions = actions[:, 0]
    terminations = np.asarray(episode.terminations, dtype=bool).reshape(-1)
    truncations = np.asarray(episode.truncations, dtype=bool).reshape(-1)
    length = len(actions)
    if length < 1 or len(terminations) != length or len(truncations) != length:
        raise DemoError(
            f"{where}: expected one termination and truncation flag per action and at least one "
            f"step, got {length} actions, {len(terminations)} / {len(truncations)} flags"
        )
    early = np.flatnonzero(terminations[:-1] | truncations[:-1])
    if early.size:
        raise DemoError(
            f"{where}: terminations/truncations: the episode ends at step {early[0]} of {length}"
        )
    if obs_space.dtype == np.uint8 and obs.ndim >= 3:
        obs = _newest_frames(where, obs)
    elif obs.dtype.kind in "fiu" and obs.ndim == 2:
        obs = obs.astype(np.float32)
    else:
        raise DemoError(
            f"{where}: observations: expected float vectors (T+1, D) or uint8 frames, got "
            f"{obs.dtype} {obs.shape}"
        )
    try:
        return Trajectory(
            obs=obs,
            actions=actions,
            rewards=np.asarray(episode.rewards, dtype=np.float64).reshape(-1),
            terminated=bool(terminations[-1]),
            truncated=bool(truncations[-1]),
        )
    except DemoError as err:
        raise DemoError(f"{where}: {str(err).removeprefix('trajectory: ')}") from err


def _newest_frames(where: str, obs: np.ndarray) -> np.ndarray:
    """(T+1, H, W) frames from frames, (T+1, H, W, 1) frames or (T+1, k, H, W) stacks.

    A stack must hold consecutive frames, oldest first; what it holds before an episode's first
    frame (zeros, or copies of the first frame) is not kept: stacks are rebuilt with zeros there.
    """
    if obs.ndim == 4 and obs.shape[-1] == 1:
        obs = obs[..., 0]
    if obs.ndim == 3:
        return np.ascontiguousarray(obs)
    if obs.ndim != 4 or obs.shape[1] > 16:
        raise DemoError(
            f"{where}: observations: {obs.shape[1:]} uint8: expected grayscale frames (H, W) or "
            f"channel-first stacks (k, H, W)"
        )
    k, newest = obs.shape[1], np.ascontiguousarray(obs[:, -1])
    for lag in range(1, k):  # the stack's frame k-1-lag is the newest frame `lag` steps ago
        if not np.array_equal(obs[lag:, k - 1 - lag], newest[:-lag]):
            raise DemoError(
                f"{where}: observations: the {k}-frame stacks do not hold consecutive frames, "
                f"oldest first"
            )
    return newest
