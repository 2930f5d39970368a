"""Record gameplay videos (H.264 .mp4) of a trained agent and/or an expert, optionally as demos.

Examples:
  python -m runners.record --game Pong --expert scripted              # the scripted expert
  python -m runners.record --game CartPole                            # the newest CartPole run
  python -m runners.record --game Pong --run runs/Pong/iq-0-... --side-by-side --episodes 3
  python -m runners.record --game CartPole --checkpoint runs/.../checkpoints/best.pt --sample
  python -m runners.record --game CartPole --run runs/... --save-demos my_demos.npz

Who plays: the agent of `--run` / `--checkpoint` (with neither and no `--expert`: the newest run
under runs/<Game>/; with no run there, the shipped agent expert_demos/agents/iq-<Game>.pt beside
the game's default expert), or the `--expert`. `--side-by-side` (implied when both an agent and an
expert are given) shows expert (left) and agent (right) on the same seeds, twice the width.
Episode i starts from seed + i. Videos land in the run's videos/ folder for an agent, else
videos/<Game>/; `--out` overrides. One frame per agent step at the game's real speed (Atari:
60 Hz / frame skip 4 = 15 fps), full-colour frames (Atari scaled 2x), running score on top.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runners.common import arg, run_cli

if TYPE_CHECKING:  # the heavy imports wait until a recording starts, so --help stays quick
    from iq_atari.envs import AtariSettings
    from iq_atari.experts import Expert


@dataclass
class Config:
    game: str = arg("Pong", "game: short Atari name (Pong), gymnasium id (CartPole-v1), any case")
    run: str | None = arg(None, "run directory of a trained agent (uses checkpoints/best.pt)")
    checkpoint: str | None = arg(None, "checkpoint file of a trained agent (instead of --run)")
    expert: str | None = arg(
        None,
        "expert: scripted (the game's default), a name (planner, controller, random) or "
        "an SB3/RL-Zoo .zip path",
    )
    episodes: int = arg(1, "episodes to record, one after another in the same video", positive=True)
    side_by_side: bool = arg(False, "expert and agent on the same seeds in one video")
    out: str | None = arg(None, "output .mp4 (default: <run>/videos/... or videos/<Game>/...)")
    seed: int = arg(0, "seed of the first episode; episode i uses seed + i")
    sample: bool = arg(False, "agent samples from softmax(Q / alpha) instead of greedy argmax")
    max_steps: int | None = arg(None, "cap each episode at this many agent steps", positive=True)
    save_demos: str | None = arg(
        None, "also save the played episodes to this demo file (.npz), to use as an expert"
    )
    progress: bool = arg(True, "show a progress bar")


def run(config: Config) -> Path:
    from iq_atari.demos import save_demos
    from iq_atari.envs import resolve_game
    from iq_atari.errors import InputError
    from iq_atari.experts import get_expert
    from iq_atari.rollout import demo_meta
    from iq_atari.video import record_video

    spec = resolve_game(config.game)
    if config.run is not None and config.checkpoint is not None:
        raise InputError("give --run DIR or --checkpoint PATH, not both")
    if config.out is not None and Path(config.out).suffix.lower() != ".mp4":
        raise InputError(f"--out: expected a .mp4 file name, got {config.out!r}")
    shipped = _shipped_agent(config, spec.name)
    # The shipped agent, played because nothing was trained here, is shown beside its expert.
    want_expert = config.expert is not None or config.side_by_side or shipped is not None
    want_agent = bool(
        config.run or config.checkpoint or config.side_by_side or shipped or not want_expert
    )
    if config.save_demos is not None and want_agent and want_expert:
        raise InputError("--save-demos records one policy; drop --side-by-side or --expert/--run")
    expert = get_expert(spec.name, config.expert) if want_expert else None
    agent = load_agent(config, spec.name, shipped) if want_agent else None
    players = [(f"expert: {expert.name}", expert)] if expert is not None else []
    if agent is not None:
        players.append((agent.label, agent.policy))
    settings = agent.settings if agent is not None else None
    out = Path(config.out) if config.out else _default_out(config, spec.name, agent, expert)
    print(
        f"recording {' vs '.join(label for label, _ in players)} on {spec.name}: "
        f"{config.episodes} episode(s) from seed {config.seed}",
        file=sys.stderr,
    )
    recording = record_video(
        out,
        spec.name,
        players,
        episodes=config.episodes,
        seed=config.seed,
        settings=settings,
        max_steps=config.max_steps,
        keep_trajectories=config.save_demos is not None,
        progress=config.progress,
    )
    for label in recording.labels:
        scores = ", ".join(f"{r:g}" for r in recording.returns[label])
        steps = ", ".join(str(n) for n in recording.lengths[label])
        print(f"{label}: returns [{scores}], steps [{steps}]")
    seconds = float(recording.frames / recording.fps)
    print(
        f"wrote {out} ({out.stat().st_size:,} bytes, {recording.frames} frames, "
        f"{recording.width}x{recording.height} at {float(recording.fps):g} fps, {seconds:.1f} s)"
    )
    if config.save_demos is not None:
        label, policy = players[0]
        seeds = [config.seed + i for i in range(config.episodes)]
        meta = demo_meta(spec.name, policy, config.seed, seeds, recording.settings)
        path = save_demos(config.save_demos, recording.trajectories[label], meta)
        print(f"wrote {path} ({path.stat().st_size:,} bytes, {config.episodes} episodes)")
    return out


@dataclass
class LoadedAgent:
    """A trained agent as a player: its policy, label, file-name part, run dir and env settings."""

    policy: Expert  # iq_atari.video.PolicyExpert around the learner's act
    label: str
    name: str
    run_dir: Path | None
    settings: AtariSettings | None  # Atari: what it was trained with


def load_agent(config: Config, game: str, shipped: Path | None = None) -> LoadedAgent:
    """The agent of --checkpoint, --run, `shipped`, or the newest run of `game`; refuses another
    game's."""
    from iq_atari.envs import resolve_game
    from iq_atari.errors import InputError
    from iq_atari.learners import load_learner
    from iq_atari.video import PolicyExpert

    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        if not path.is_file():
            raise InputError(f"--checkpoint: {path}: no such checkpoint file")
    elif config.run is not None:
        path = Path(config.run) / "checkpoints" / "best.pt"
        if not Path(config.run).is_dir():
            raise InputError(f"--run: {config.run}: no such run directory")
        if not path.is_file():
            raise InputError(f"--run: {config.run}: has no checkpoints/best.pt (not trained yet?)")
    elif shipped is not None:
        path = shipped
    else:
        path = _newest_checkpoint(game)
    learner, train_config = load_learner(path)
    trained_on = resolve_game(train_config.game)
    if trained_on.env_id != resolve_game(game).env_id:
        raise InputError(
            f"{path}: a checkpoint for {trained_on.name}, not {game}; pass --game {trained_on.name}"
        )
    greedy = not config.sample
    mode = "greedy" if greedy else "sample"
    policy = PolicyExpert(
        lambda obs: int(learner.act(obs[None], greedy=greedy)[0]),
        f"{train_config.algo}-agent",
        {
            "kind": "iq_atari checkpoint",
            "checkpoint": str(path),
            "algo": train_config.algo,
            "mode": train_config.mode,
            "greedy": greedy,
        },
    )
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return LoadedAgent(
        policy,
        f"agent: {train_config.algo} {mode}",
        path.stem
        if path.stem.startswith(f"{train_config.algo}-")
        else f"{train_config.algo}-{path.stem}",
        run_dir,
        _checkpoint_settings(path, trained_on.is_atari),
    )


