"""Train an expert with stable-baselines3 (RL-Zoo hyperparameters) and save an RL-Zoo .zip.

Writes <out>.zip and <out>.json (its score measured over --eval-episodes in our env). By default
the file is expert_demos/experts/<algo>-<env id>.zip, which makes `make demos GAME=<game>
EXPERT=<algo>` use it; any path works as EXPERT=<path>. Needs the `zoo` extra.

Examples:
  python -m runners.expert --game CartPole            # PPO, RL-Zoo settings, ~15 min
  python -m runners.expert --game CartPole --algo dqn
  python -m runners.expert --game Pong --algo ppo --steps 10000000
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from runners.common import arg, run_cli


@dataclass
class Config:
    game: str = arg("CartPole", "game: short Atari name, gymnasium id, any case")
    algo: str = arg(
        "ppo",
        "stable-baselines3 algorithm (ppo: our one DQN run on CartPole with RL-Zoo's settings "
        "scored 21.8)",
        choices=["dqn", "ppo"],
    )
    steps: int | None = arg(
        None, "environment steps (default: RL-Zoo's n_timesteps)", positive=True
    )
    seed: int = arg(0, "training seed; evaluation uses seeds 1000+seed ...")
    out: str | None = arg(None, "output .zip (default expert_demos/experts/<algo>-<env id>.zip)")
    eval_episodes: int = arg(10, "episodes to measure the trained expert", positive=True)
    progress: bool = arg(True, "show a progress bar")


def run(config: Config) -> dict:
    from iq_atari.demos import DEMO_DIR
    from iq_atari.envs import resolve_game
    from iq_atari.experts import shipped_expert_name
    from iq_atari.experts.sb3_train import train_expert

    spec = resolve_game(config.game)
    out = Path(config.out or DEMO_DIR / "experts" / shipped_expert_name(spec.env_id, config.algo))
    if out.suffix != ".zip":
        out = out.with_suffix(".zip")
    score = train_expert(
        config.game,
        config.algo,
        config.steps,
        config.seed,
        out,
        config.eval_episodes,
        config.progress,
    )
    print(json.dumps({k: v for k, v in score.items() if k != "returns"}, indent=2))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return score


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
