"""Expert policies behind one interface (`Expert`): RL agents on RAM features (`ppo-ram`),
scripted ones (RAM-reading Atari planners, classic-control controllers), and
stable-baselines3 / RL-Zoo checkpoints (.zip).

`get_expert(game)` gives the game's default expert: its shipped RAM agent where one ships, else
its scripted expert, else a shipped SB3 checkpoint. `get_expert(game, "name")` gives a named
one; `get_expert(game, "path/to/model.zip")` loads a checkpoint (a RAM agent when its .json
says it observes RAM features).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from iq_atari.envs import resolve_game
from iq_atari.errors import InputError
from iq_atari.experts.base import DISTILLED_ALGO, RAM_ALGO, Expert
from iq_atari.experts.random import RandomExpert

__all__ = [
    "Expert",
    "available_experts",
    "default_expert_name",
    "get_expert",
    "shipped_expert_name",
]
ZOO_ALGOS = ("dqn", "qrdqn", "ppo", "a2c")


def _atari_experts() -> dict[str, dict[str, Callable[[], Expert]]]:
    from iq_atari.experts.atari_pong import PongPlanner, PongTracker
    from iq_atari.experts.atari_scripted import BreakoutTracker

    return {
        "ALE/Pong-v5": {"planner": PongPlanner, "tracker": PongTracker},
        "ALE/Breakout-v5": {"tracker": BreakoutTracker},
    }


def shipped_expert_name(env_id: str, algo: str) -> str:
    """File name of a trained checkpoint under expert_demos/experts/: <algo>-<env id>.zip."""
    return f"{algo}-{env_id.replace('/', '-')}.zip"


def distilled_name(env_id: str) -> str:
    """File name of a DAgger-distilled pixel student under expert_demos/experts/."""
    return f"{DISTILLED_ALGO}-{env_id.replace('/', '-')}.pt"


def available_experts(game: str) -> dict[str, Callable[[], Expert]]:
    """Named experts for `game`, the default first: a shipped distilled pixel student
    ("distilled", shipped only where it meets the expert bars), a shipped RAM agent ("ppo-ram"),
    scripted ones, checkpoints shipped under expert_demos/experts/ by algorithm name ("dqn",
    "ppo"), and
    the "random" baseline last."""
    from iq_atari.demo_library import DEMO_DIR
    from iq_atari.experts.classic import classic_expert

    spec = resolve_game(game)
    named: dict[str, Callable[[], Expert]] = {}
    student = DEMO_DIR / "experts" / distilled_name(spec.env_id)
    if spec.is_atari and student.is_file():
        named[DISTILLED_ALGO] = partial(_load_distilled, student, spec.env_id)
    ram_path = DEMO_DIR / "experts" / shipped_expert_name(spec.env_id, RAM_ALGO)
    if spec.is_atari and ram_path.is_file():
        named[RAM_ALGO] = partial(_load_ram, ram_path, spec.env_id)
    if spec.is_atari:
        named.update(_atari_experts().get(spec.env_id, {}))
    else:
        expert = classic_expert(spec.env_id)
        if expert is not None:
            named[expert.name] = lambda: classic_expert(spec.env_id)
    for algo in ZOO_ALGOS:
        path = DEMO_DIR / "experts" / shipped_expert_name(spec.env_id, algo)
        if path.is_file():
            named[algo] = partial(_load_zoo, path, spec.env_id, algo)
    named["random"] = RandomExpert
    return named


def _load_ram(path: Path, game: str) -> Expert:
    from iq_atari.experts.ram_expert import load_ram_expert

    return load_ram_expert(path, game)


def _load_distilled(path: Path, game: str) -> Expert:
    from iq_atari.experts.distill import PixelPolicyExpert

    return PixelPolicyExpert(path, game)


def _is_ram_expert(path: Path) -> bool:
    """A .zip made by `make expert --obs ram`: its name or its .json says so."""
    if path.name.startswith(RAM_ALGO + "-"):
        return True
    info = path.with_suffix(".json")
    try:
        return "RAM" in str(json.loads(info.read_text()).get("observes", ""))
    except (OSError, ValueError, AttributeError):
        return False


def _load_zoo(path: Path, game: str, algo: str | None = None) -> Expert:
    from iq_atari.experts.zoo import load_zoo_expert

    return load_zoo_expert(path, game, algo)


def default_expert_name(game: str) -> str | None:
    """Name of the game's default expert (scripted, else a shipped checkpoint), or None."""
    names = [n for n in available_experts(game) if n != "random"]
    return names[0] if names else None


def get_expert(game: str, name_or_path: str | None = None) -> Expert:
    """The expert `name_or_path` for `game` (None: the default). A path loads an SB3/RL-Zoo .zip
    (a RAM agent's .zip included) or a distilled student's .pt.

    Raises InputError for a game without a default, an unknown name or a missing file.
    """
    spec = resolve_game(game)
    available = available_experts(game)
    if name_or_path == "scripted" and "scripted" not in available:
        # EXPERT=scripted: the game's first scripted expert (planner, tracker, controller).
        learned = {RAM_ALGO, DISTILLED_ALGO, *ZOO_ALGOS, "random"}
        scripted = [n for n in available if n not in learned]
        name_or_path = scripted[0] if scripted else None
    if name_or_path is None:
        name = default_expert_name(game)
        if name is None:
            raise InputError(
                f"{spec.name} has no default expert; pass EXPERT=<path to an SB3/RL-Zoo .zip> "
                f"(e.g. one made by `make expert GAME={spec.name}`) or EXPERT=random"
            )
        return available[name]()
    if name_or_path in available:
        return available[name_or_path]()
    path = Path(name_or_path)
    if path.suffix in (".zip", ".pt") or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise InputError(f"--expert: no such file {name_or_path!r}")
        if spec.is_atari and path.suffix == ".pt":
            return _load_distilled(path, game)
        if spec.is_atari and _is_ram_expert(path):
            return _load_ram(path, game)
        return _load_zoo(path, game)
    raise InputError(
        f"--expert: unknown expert {name_or_path!r} for {spec.name}; known: "
        f"{', '.join(available)}; or pass EXPERT=<path to an SB3/RL-Zoo .zip>"
    )
