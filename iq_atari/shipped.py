"""Shipped agents: a trained checkpoint slimmed to what acting needs, under expert_demos/agents/.

A shipped agent is a checkpoint of the same format (`checkpoint.read_checkpoint` reads it, and
`learners.load_learner` turns it into a learner) whose learner state holds only the policy's
weights, optionally in fp16, and no optimiser, replay or RNG state: a Nature-CNN agent is ~3 MB
instead of ~20 MB. `agent_file(game)` is where the game's shipped IQ-Learn agent lives; runners
use it when no run of the game has been trained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from iq_atari.checkpoint import read_checkpoint, save_checkpoint
from iq_atari.demo_library import DEMO_DIR
from iq_atari.envs import resolve_game
from iq_atari.learners import POLICY_ONLY, Learner, load_learner

AGENT_DIR = DEMO_DIR / "agents"
REPO_ROOT = DEMO_DIR.parent
# Checkpoint fields a shipped agent keeps: what the network was built and trained for.
KEPT = ("config", "obs_shape", "obs_dtype", "n_actions", "demos", "env_kwargs")


def agent_file(game: str, algo: str = "iq") -> Path:
    """expert_demos/agents/<algo>-<Game>.pt, e.g. iq-Pong.pt."""
    return AGENT_DIR / f"{algo}-{resolve_game(game).name}.pt"


def repo_relative(path: str | None) -> str | None:
    """`path` relative to the repository when it lies inside it (shipped files name no
    machine's directories), else unchanged."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def policy_weights(learner: Learner, half: bool) -> dict[str, torch.Tensor]:
    """The learner's acting weights, floating-point tensors cast to fp16 when `half`."""
    return {
        k: (v.half() if half and torch.is_floating_point(v) else v).detach().cpu().clone()
        for k, v in learner.policy_state().items()
    }


def slim_agent(state: dict[str, Any], learner: Learner, half: bool) -> dict[str, Any]:
    """A shipped agent of the checkpoint `state` whose learner is `learner`: the fields loading
    needs, the policy's weights, the loop's counters; paths inside the repo become relative."""
    slim = {key: state[key] for key in KEPT if key in state}
    slim["config"] = dict(state["config"], demos=repo_relative(state["config"].get("demos")))
    slim["demos"] = repo_relative(state.get("demos"))
    slim["learner"] = {POLICY_ONLY: policy_weights(learner, half)}
    slim["loop"] = {k: state["loop"][k] for k in ("updates", "wall_time_s") if k in state["loop"]}
    return slim


def export_agent(checkpoint: str | Path, out: str | Path, half: bool) -> dict[str, Any]:
    """Write the agent of `checkpoint` to `out` (atomically) as a shipped agent; returns what
    was written."""
    slim = slim_agent(read_checkpoint(checkpoint), load_learner(checkpoint)[0], half)
    save_checkpoint(slim, out)
    return slim
