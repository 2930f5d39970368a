"""Score a trained agent: whole games of fixed seeds, greedy (or sampled), weights as saved.

Plays `--episodes` games from `--seed` (game i uses seed + i) in up to `--max-envs` envs at once,
prints the mean, spread and, for an Atari game, the score normalised against the expert of the
demos it learned from, (x - random) / (expert - random). `--out` writes the returns as JSON. Pick
seeds the checkpoint was not chosen on: training evaluates on seeds from 10,000 + its --seed.

Examples:
  python -m runners.evaluate --checkpoint expert_demos/agents/iq-Pong.pt --seed 777000
  python -m runners.evaluate --run runs/Pong/iq-off-ppo-ram-s0 --episodes 20 --out score.json
  python -m runners.evaluate --checkpoint runs/Pong/.../checkpoints/last.pt --sample
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from runners.common import (
    arg,
    check_json_out,
    demos_record,
    load_trained,
    normalised_record,
    run_cli,
    score_agent,
    write_json_out,
)


@dataclass
class Config:
    run: str | None = arg(None, "run directory (scores its checkpoints/best.pt)")
    checkpoint: str | None = arg(None, "checkpoint or shipped agent file (instead of --run)")
    episodes: int = arg(10, "games to play", positive=True)
    seed: int = arg(777000, "seed of the first game; game i uses seed + i")
    sample: bool = arg(False, "sample actions from softmax(Q / alpha) instead of greedy argmax")
    max_envs: int = arg(8, "games played at once", positive=True)
    out: str | None = arg(None, "write the returns and their summary to this .json")
    progress: bool = arg(True, "show a progress bar")


def run(config: Config) -> dict:
    import numpy as np

    from iq_atari.envs import resolve_game
    from iq_atari.shipped import repo_relative

    check_json_out(config.out)
    source, state, learner, train_config, settings = load_trained(config.run, config.checkpoint)
    spec = resolve_game(train_config.game)
    returns = score_agent(
        learner,
        spec.env_id,
        config.episodes,
        config.seed,
        settings=settings,
        greedy=not config.sample,
        max_envs=config.max_envs,
        progress=config.progress,
        label=str(source),
    )
    mean, std = float(np.mean(returns)), float(np.std(returns))
    result = {
        "checkpoint": repo_relative(str(source)),
        "game": spec.name,
        "algo": train_config.algo,
        "updates": state.get("loop", {}).get("updates"),
        "policy": "sampled" if config.sample else "greedy",
        "seeds": [config.seed + i for i in range(config.episodes)],
        "returns": returns,
        "mean": mean,
        "std": std,
        "sem": std / float(np.sqrt(len(returns))),
        "demos": demos_record(state, train_config),
        "command": "python -m runners.evaluate " + shlex.join(sys.argv[1:]),
    }
    expert_score = result["demos"].get("expert_score")
    result.update(normalised_record(spec.name, mean, expert_score))
    line = f"{spec.name}: {mean:+.2f} ± {std:.2f} (SE {result['sem']:.2f})"
    if "normalised" in result:
        line += f", {100 * result['normalised']:.1f}% of the expert's {expert_score:+.2f}"
    print(line)
    write_json_out(config.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
