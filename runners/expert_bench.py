"""Learning checks of the Atari experts, too long for `make test`: each game's default expert
(or one trained now with `--train`) plays greedy games in our pixel env against its bar.

Bars: Pong >= +18, Breakout >= 100, SpaceInvaders >= 500 over 10 greedy games with
sticky actions. Prints a table, writes runs/bench/experts.json, exits with status 1 when a game
misses its bar.

Examples:
  python -m runners.expert_bench                       # the shipped default experts
  python -m runners.expert_bench --games Breakout --train   # retrain with make expert's defaults
  python -m runners.expert_bench --games Pong --noise 0.1  # how much random errors cost it
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runners.common import arg, run_cli

BARS = {"Pong": 18.0, "Breakout": 100.0, "SpaceInvaders": 500.0}


@dataclass
class Config:
    games: str = arg(",".join(BARS), "comma-separated Atari games")
    expert: str | None = arg(None, "expert name or path (default: each game's default)")
    episodes: int = arg(10, "greedy games per expert", positive=True)
    seed: int = arg(1000, "seed of the first game; game i uses seed + i")
    noise: float = arg(
        0.0,
        "probability that the env executes a random action (one of the expert's own, where it "
        "lists them) instead of the expert's: what an imitator's errors would cost; bars are "
        "judged at 0 only",
    )
    train: bool = arg(False, "train each RAM expert first, with make expert's defaults (slow)")
    out: str = arg("runs/bench/experts.json", "results file")
    progress: bool = arg(True, "show progress bars")


def run(config: Config) -> list[dict]:
    import numpy as np

    from iq_atari.envs import resolve_game
    from iq_atari.errors import InputError
    from iq_atari.experts import get_expert
    from iq_atari.rollout import expert_episodes
    from iq_atari.utils import atomic_write_text

    if not 0.0 <= config.noise < 1.0:
        raise InputError(f"--noise: expected a probability in [0, 1), got {config.noise:g}")
    rows = []
    for name in [g.strip() for g in config.games.split(",") if g.strip()]:
        spec = resolve_game(name)
        if spec.name not in BARS:
            raise InputError(f"--games: no bar for {spec.name}; known: {', '.join(BARS)}")
        expert_name, train_s = config.expert, None
        if config.train:
            from runners import expert as expert_runner

            out = Path(config.out).parent / "experts" / f"ppo-ram-{spec.name}.zip"
            start = time.perf_counter()
            expert_runner.run(
                expert_runner.Config(game=spec.name, out=str(out), progress=config.progress)
            )
            expert_name, train_s = str(out), time.perf_counter() - start
        expert = get_expert(spec.env_id, expert_name)
        played = expert_episodes(
            spec.env_id,
            expert,
            config.episodes,
            config.seed,
            progress=False,
            dart=config.noise,
            dart_actions=expert.provenance.get("actions"),
        )
        scores = [e.score for e in played]
        mean = float(np.mean(scores))
        judged = config.noise == 0
        rows.append(
            {
                "game": spec.name,
                "expert": expert.name,
                "file": expert.provenance.get("file"),
                "mean": mean,
                "std": float(np.std(scores)),
                "scores": scores,
                "noise": config.noise,
                "noise_actions": expert.provenance.get("actions"),
                "bar": BARS[spec.name],
                "passed": mean >= BARS[spec.name] if judged else None,
                "train_s": train_s,
            }
        )
        print(
            f"{spec.name:14s} {expert.name:10s} {mean:8.1f} ± {np.std(scores):6.1f} "
            + (
                f"(bar {BARS[spec.name]:g}) {'ok' if rows[-1]['passed'] else 'BELOW BAR'}"
                if judged
                else f"(random action with probability {config.noise:g}; no bar)"
            ),
            flush=True,
        )
    atomic_write_text(Path(config.out), json.dumps(rows, indent=2) + "\n")
    print(f"wrote {config.out}")
    if any(r["passed"] is False for r in rows):
        raise SystemExit(1)
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
