"""Train an expert with stable-baselines3 and save it as a .zip with a .json of its score.

Atari games (`--obs ram`, the default): PPO on object features read from the emulator RAM
after every agent step, in our env's exact dynamics, on every core; the expert then plays our
pixel env by reading its RAM, so `make demos` records pixel demos from it. `--obs pixels`: SB3
CnnPolicy with RL-Zoo's Atari settings (a GPU job: millions of steps). Classic control: RL-Zoo's
hyperparameters. The file is expert_demos/experts/<algo>-<env id>.zip (`ppo-ram-ALE-Pong-v5.zip`
for the RAM expert), which makes it the game's default expert; any path works as EXPERT=<path>.
Needs the `zoo` extra.

Examples:
  python -m runners.expert --game Pong                 # RAM-feature PPO, the shipped default
  python -m runners.expert --game Pong --resume        # continue from its .ckpt.zip
  python -m runners.expert --game CartPole             # PPO, RL-Zoo settings
  python -m runners.expert --game Pong --obs pixels --steps 10000000
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runners.common import arg, run_cli

# Agent steps of a RAM expert when --steps is not given (measured in docs/RESULTS.md, Experts).
RAM_STEPS = {"ALE/Pong-v5": 12_000_000, "ALE/Breakout-v5": 1_500_000}
RAM_STEPS_OTHER = 6_000_000


@dataclass
class Config:
    game: str = arg("CartPole", "game: short Atari name, gymnasium id, any case")
    algo: str = arg("ppo", "stable-baselines3 algorithm", choices=["dqn", "ppo"])
    obs: Literal["ram", "pixels"] = arg(
        "ram", "Atari only: what the expert observes (ram: object features; pixels: CnnPolicy)"
    )
    steps: int | None = arg(
        None,
        "agent steps (default: RAM experts 12M for Pong, 1.5M for Breakout, 6M otherwise; RL-Zoo's "
        "n_timesteps for the others)",
        positive=True,
    )
    seed: int = arg(0, "training seed; evaluation uses seeds 1000+seed ...")
    out: str | None = arg(None, "output .zip (default expert_demos/experts/<algo>-<env id>.zip)")
    eval_episodes: int = arg(10, "greedy games to measure the trained expert", positive=True)
    resume: bool = arg(False, "RAM experts: continue from <out>.ckpt.zip")
    restart_lr: float | None = arg(
        None,
        "RAM experts, with --resume: the learning rate restarts here and decays linearly to 0 over "
        "the steps left (default: the run's own schedule goes on)",
        positive=True,
    )
    action_noise: float = arg(
        0.0,
        "RAM experts: probability that the env executes a random action instead of the policy's "
        "while training (evaluation stays greedy and clean)",
    )
    log_dir: str | None = arg(None, "RAM experts: TensorBoard directory (default runs/experts)")
    progress: bool = arg(True, "show a progress bar")


def run(config: Config) -> dict:
    from iq_atari.demo_library import DEMO_DIR
    from iq_atari.envs import resolve_game
    from iq_atari.experts import shipped_expert_name

    spec = resolve_game(config.game)
    ram = spec.is_atari and config.obs == "ram"
    algo = "ppo-ram" if ram else config.algo
    if ram and config.algo != "ppo":
        from iq_atari.errors import InputError

        raise InputError(f"--algo {config.algo}: RAM experts train with ppo; use --obs pixels")
    out = Path(config.out or DEMO_DIR / "experts" / shipped_expert_name(spec.env_id, algo))
    if out.suffix != ".zip":
        out = out.with_suffix(".zip")
    if ram:
        score = _train_ram(config, spec.env_id, out)
    else:
        from iq_atari.experts.sb3_train import train_expert

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


def _train_ram(config: Config, env_id: str, out: Path) -> dict:
    import numpy as np

    from iq_atari.experts.ram import feature_kind
    from iq_atari.experts.ram_expert import (
        evaluate_ram_policy,
        ram_ppo_config,
        train_ram_expert,
    )
    from iq_atari.utils import atomic_write_text, cpu_facts

    steps = config.steps or RAM_STEPS.get(env_id, RAM_STEPS_OTHER)
    ppo = dataclasses.replace(ram_ppo_config(config.game), action_noise=config.action_noise)
    model, seconds = train_ram_expert(
        config.game,
        steps,
        config.seed,
        out,
        config=ppo,
        resume=config.resume,
        progress=config.progress,
        log_dir=Path(config.log_dir or "runs/experts"),
        restart_lr=config.restart_lr,
    )
    eval_seed = 1000 + config.seed
    returns = evaluate_ram_policy(
        model, config.game, config.eval_episodes, eval_seed, progress=config.progress
    )
    score = {
        "game": env_id,
        "algo": "ppo",
        "observes": f"RAM features ({feature_kind(config.game)})",
        "steps": int(model.num_timesteps),
        "seed": config.seed,
        "train_time_s": round(seconds, 1),
        "resumed": config.resume,
        **({"restart_lr": config.restart_lr} if config.restart_lr else {}),
        "eval_seeds": f"{eval_seed}..{eval_seed + config.eval_episodes - 1}",
        "eval": "greedy, our env's dynamics (sticky 0.25, noop 30, skip 4, full game)",
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "hyperparams": {k: getattr(ppo, k) for k in ppo.__dataclass_fields__},
        "machine": "{cpu_model}, {cpu_count} cores".format(**cpu_facts()),
        "command": "python -m runners.expert " + shlex.join(sys.argv[1:]),
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(score, indent=2) + "\n")
    return score


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
