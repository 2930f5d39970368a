"""The expert data a training run learns from: its demo file (`--demos`, else the game's file in
expert_demos/) loaded and checked against the game, the episodes it trains on, and the expert
buffer sampled by the loop. Recording missing demos is the runner's job, never the loop's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from iq_atari import demo_library
from iq_atari.buffers import FrameBuffer, expert_buffer
from iq_atari.config import TrainConfig
from iq_atari.demo_sources import load_demo_source
from iq_atari.demos import Trajectory, check_env_match
from iq_atari.envs import AtariSettings, make_env, resolve_game
from iq_atari.errors import InputError


@dataclass(frozen=True)
class ExpertData:
    """What a run knows of its demos."""

    path: str  # the demo file, or minari:DATASET_ID, as a resume reads it again
    settings: AtariSettings | None  # the Atari settings the demos were recorded with
    obs_space: gym.Space
    n_actions: int
    episodes: list[int]  # which episodes of the file the run trains on
    expert_return: float  # their mean return
    buffer: FrameBuffer  # their transitions


def demo_episodes(available: int, num: int | None, draw: int | None) -> list[int]:
    """Which episodes of a demo file a run trains on, in file order: the first `num` (all when
    None), or with `draw` a seed, `num` drawn at random without replacement."""
    num = available if num is None else min(num, available)
    if draw is None:
        return list(range(num))
    chosen = np.random.default_rng(draw).choice(available, size=num, replace=False)
    return sorted(int(i) for i in chosen)


def demo_source(config: TrainConfig) -> str | Path:
    """--demos, else the game's demo file in expert_demos/; InputError if there is none."""
    if config.demos is not None:
        return config.demos
    found = demo_library.find_demos(config.game)
    if found is None:
        raise InputError(
            f"no demos for {config.game} in expert_demos/: pass --demos, or record them first "
            f"(python -m runners.demos --game {config.game})"
        )
    return found


def load_expert_data(config: TrainConfig) -> ExpertData:
    """The demos of a resolved `config`, validated and checked against its game, in a buffer."""
    demos = load_demo_source(demo_source(config), game=config.game)
    settings = None
    if resolve_game(config.game).is_atari:  # train and evaluate with the demos' settings
        try:
            settings = AtariSettings(**demos.meta["env_kwargs"])
        except TypeError as err:
            raise InputError(f"{demos.path}: meta.env_kwargs: {err}") from err
    if config.num_demos is not None and config.num_demos > len(demos):
        raise InputError(f"--num-demos {config.num_demos}: {demos.path} has {len(demos)} episodes")
    env = make_env(config.game, settings=settings)
    obs_space, n_actions = env.observation_space, int(env.action_space.n)
    check_env_match(demos, env)
    env.close()
    episodes = demo_episodes(len(demos), config.num_demos, config.demo_draw)
    trajectories = [demos.trajectories[i] for i in episodes]
    buffer = expert_buffer(
        trajectories, demos.frame_stack, config.subsample, np.random.default_rng(config.seed)
    )
    return ExpertData(
        path=str(demos.path),
        settings=settings,
        obs_space=obs_space,
        n_actions=n_actions,
        episodes=episodes,
        expert_return=float(np.mean([t.ret for t in trajectories])),
        buffer=buffer,
    )


@dataclass(frozen=True)
class HeldOut:
    """Held-out expert games (`--val-demos`): checked against at each evaluation, never trained
    on."""

    trajectories: list[Trajectory]
    frame_stack: int


def load_held_out(files: str | None, game: str, settings: AtariSettings | None) -> HeldOut | None:
    """The episodes of the comma-separated demo `files`, each checked against `game` and the
    training demos' Atari `settings`; None without files. A bad file is an InputError naming
    --val-demos."""
    if not files:
        return None
    trajectories, frame_stack = [], None
    for path in (p for p in files.split(",") if p):
        try:
            demos = load_demo_source(path, game=game, settings=settings)
        except InputError as err:
            raise InputError(f"--val-demos: {err}") from err
        if frame_stack not in (None, demos.frame_stack):
            raise InputError(
                f"--val-demos: {path}: frame_stack {demos.frame_stack}, the other "
                f"files {frame_stack}"
            )
        frame_stack = demos.frame_stack
        trajectories += list(demos.trajectories)
    if not trajectories:
        raise InputError(f"--val-demos: {files!r} names no demo file")
    return HeldOut(trajectories, frame_stack)