def _shipped_agent(config: Config, game: str) -> Path | None:
    """expert_demos/agents/iq-<Game>.pt when no agent was named and no run of `game` exists."""
    from iq_atari.shipped import agent_file

    if config.run or config.checkpoint or (config.expert and not config.side_by_side):
        return None
    if any(Path("runs", game).glob("*/checkpoints/best.pt")):
        return None
    path = agent_file(game)
    if path.is_file():
        print(
            f"no run of {game} under runs/{game}/: playing the shipped agent {path}",
            file=sys.stderr,
        )
        return path
    return None


def _newest_checkpoint(game: str) -> Path:
    """checkpoints/best.pt of the most recently trained run under runs/<Game>/."""
    from iq_atari.errors import InputError

    found = sorted(
        Path("runs", game).glob("*/checkpoints/best.pt"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise InputError(
            f"no trained run of {game} under runs/{game}/ and no shipped agent; train one "
            f"(make train GAME={game}), or "
            f"pass --run DIR, --checkpoint PATH or --expert NAME (e.g. --expert scripted)"
        )
    return found[-1]


def _checkpoint_settings(path: Path, is_atari: bool) -> AtariSettings | None:
    """The Atari settings the agent was trained with (those of its demos), else the defaults."""
    from iq_atari.checkpoint import read_checkpoint
    from iq_atari.demos import read_meta
    from iq_atari.envs import AtariSettings
    from iq_atari.errors import InputError

    if not is_atari:
        return None
    # Checkpoints store the env settings; older ones only name the demo file, whose meta has them.
    state = read_checkpoint(path)
    kwargs, source = state.get("env_kwargs"), path
    if kwargs is None and state.get("demos") and Path(state["demos"]).is_file():
        source = Path(state["demos"])
        kwargs = read_meta(source).get("env_kwargs")
    try:
        return AtariSettings(**kwargs) if kwargs else AtariSettings()
    except TypeError as err:
        raise InputError(f"{source}: env_kwargs: {err}") from err


def _default_out(
    config: Config, game: str, agent: LoadedAgent | None, expert: Expert | None
) -> Path:
    """<run>/videos/<name>.mp4 for an agent, videos/<Game>/<name>.mp4 for an expert alone."""
    parts = []
    if expert is not None:
        parts.append(expert.name)
    if agent is not None:
        parts.append(f"{agent.name}-{'sample' if config.sample else 'greedy'}")
    name = "-vs-".join(parts) + f"-seed{config.seed}-{config.episodes}ep.mp4"
    if agent is not None and agent.run_dir is not None:
        return agent.run_dir / "videos" / name
    return Path("videos") / game / name


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
