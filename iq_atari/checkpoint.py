"""Training checkpoints (`checkpoints/{last,best}.pt`): written atomically, and checked when read.

A checkpoint is a dict saved with `torch.save`: the format number, the run's config, the learner's
state, the loop counters (`LoopState`), RNG states (`run_state`, `resume_loop`), and what the
networks were built for (observation shape and dtype, number of actions, env settings:
`built_for`). `read_checkpoint` refuses, with one InputError line that names the file, anything
else: junk, a truncated file, another program's dict, a newer format. `restore` loads a learner's
state and says which file did not fit when it does not.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from iq_atari.envs import AtariSettings
from iq_atari.errors import InputError
from iq_atari.utils import atomic_write_bytes

CHECKPOINT_FORMAT = 1
# key: (type, what it holds), checked before any of it is used
FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "config": (dict, "the run's settings"),
    "learner": (dict, "the learner's state"),
    "loop": (dict, "the loop counters"),
    "obs_shape": (list, "the observation shape"),
    "obs_dtype": (str, "the observation dtype"),
    "n_actions": (int, "the number of actions"),
}
# What torch.load raises on a file that is not a (whole) torch save.
UNREADABLE = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    KeyError,
    AttributeError,
    TypeError,
    IndexError,
    zipfile.BadZipFile,
    UnicodeDecodeError,
    OSError,
)


@dataclass
class LoopState:
    """The training loop's counters, saved in checkpoints. A field added here needs a default:
    checkpoints written before it still resume."""

    updates: int = 0
    env_steps: int = 0
    best_return: float = -math.inf
    best_update: int = 0
    wall_time_s: float = 0.0
    last_eval: dict | None = None


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write `state`, stamped with CHECKPOINT_FORMAT, to `path` atomically; a failed write (full
    disk) raises OSError naming `path` and leaves an existing file there as it was."""
    buffer = io.BytesIO()  # serialised in memory first: torch's own file writer reports a
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)  # full disk as an opaque
    # RuntimeError without the errno
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(
    path: str | Path, fields: dict[str, tuple[type | tuple[type, ...], str]] = FIELDS
) -> dict[str, Any]:
    """The checkpoint at `path`, checked to be a whole iq_atari checkpoint of this format with
    `fields` (a training run's by default) of their types."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise InputError(
            f"{path}: not a readable checkpoint, damaged or not a torch file "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from err
    if not isinstance(state, dict) or "format" not in state:
        raise InputError(f"{path}: not an iq_atari checkpoint (no format number in it)")
    version = state["format"]
    if not isinstance(version, int) or version < 1:
        raise InputError(f"{path}: format {version!r}: not an iq_atari checkpoint format")
    if version > CHECKPOINT_FORMAT:
        raise InputError(
            f"{path}: checkpoint format {version} is newer than this iq_atari reads "
            f"({CHECKPOINT_FORMAT}); update iq_atari to use it"
        )
    for key, (kind, what) in fields.items():
        if not isinstance(state.get(key), kind):
            found = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise InputError(f"{path}: {key} ({what}): {found}, expected a {kind.__name__}")
    if "obs_shape" in fields and not all(isinstance(n, int) and n > 0 for n in state["obs_shape"]):
        raise InputError(f"{path}: obs_shape: {state['obs_shape']} is not a shape")
    return state


def built_for(
    obs_space: gym.Space, n_actions: int, demos: str, settings: AtariSettings | None
) -> dict[str, Any]:
    """The checkpoint fields that say what a learner was built and trained for. The env settings
    (None for classic games) let a checkpoint alone replay its agent in the same game."""
    return {
        "obs_shape": list(obs_space.shape),
        "obs_dtype": str(obs_space.dtype),
        "n_actions": n_actions,
        "demos": demos,
        "env_kwargs": settings.to_dict() if settings is not None else None,
    }


def run_state(
    config: Any, learner_state: dict, loop: LoopState, rng: np.random.Generator
) -> dict[str, Any]:
    """The checkpoint fields of a run's progress: its config (a dataclass), the learner's state,
    the loop counters, and numpy's and torch's RNG states, so that a resumed run draws what an
    unbroken one would."""
    return {
        "config": dataclasses.asdict(config),
        "learner": learner_state,
        "loop": dataclasses.asdict(loop),
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }


def resume_loop(state: dict[str, Any], path: str | Path, rng: np.random.Generator) -> LoopState:
    """The loop counters the checkpoint `state` (read from `path`) saved, with `rng` and torch's
    generator set back to its RNG states."""
    loop = restore(path, "its loop counters", lambda: LoopState(**state["loop"]))

    def set_rng() -> None:
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    restore(path, "its RNG state", set_rng)
    return loop


def check_built_for(
    state: dict[str, Any], path: str | Path, obs_space: gym.Space, n_actions: int, source: str
) -> None:
    """InputError unless the checkpoint `state` (read from `path`) was trained on the observation
    shape and number of actions that `source` (the game and its demos) gives."""
    if tuple(state["obs_shape"]) != obs_space.shape or state["n_actions"] != n_actions:
        raise InputError(
            f"{path}: trained on observations {tuple(state['obs_shape'])} with "
            f"{state['n_actions']} actions; {source} gives {obs_space.shape} and {n_actions}"
        )


def restore(path: str | Path, what: str, load: Callable[[], Any]) -> Any:
    """Run `load()` (a `load_state_dict` of `what` from the checkpoint at `path`); a state that
    does not fit (another network, algorithm or size) raises one InputError naming the file."""
    try:
        return load()
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else _first_line(err)
        raise InputError(f"{path}: {what} does not fit its network ({detail})") from err


def _first_line(err: BaseException, limit: int = 200) -> str:
    """The error's text on one line, cut to `limit` characters (torch's run over many lines)."""
    text = " ".join(str(err).split())
    marker = "WeightsUnpickler error:"  # torch's weights-only loader: the cause sits after it
    if marker in text:
        text = text.split(marker, 1)[1].split(" Check the documentation")[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
