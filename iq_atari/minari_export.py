"""Minari datasets out: one of our demo files written as a local Minari dataset.

`export_minari` writes a dataset that `minari.load_dataset(ID)` reads back with nothing from us
installed. Per episode: observations (T+1), actions, raw rewards, terminations and truncations
(kept apart: only the last step can set either), and the episode's reset seed; our whole metadata
record (env settings, frame stack, expert provenance, versions) sits under the dataset metadata
key "iq_atari" (`minari_import.META_KEY`), which `minari_import.load_minari_demos` reads back.

Atari observations are stored as single 84x84 uint8 grayscale frames, the newest frame of each
step, not as (4, 84, 84) stacks: 4x smaller, what our demo files keep, and the observation of
the env `MinariDataset.recover_environment()` gives back (ALE with `AtariPreprocessing`). Stacks
are rebuilt on load, oldest frame first and zero frames before the episode's first
(`envs.rebuild_stacks`). Frames are stored losslessly (Minari's default JPEG for images is off).

Writing needs only `minari[hdf5]`; the `create` extra (jax) is needed by `DataCollector` alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from iq_atari.demos import load_demos
from iq_atari.envs import AtariSettings, make_env, resolve_game
from iq_atari.errors import DemoError, InputError
from iq_atari.minari_import import META_KEY, check_dataset_id, require_minari

DataFormat = Literal["hdf5", "parquet", "arrow"]
DATA_FORMATS: tuple[str, ...] = typing.get_args(DataFormat)


def export_minari(
    dataset_id: str, demos_path: str | Path, data_format: DataFormat = "hdf5", say=print
) -> Path:
    """Write the demo file `demos_path` as the local Minari dataset `dataset_id`; returns its dir.

    `data_format` is Minari's storage: "hdf5" (its default; uncompressed, 84x84 bytes per Atari
    frame) or "parquet" / "arrow" (need pyarrow; parquet is compressed: far smaller on Atari
    frames, slower to write and read; docs/RESULTS.md has both measured). The dataset is
    assembled in a hidden folder beside the others and moved into place whole, so a failed or
    interrupted export leaves no half-written dataset under its id.
    """
    if data_format not in DATA_FORMATS:
        raise InputError(f"--minari-format: {data_format!r}; expected one of {DATA_FORMATS}")
    what = f"--export-minari {dataset_id}"
    minari = require_minari(what)
    check_dataset_id(dataset_id, what)
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    demos = load_demos(demos_path)
    meta = demos.meta
    root, final = Path(get_dataset_path()), Path(get_dataset_path(dataset_id))
    if final.exists():
        raise InputError(
            f"{what}: a local Minari dataset with this id exists ({final}); choose another id or "
            f"version, or delete it first (minari delete {dataset_id})"
        )
    is_atari = resolve_game(meta["env_id"]).is_atari
    frames_env = _frames_env(str(demos_path), meta, is_atari)
    seeds = meta.get("episode_seeds")
    if not isinstance(seeds, list) or len(seeds) != len(demos):
        seeds = [None] * len(demos)
    buffers = [
        EpisodeBuffer(
            seed=None if seed is None else int(seed),
            observations=t.obs,
            actions=t.actions,
            rewards=t.rewards,
            terminations=_last_step_flag(len(t), t.terminated),
            truncations=_last_step_flag(len(t), t.truncated),
        )
        for t, seed in zip(demos.trajectories, seeds, strict=True)
    ]
    record = {
        "meta": meta,
        "source_file": Path(demos_path).name,
        "observations": "single frames (T+1, H, W) uint8" if is_atari else "vectors (T+1, D)",
        "frame_stack": demos.frame_stack,
        "stack_padding": "zero",
    }
    expert = meta["expert"] if isinstance(meta["expert"], dict) else {"name": str(meta["expert"])}
    description = (
        f"{len(demos)} episodes of {meta['env_id']} by the expert {expert.get('name', '?')} "
        f"(mean raw return {float(demos.returns.mean()):.2f}), exported by iq_atari from "
        f"{Path(demos_path).name}."
    )
    if is_atari:
        description += (
            f" Observations are single 84x84 grayscale frames (uint8, lossless); the agent sees "
            f"stacks of the last {demos.frame_stack} frames, oldest first, zero frames before an "
            f"episode's first. Env settings: metadata '{META_KEY}'."
        )
    tmp_root = Path(tempfile.mkdtemp(prefix=".iq_atari-export-", dir=root))
    try:
        with _datasets_root(tmp_root), warnings.catch_warnings():
            # Minari warns about every optional field left empty (author, email, permalink).
            warnings.simplefilter("ignore", UserWarning)
            dataset = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=frames_env,
                observation_space=frames_env.observation_space,
                action_space=gym.spaces.Discrete(int(meta["n_actions"])),
                algorithm_name=str(expert.get("name", "expert")),
                description=description,
                requirements=["gymnasium>=1.0", "ale-py>=0.11"] if is_atari else ["gymnasium>=1.0"],
                data_format=data_format,
                jpeg_encoding=False,
            )
            dataset.storage.update_metadata({META_KEY: record})
        final.parent.mkdir(parents=True, exist_ok=True)
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None:  # Minari's namespace record, unless the namespace exists
            made = tmp_root / namespace / "namespace_metadata.json"
            if made.is_file() and not (root / namespace / "namespace_metadata.json").exists():
                shutil.copy(made, root / namespace / "namespace_metadata.json")
        os.rename(tmp_root / dataset_id, final)
    except ImportError as err:  # the storage's package (h5py, pyarrow) is missing
        raise InputError(f"{what}: --minari-format {data_format}: {err}") from err
    finally:
        frames_env.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
    say(f"exported {len(demos)} episodes ({int(demos.lengths.sum())} steps) -> Minari {dataset_id}")
    return final


@contextlib.contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    """Point Minari (which reads MINARI_DATASETS_PATH on every call) at `root` for a while."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _last_step_flag(length: int, value: bool) -> np.ndarray:
    flags = np.zeros(length, dtype=bool)
    flags[-1] = value
    return flags


def _frames_env(name: str, meta: dict[str, Any], is_atari: bool) -> gym.Env:
    """The env whose observations the dataset stores, for its spec and observation space: for
    Atari our env below the frame stack (single frames); for classic games the plain gym env."""
    if not is_atari:
        return gym.make(meta["env_id"])
    try:
        settings = AtariSettings(**meta["env_kwargs"])
    except TypeError as err:
        raise DemoError(f"{name}: meta.env_kwargs: not settings of our Atari env ({err})") from err
    env = make_env(meta["env_id"], settings=settings)
    while not isinstance(env, gym.wrappers.FrameStackObservation):
        env = env.env
    frames_env = env.env
    spec = frames_env.spec
    if spec is not None:
        # Our life-loss / fire-reset wrappers take no arguments and cannot be re-made from a
        # spec; keep the recoverable ones (their settings are in the "iq_atari" record).
        wrappers = tuple(w for w in spec.additional_wrappers if w.kwargs is not None)
        frames_env = _WithSpec(frames_env, dataclasses.replace(spec, additional_wrappers=wrappers))
    return frames_env


class _WithSpec(gym.Wrapper):
    """Reports a given spec (Minari records `env.spec`)."""

    def __init__(self, env: gym.Env, spec: gym.envs.registration.EnvSpec):
        super().__init__(env)
        self._fixed_spec = spec

    @property
    def spec(self) -> gym.envs.registration.EnvSpec:
        return self._fixed_spec
