"""A run directory (`runs/<game>/<algo>-<seed>-<time>/` unless --run-dir): where a new run goes,
its config.json, and which settings a resumed run keeps from its checkpoint and which it may
change."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from iq_atari.checkpoint import read_checkpoint
from iq_atari.config import TrainConfig, parse_hidden, resolve_config
from iq_atari.envs import resolve_game
from iq_atari.errors import InputError
from iq_atari.learners import saved_config
from iq_atari.utils import atomic_write_text

# What a resumed run may change; every other flag given with --resume must match the run.
RESUME_CHANGEABLE = ("steps", "device", "threads", "progress", "run_dir", "resume")


def prepare_run(
    config: TrainConfig, given: Collection[str] = ()
) -> tuple[TrainConfig, Path | None]:
    """The resolved config of a new run, or of the run `config.resume` continues (see
    `resumed_config`), with its run directory set; and the checkpoint to continue from."""
    last = last_checkpoint(config) if config.resume else None
    if last is not None:
        config = resumed_config(config, read_checkpoint(last), last, given)
    config = resolve_config(config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    return dataclasses.replace(config, run_dir=str(run_dir)), last


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """run_dir/config.json: every field of the run's resolved config."""
    atomic_write_text(run_dir / "config.json", json.dumps(dataclasses.asdict(config), indent=2))


def default_run_dir(config: TrainConfig) -> Path:
    """runs_root/<game>/<algo>-<seed>-<time>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.runs_root) / config.game / f"{config.algo}-{config.seed}-{stamp}"


def last_checkpoint(config: TrainConfig) -> Path:
    """checkpoints/last.pt of the run `config.resume` continues; InputError if there is none."""
    if config.run_dir is None:
        raise InputError("--resume needs --run-dir (the run to continue)")
    last = Path(config.run_dir) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise InputError(f"--resume: {last}: no such checkpoint (nothing to resume)")
    return last


def resumed_config(
    config: TrainConfig, saved: dict, path: Path, given: Collection[str] = ()
) -> TrainConfig:
    """The saved run's config with only the RESUME_CHANGEABLE fields of `config` taken over;
    a `given` field that conflicts with the run raises one InputError listing them all."""
    previous = saved_config(saved, path)
    conflicts = []
    for name in sorted(set(given) - set(RESUME_CHANGEABLE)):
        if not _same_setting(name, getattr(config, name), getattr(previous, name)):
            flag = "--" + name.replace("_", "-")
            conflicts.append(
                f"{flag} {getattr(config, name)} (the run has {getattr(previous, name)})"
            )
    if conflicts:
        raise InputError(
            f"--resume: {'; '.join(conflicts)}: the run in {config.run_dir} keeps its settings "
            f"(only --steps, --device, --threads and --progress may change); drop the flag, or "
            f"train a new run in another --run-dir"
        )
    keep = {k: v for k, v in dataclasses.asdict(previous).items() if k not in RESUME_CHANGEABLE}
    threads = config.threads if "threads" in given else previous.threads
    return dataclasses.replace(
        config, **keep, threads=threads, steps=config.steps or previous.steps
    )


def _same_setting(name: str, mine: Any, theirs: Any) -> bool:
    """Whether a flag's value and a saved run's value mean the same setting."""
    if mine is None or theirs is None:
        return mine is theirs
    if name == "game":
        return resolve_game(str(mine)).env_id == resolve_game(str(theirs)).env_id
    if name == "demos":
        return Path(mine).resolve() == Path(theirs).resolve()
    if name == "hidden":
        return parse_hidden(str(mine)) == parse_hidden(str(theirs))
    return mine == theirs
