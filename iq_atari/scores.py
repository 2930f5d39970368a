"""Reference scores and the normalised score that imitation targets are stated in."""

from __future__ import annotations

# Random-policy scores of Mnih et al. (2015), Extended Data Table 2 (not measured in our env).
RANDOM_SCORES = {"Pong": -20.7, "Breakout": 1.7, "SpaceInvaders": 148.0}


def normalised(score: float, expert: float, random: float) -> float:
    """(score - random) / (expert - random): 0 plays like random, 1 like the expert."""
    if expert == random:
        raise ValueError(f"the expert's score {expert:g} equals the random score")
    return (score - random) / (expert - random)
