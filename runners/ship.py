"""Ship a trained agent: score it on greedy games of fixed seeds and write it, with a .json of its
numbers, to expert_demos/agents/<algo>-<Game>.pt (what loading needs, nothing more).

The agent plays `--episodes` greedy games from `--seed` twice, with fp32 weights and with fp16
weights. The fp16 file is shipped when the score holds: its mean is within one standard error of
the fp32 mean, or the two pick the same greedy action on at least 99.9% of up to 4,096 frames of
the agent's demos. The second test is paired and has no game noise: in a game like Pong one
changed action changes the rest of the game, so ten games of two nearly identical policies can
differ by more than a standard error. Pick seeds the checkpoint was not chosen on.

Examples:
  python -m runners.ship --run runs/Pong/iq-off-ppo-ram-s0 --seed 888000
  python -m runners.ship --checkpoint runs/Pong/iq-off-ppo-ram-s0/checkpoints/last.pt
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from runners.common import (
    arg,
    demos_record,
    load_trained,
    normalised_record,
    run_cli,
    score_agent,
)


@dataclass
class Config:
    run: str | None = arg(None, "run directory (ships its checkpoints/best.pt)")
    checkpoint: str | None = arg(None, "checkpoint file to ship (instead of --run)")
    episodes: int = arg(10, "greedy games to score it on", positive=True)
    seed: int = arg(888000, "seed of the first scoring game; game i uses seed + i")
    out: str | None = arg(None, "output .pt (default: expert_demos/agents/<algo>-<Game>.pt)")
    half: str = arg(
        "auto", "fp16 weights: auto (if the score holds), yes, no", choices=("auto", "yes", "no")
    )
    max_envs: int = arg(8, "games played at once", positive=True)
    progress: bool = arg(True, "show progress bars")


def run(config: Config) -> Path:
    import numpy as np

    from iq_atari.checkpoint import save_checkpoint
    from iq_atari.envs import resolve_game
    from iq_atari.errors import InputError
    from iq_atari.learners import load_learner
    from iq_atari.shipped import agent_file, repo_relative, slim_agent
    from iq_atari.utils import atomic_write_text

    source, state, learner, train_config, settings = load_trained(config.run, config.checkpoint)
    spec = resolve_game(train_config.game)
    out = Path(config.out) if config.out else agent_file(spec.name, train_config.algo)
    if out.suffix != ".pt":
        raise InputError(f"--out: expected a .pt file name, got {str(out)!r}")

    def score(agent, label: str) -> list[float]:
        return score_agent(
            agent,
            spec.env_id,
            config.episodes,
            config.seed,
            settings=settings,
            max_envs=config.max_envs,
            progress=config.progress,
            label=label,
        )

    fp32 = score(learner, "fp32")
    out.parent.mkdir(parents=True, exist_ok=True)
    fp16 = None
    if config.half != "no":
        save_checkpoint(slim_agent(state, learner, half=True), out)
        half_learner = load_learner(out)[0]
        fp16 = score(half_learner, "fp16")  # the shipped file itself plays
    sem = float(np.std(fp32) / np.sqrt(len(fp32)))
    agreement = None
    if fp16 is not None:
        agreement = greedy_agreement(learner, half_learner, state.get("demos"))
        print(f"fp16 vs fp32 greedy actions on demo frames: {_percent(agreement)}")
    holds = fp16 is not None and (
        float(np.mean(fp16)) >= float(np.mean(fp32)) - sem
        or (agreement is not None and agreement >= HALF_AGREEMENT)
    )
    half = config.half == "yes" or (config.half == "auto" and holds)
    if not half:
        save_checkpoint(slim_agent(state, learner, half=False), out)
    returns = fp16 if half else fp32
    assert returns is not None
    info = _info(state, train_config, config, spec.name, source, out, half, returns, fp32, fp16)
    info["fp16_action_agreement"] = agreement
    info.update(normalised_record(spec.name, info["mean"], info["demos"].get("expert_score")))
    info["command"] = "python -m runners.ship " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    info["source_checkpoint"] = repo_relative(str(source))
    json_path = out.with_suffix(".json")
    atomic_write_text(json_path, json.dumps(info, indent=2) + "\n")
    print(
        f"wrote {out} ({out.stat().st_size:,} bytes, {'fp16' if half else 'fp32'}) and {json_path}"
    )
    return out


# fp16 ships when its greedy actions match fp32's on this share of demo frames (or its score holds).
HALF_AGREEMENT = 0.999
AGREEMENT_FRAMES = 4096


def greedy_agreement(a, b, demos: str | None, frames: int = AGREEMENT_FRAMES) -> float | None:
    """Share of the first `frames` observations of the demo file on which learners `a` and `b`
    pick the same greedy action; None when the demo file is no longer there."""
    import numpy as np

    from iq_atari.demo_sources import load_demo_source

    if not demos or not (str(demos).startswith("minari:") or Path(demos).is_file()):
        return None
    data = load_demo_source(demos)
    same = total = 0
    for i in range(len(data)):
        obs = data.stacked_obs(i)[: frames - total]
        for start in range(0, len(obs), 256):
            chunk = obs[start : start + 256]
            same += int(np.sum(a.act(chunk, greedy=True) == b.act(chunk, greedy=True)))
        total += len(obs)
        if total >= frames:
            break
    return same / total if total else None


def _percent(share: float | None) -> str:
    return "demo file not found" if share is None else f"{100 * share:.2f}% agree"


def _info(state, train_config, config, game, source, out, half, returns, fp32, fp16) -> dict:
    """The .json beside a shipped agent: its score, what it learned from, how long, how."""
    import dataclasses

    import numpy as np

    from iq_atari.learners import AVERAGE
    from iq_atari.shipped import repo_relative

    demos = demos_record(state, train_config)
    loop = state["loop"]
    last_seed = config.seed + config.episodes - 1
    return {
        "game": game,
        "algo": train_config.algo,
        "mode": train_config.mode,
        "weights": "fp16" if half else "fp32",
        "file_bytes": out.stat().st_size,
        "updates": loop.get("updates"),
        # the mean of this many policy snapshots (`TrainConfig.average_from`), 0: the last weights
        "averaged_snapshots": int(state.get(AVERAGE, {}).get("count", 0)),
        "train_wall_time_s": loop.get("wall_time_s"),
        "eval": f"greedy, {config.episodes} games, seeds {config.seed}..{last_seed}",
        "seeds": [config.seed + i for i in range(config.episodes)],
        "returns": returns,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns_fp32": fp32,
        "returns_fp16": fp16,
        "demos": demos,
        "train_config": {
            k: v for k, v in dataclasses.asdict(train_config).items() if k not in ("resume",)
        }
        | {
            "demos": repo_relative(train_config.demos),
            "run_dir": repo_relative(train_config.run_dir),
        },
    }


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
