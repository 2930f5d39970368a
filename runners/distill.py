"""Distill an expert into a pixel policy with DAgger: the student plays, the teacher labels.

The teacher is any expert of the game that reads the emulator (default: the game's default
expert, e.g. the shipped RAM agent). The best student is saved as
expert_demos/experts/distilled-<env id>.pt with a .json of its rounds and scores; it is then
available as EXPERT=distilled (and as EXPERT=<path>), acting only on our 84x84 frame stacks.
Everything is checkpointed after each round in --checkpoint-dir; --resume continues there (after
an interruption, or with more --rounds / a higher --target).

Examples:
  python -m runners.distill --game Pong
  python -m runners.distill --game Pong --rounds 16 --resume   # 8 more rounds of the run above
  python -m runners.distill --game Breakout --expert tracker --rounds 4 --episodes 2
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from iq_atari.experts.distill import DistillConfig
from iq_atari.networks import BF16_HELP, ENCODER_HELP, Encoder
from runners.common import arg, run_cli

D = DistillConfig()  # the defaults, declared once there


@dataclass
class Config:
    game: str = arg("Pong", "Atari game: short name (Pong) or gymnasium id, any case")
    expert: str | None = arg(
        None, "teacher: an expert name or path (default: the game's, other than a student)"
    )
    rounds: int = arg(D.rounds, "DAgger rounds after the teacher's own round", positive=True)
    episodes: int = arg(D.episodes, "games per round", positive=True)
    updates: int = arg(D.updates, "student gradient steps after each round", positive=True)
    batch_size: int = arg(D.batch_size, "student batch size", positive=True)
    lr: float = arg(D.lr, "student Adam learning rate")
    target: float = arg(D.target, "stop when the student reaches this share of the teacher's score")
    capacity: int = arg(D.capacity, "frames of aggregated data kept (~7 KB each)", positive=True)
    max_steps: int | None = arg(
        D.max_steps, "agent steps per game at most (default: the env's cap)"
    )
    encoder: Encoder = arg(D.encoder, ENCODER_HELP)
    bf16: bool = arg(D.bf16, BF16_HELP + "; the saved student acts in float32")
    seed: int = arg(
        D.seed, "seed of the student, its sampling and the games (round k: seed+1000k+i)"
    )
    out: str | None = arg(None, "output .pt (default expert_demos/experts/distilled-<env id>.pt)")
    checkpoint_dir: str | None = arg(
        None, "where the whole state is kept after each round (default runs/distill/<Game>-s<seed>)"
    )
    resume: bool = arg(False, "continue the distillation saved in --checkpoint-dir")
    threads: int = arg(1, "torch CPU threads", positive=True)
    progress: bool = arg(True, "show progress bars")


def run(config: Config) -> dict:
    import torch

    from iq_atari.demo_library import DEMO_DIR
    from iq_atari.envs import resolve_game
    from iq_atari.experts import available_experts, distilled_name, get_expert
    from iq_atari.experts.base import DISTILLED_ALGO
    from iq_atari.experts.distill import distill

    spec = resolve_game(config.game)
    torch.set_num_threads(config.threads)
    name = config.expert
    if name is None:  # the game's default teacher: never a student distilled earlier
        known = available_experts(spec.env_id)
        teachers = [n for n in known if n not in (DISTILLED_ALGO, "random")]
        name = teachers[0] if teachers else None
    teacher = get_expert(spec.env_id, name)
    out = Path(config.out) if config.out else DEMO_DIR / "experts" / distilled_name(spec.env_id)
    checkpoints = Path(config.checkpoint_dir or f"runs/distill/{spec.name}-s{config.seed}")
    result = distill(
        spec.env_id,
        teacher,
        out,
        DistillConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(D)}),
        progress=config.progress,
        command="python -m runners.distill " + shlex.join(sys.argv[1:]),
        checkpoint_dir=checkpoints,
        resume=config.resume,
    )
    verdict = "target reached" if result.reached else "target not reached"
    print(
        f"student {result.student_score:+.1f} = {result.share:.0%} of the teacher's "
        f"{result.teacher_score:+.1f} ({verdict}) -> {out}"
    )
    return {"out": str(out), "share": result.share, "reached": result.reached}


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
