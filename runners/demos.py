"""Record expert demonstrations to a validated demo file (expert_demos/<Game>_<expert>_<N>ep.npz).

Examples:
  python -m runners.demos --game Pong --episodes 20
  python -m runners.demos --game CartPole --expert ppo   # expert_demos/experts/ppo-CartPole-v1.zip
  python -m runners.demos --game Pong --expert tracker --episodes 20 --dart 0.1   # with recoveries
  python -m runners.demos --game Breakout --expert path/to/dqn-BreakoutNoFrameskip-v4.zip
  python -m runners.demos --game CartPole --import-iq-learn CartPole-v1_1000.pkl --trust-pickle
  python -m runners.demos --game CartPole --export-minari iq_atari/cartpole/controller-v0

`--import-iq-learn` converts an official IQ-Learn expert file (a pickled dict of per-episode
states, next_states, actions, rewards, dones, lengths) instead of recording. Pickle files can run
code when read, so they are refused unless `--trust-pickle` is given.

`--export-minari ID` writes a demo file (`--demos`, default the game's file in expert_demos/) as
the local Minari dataset ID, under $MINARI_DATASETS_PATH (default ~/.minari/datasets), instead of
recording; Atari episodes keep single 84x84 frames (see iq_atari/minari_export.py). Train from one
with `runners.train --demos minari:ID`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runners.common import arg, run_cli


@dataclass
class Config:
    game: str = arg("Pong", "game: short Atari name (Pong), gymnasium id (CartPole-v1), any case")
    expert: str | None = arg(
        None,
        "expert name (e.g. planner, controller, random) or path to an SB3/RL-Zoo .zip; "
        "default: the game's default expert",
    )
    episodes: int = arg(10, "episodes to record", positive=True)
    seed: int = arg(0, "seed of the first episode; episode i uses seed + i")
    out: str | None = arg(None, "output .npz (default expert_demos/<Game>_<expert>_<N>ep.npz)")
    min_return: float | None = arg(None, "keep only episodes with a return at or above this")
    dart: float = arg(
        0.0,
        "DART noise: per step, the probability that the env executes a random action instead of "
        "the expert's (the demo keeps the expert's); shows the expert recovering from mistakes",
    )
    dart_actions: Literal["all", "expert"] = arg(
        "all",
        "the actions DART's random action is drawn from: all of the game's, or only those the "
        "expert itself takes (the mistakes an imitator of it can make)",
    )
    life_delay: int = arg(
        0,
        "Atari: at the start and after each lost life the env executes NOOP for a random 0..N "
        "steps (the demo keeps the expert's action); shows the expert restarting play",
    )
    import_iq_learn: str | None = arg(
        None, "convert this official IQ-Learn expert file (.pkl / .npy) instead of recording"
    )
    trust_pickle: bool = arg(False, "allow reading pickle-based files (they can run code)")
    export_minari: str | None = arg(
        None, "write the demo file as the local Minari dataset with this id (namespace/name-vN)"
    )
    demos: str | None = arg(
        None, "demo file for --export-minari (default: the game's file in expert_demos/)"
    )
    minari_format: Literal["hdf5", "parquet", "arrow"] = arg(
        "hdf5", "Minari storage for --export-minari (parquet: compressed, slower; needs pyarrow)"
    )
    progress: bool = arg(True, "show a progress bar")


def run(config: Config) -> Path:
    from iq_atari.rollout import record_demos

    if config.export_minari is not None:
        return _export_minari(config)
    if config.import_iq_learn is not None:
        from iq_atari.iq_learn_files import import_iq_learn

        return import_iq_learn(
            config.import_iq_learn,
            config.game,
            out=Path(config.out) if config.out else None,
            trust_pickle=config.trust_pickle,
            min_return=config.min_return,
        )
    return record_demos(
        config.game,
        config.expert,
        config.episodes,
        config.seed,
        out=Path(config.out) if config.out else None,
        min_return=config.min_return,
        progress=config.progress,
        dart=config.dart,
        life_delay=config.life_delay,
        dart_actions=config.dart_actions,
    )


def _export_minari(config: Config) -> Path:
    from iq_atari.demo_library import find_demos
    from iq_atari.errors import InputError
    from iq_atari.minari_export import export_minari

    demos = Path(config.demos) if config.demos else find_demos(config.game)
    if demos is None:
        raise InputError(
            f"--export-minari: no demo file for {config.game} in expert_demos/; pass --demos FILE "
            f"or record one first (make demos GAME={config.game})"
        )
    return export_minari(config.export_minari, demos, config.minari_format)


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
