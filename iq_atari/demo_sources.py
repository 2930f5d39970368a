"""Where training demos come from: a demo file (.npz) or a local Minari dataset ("minari:ID").

Runners pass the user's `--demos` here; both kinds are validated, and checked against the
game, env or settings given, the same way.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

from iq_atari.demos import DemoSet, check_match, load_demos
from iq_atari.envs import AtariSettings
from iq_atari.minari_import import MINARI_PREFIX, load_minari_demos


def load_demo_source(
    source: str | Path,
    env: gym.Env | None = None,
    game: str | None = None,
    settings: AtariSettings | None = None,
) -> DemoSet:
    """`load_demos` for a file; for "minari:<DATASET_ID>", the local Minari dataset
    (`minari_import.load_minari_demos`), with the same match checks."""
    if str(source).startswith(MINARI_PREFIX):
        demos = load_minari_demos(str(source).removeprefix(MINARI_PREFIX))
        check_match(demos, env, game, settings)
        return demos
    return load_demos(source, env=env, game=game, settings=settings)
