"""Train IQ-Learn (or behavioural cloning) from expert demos, offline or online.

Shows a progress bar with the latest evaluation score, evaluates greedily every --eval-interval
updates on the raw game score, keeps checkpoints/{last,best}.pt, and writes config.json,
metrics.csv, TensorBoard events, curve.png and eval.json to the run directory
(runs/<game>/<algo>-<seed>-<time>/ unless --run-dir). Without --demos it uses the game's demo file
in expert_demos/, recording one with the default expert first if there is none.
Options left unset take the preset of the game's family (Atari or classic control).
A resumed run keeps its settings: only --steps, --device, --threads and --progress may change,
and any other flag given with --resume must match the run (else one error line). One process at
a time trains in a run directory; a second one is refused while the first runs.

Examples:
  python -m runners.train --game CartPole
  python -m runners.train --game Pong --steps 50000
  python -m runners.train --game CartPole --mode online --num-demos 1
  python -m runners.train --run-dir runs/Pong/iq-0-20250101-120000 --resume
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection

from iq_atari.config import TrainConfig, resolve_config
from iq_atari.train import train
from runners.common import find_or_record_demos


def run(config: TrainConfig, given: Collection[str] = ()) -> dict:
    """Record demos if the game has none (a new run), then train; `given`: the flags set on the
    command line (with --resume, any that conflicts with the run is an error)."""
    if not config.resume and config.demos is None:
        demos = find_or_record_demos(resolve_config(config))
        config = dataclasses.replace(config, demos=str(demos))
    record = train(config, given)
    print(
        f"{record['algo']} {record['mode']} on {record['game']}: mean return "
        f"{record['mean_return']:.1f} +- {record['std_return']:.1f} over {record['episodes']} "
        f"episodes after {record['updates']} updates ({record['wall_time_s']:.0f} s); "
        f"best {record['best_mean_return']:.1f}; "
        f"the demos' mean {record['expert_mean_return']:.1f}\n"
        f"run directory: {record['run_dir']}"
    )
    return record


def main(argv: list[str] | None = None) -> int:
    from runners.common import given_fields, run_cli

    return run_cli(
        TrainConfig, lambda config: run(config, given_fields(TrainConfig, argv)), argv, __doc__
    )


if __name__ == "__main__":
    sys.exit(main())
