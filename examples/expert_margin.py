"""Where an agent parts from the Pong RAM expert, by how sure the expert is: the expert replays a
clean game (its greedy play is deterministic given the seed), and at each step the agent's greedy
action is compared with the expert's, binned by the gap between the expert's two most likely
actions under its PPO policy. A small gap is a near-tie: the greedy label there is one the frames
can hardly decide.

  PYTHONPATH=. python examples/expert_margin.py expert_demos/agents/iq-Pong.pt 555000,555001
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from iq_atari.envs import make_env
from iq_atari.episodes import run_episode
from iq_atari.experts import get_expert
from runners.common import load_trained

BINS = [(0.0, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]


def main(checkpoint: str, seeds: list[int]) -> None:
    torch.set_num_threads(1)
    learner = load_trained(None, checkpoint)[2]
    expert = get_expert("Pong")
    env = make_env("Pong", seeds[0])
    rows: list[tuple[int, int, float]] = []

    def play(obs: np.ndarray) -> int:
        # What RamPolicyExpert.act does, keeping the probabilities: greedy = the likeliest action.
        features = expert._features(env.unwrapped.ale.getRAM())
        with torch.no_grad():
            dist = expert.model.policy.get_distribution(
                expert.model.policy.obs_to_tensor(features)[0]
            )
        probs = dist.distribution.probs[0].numpy()
        action = int(expert._features.actions[int(np.argmax(probs))])
        top = np.sort(probs)[::-1]
        agent = int(np.asarray(learner.act(np.asarray(obs)[None], greedy=True))[0])
        rows.append((action, agent, float(top[0] - top[1])))
        return action

    for seed in seeds:
        played = run_episode(env, play, seed, on_reset=lambda: expert.reset(env))
        print(f"expert game {seed}: {played.score:+.0f}")
    data = np.array(rows)
    agree, gap = data[:, 0] == data[:, 1], data[:, 2]
    print(f"{len(data):,} steps, agreement {100 * agree.mean():.1f}%")
    for lo, hi in BINS:
        sel = (gap >= lo) & (gap < hi)
        print(
            f"gap {lo:.1f}-{min(hi, 1.0):.1f}: {100 * sel.mean():5.1f}% of steps, agreement "
            f"{100 * agree[sel].mean():5.1f}%, {100 * (~agree & sel).sum() / (~agree).sum():5.1f}% "
            "of the errors"
        )


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2].split(",")])
