"""Where a trained agent parts from its expert: how often it picks the expert's action on the
expert's own states (demo files) and on the states it reaches itself (the expert asked at every
step of the agent's games).

High agreement on the training demos with lower agreement on held-out games of the same expert
means the network does not generalise past the states it trained on; lower still on its own
states means its mistakes take it where it has not learned (compounding error). Per action it
reports the expert's share of the steps and the agent's recall of it, since a rare but decisive
move (Pong's DOWN) hides inside a high overall accuracy.

`--demos` takes one or more comma-separated demo files (default: the demos the agent trained on,
as its checkpoint names them). Record held-out games of the same expert with, e.g., `python -m
runners.demos --game Pong --episodes 2 --seed 555000 --out held.npz`. `--own-games 0` skips the
agent's own games; the expert asked there (`--expert`, default the game's default expert) must
not change the game when asked (RL agents, the Pong tracker and the classic controllers do not;
the Pong planner does).

Examples:
  python -m runners.agreement --checkpoint expert_demos/agents/iq-Pong.pt --demo-episodes 4
  python -m runners.agreement --run runs/Pong/iq-0-... --demos held.npz --own-games 2 --out a.json
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runners.common import arg, check_json_out, load_trained, run_cli, write_json_out


@dataclass
class Config:
    run: str | None = arg(None, "run directory (uses its checkpoints/best.pt)")
    checkpoint: str | None = arg(None, "checkpoint or shipped agent file (instead of --run)")
    demos: str | None = arg(None, "demo file(s), comma-separated (default: the training demos)")
    demo_episodes: int | None = arg(
        None, "use the first N episodes of each demo file (default all)", positive=True
    )
    own_games: int = arg(2, "games the agent plays with the expert asked at each step (0: none)")
    seed: int = arg(999000, "seed of the agent's first own game; game i uses seed + i")
    expert: str | None = arg(None, "expert asked on the agent's states (default: the game's)")
    out: str | None = arg(None, "write the results to this .json")


def _describe(label: str, result: dict, names: list[str]) -> str:
    """One line: accuracy, the majority baseline, and share / recall of each action used."""
    parts = [
        f"{names[a]} {100 * share:.0f}% / {100 * recall:.1f}%"
        for a, (share, recall) in enumerate(
            zip(result["expert_share"], result["recall"], strict=True)
        )
        if recall is not None
    ]
    return (
        f"{label}: {100 * result['accuracy']:.1f}% of {result['steps']:,} steps "
        f"(majority {100 * result['majority_accuracy']:.1f}%); expert's share / recall: "
        + ", ".join(parts)
    )


def run(config: Config) -> dict:
    from iq_atari.demo_sources import load_demo_source
    from iq_atari.envs import make_env, resolve_game
    from iq_atari.errors import InputError
    from iq_atari.evaluation import action_agreement, expert_agreement_on_agent_states
    from iq_atari.experts import default_expert_name, get_expert
    from iq_atari.shipped import repo_relative

    check_json_out(config.out)
    if config.own_games < 0:
        raise InputError(f"--own-games must be >= 0, got {config.own_games}")
    source, state, learner, train_config, settings = load_trained(config.run, config.checkpoint)
    spec = resolve_game(train_config.game)
    if config.demos is not None:
        demo_files = [p for p in config.demos.split(",") if p]
    elif state.get("demos"):
        demo_files = [str(state["demos"])]
    else:
        raise InputError(f"{source}: names no training demos; give --demos FILE")
    for path in demo_files:
        if not Path(path).is_file() and not path.startswith("minari:"):
            raise InputError(f"--demos: {path}: no such demo file")

    env = make_env(spec.name, 0, settings=settings)
    try:
        n_actions = int(env.action_space.n)
        meanings = getattr(env.unwrapped, "get_action_meanings", None)
        names = list(meanings()) if meanings else [f"action {a}" for a in range(n_actions)]
    finally:
        env.close()

    def policy(obs):
        return learner.act(obs, greedy=True)

    result: dict = {
        "checkpoint": repo_relative(str(source)),
        "game": spec.name,
        "algo": train_config.algo,
        "updates": state.get("loop", {}).get("updates"),
        "action_names": names,
        "demos": [],
    }
    for path in demo_files:
        start = time.perf_counter()
        demos = load_demo_source(path, game=spec.name)
        trajectories = demos.trajectories[: config.demo_episodes]
        agreement = action_agreement(policy, trajectories, demos.frame_stack, n_actions)
        agreement.update(file=repo_relative(path), episodes=len(trajectories))
        agreement["seconds"] = time.perf_counter() - start
        result["demos"].append(agreement)
        print(_describe(f"{path} ({len(trajectories)} episodes)", agreement, names))
    if config.own_games:
        start = time.perf_counter()
        expert = get_expert(spec.name, config.expert)
        own = expert_agreement_on_agent_states(
            policy, expert, spec.name, config.own_games, config.seed, settings=settings
        )
        seeds = [config.seed + i for i in range(config.own_games)]
        own.update(expert=config.expert or default_expert_name(spec.name), seeds=seeds)
        own["seconds"] = time.perf_counter() - start
        result["own_states"] = own
        scores = ", ".join(f"{s:+g}" for s in own["scores"])
        print(_describe(f"its own states ({config.own_games} games: {scores})", own, names))
    result["command"] = "python -m runners.agreement " + shlex.join(sys.argv[1:])
    write_json_out(config.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
