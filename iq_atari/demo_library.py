"""Where demo files live and how they are named: expert_demos/<Game>_<expert>_<N>ep.npz, with
the shipped sets (and trained experts) under expert_demos/reference/ and expert_demos/experts/."""

from __future__ import annotations

import re
from pathlib import Path

from iq_atari.envs import resolve_game

DEMO_DIR = Path(__file__).resolve().parent.parent / "expert_demos"

_DEMO_NAME = re.compile(r"_(\d+)ep\.npz$")

# The shipped set a game's imitators learn best from (docs/RESULTS.md; for Pong, the one its
# shipped agent learned from), preferred over that game's other reference sets of as many
# episodes; a set of the user's own still wins a tie.
TRAINING_SETS: dict[str, str] = {
    "Pong": "Pong_ppo-ram-darte0.1_20ep.npz",
    "Breakout": "Breakout_ppo-ram-dart0.1-delay10_20ep.npz",
}


def demo_filename(game: str, expert: str, episodes: int) -> str:
    """Default demo file name: <Game>_<expert>_<N>ep.npz."""
    safe_expert = re.sub(r"[^A-Za-z0-9.-]+", "-", expert).strip("-") or "expert"
    return f"{resolve_game(game).name}_{safe_expert}_{episodes}ep.npz"


def find_demos(game: str, directory: Path | None = None) -> Path | None:
    """The default demo file for `game`: <Game>_*_<N>ep.npz under expert_demos/ or its
    reference/ folder (the shipped sets): most episodes wins, then expert_demos/ itself, then
    the game's TRAINING_SETS entry."""
    root = DEMO_DIR if directory is None else Path(directory)
    name = resolve_game(game).name
    prefix, preferred = name + "_", TRAINING_SETS.get(name)
    best: tuple[int, int, bool, str] | None = None
    for rank, folder in enumerate((root, root / "reference")):
        for candidate in sorted(folder.glob(prefix + "*ep.npz")) if folder.is_dir() else []:
            match = _DEMO_NAME.search(candidate.name)
            if match is None:
                continue
            key = (int(match.group(1)), -rank, candidate.name == preferred, str(candidate))
            if best is None or key > best:
                best = key
    return Path(best[3]) if best else None
