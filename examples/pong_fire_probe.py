"""What Pong's FIRE button does, and what random actions cost the Pong expert.

1. From states just before the ball reaches the player's paddle (a simple tracker plays, no
   sticky actions), the game goes on twice for 40 frames: once with the tracker's move, once with
   its FIRE variant (NOOP -> FIRE, RIGHT -> RIGHTFIRE, LEFT -> LEFTFIRE) held for the first 12
   frames. Prints how many of the states end with the ball or paddle elsewhere.
2. With --expert-games N: the expert plays N games of our env (seeds 1000..) while, with
   probability --noise, the env executes a random action from each of the sets given, one row per
   set: its own actions (NOOP, up, down), the FIRE variants, all six.

  PYTHONPATH=. python examples/pong_fire_probe.py --states 200 --expert-games 10 --noise 0.1
"""

from __future__ import annotations

import argparse

import ale_py
import gymnasium as gym
import numpy as np

FIRE_OF = {0: 1, 3: 11, 4: 12}  # ALE's full action set: NOOP/RIGHT/LEFT -> their FIRE variants


def contact_probe(states: int, seed: int) -> tuple[int, int]:
    """(states probed, states whose ball or paddle differ 40 frames later)."""
    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=seed)
    ale = env.unwrapped.ale
    prev_x, probed, differ = 0, 0, 0
    while probed < states:
        ram = ale.getRAM()
        ball_x, ball_y, paddle = int(ram[49]), int(ram[54]), int(ram[51])
        centre_gap = paddle + 8 - (ball_y + 2)
        move = 3 if centre_gap > 3 else (4 if centre_gap < -3 else 0)
        if 176 <= ball_x <= 186 and ball_x > prev_x:
            start, ends = ale.cloneState(), []
            for fire in (False, True):
                ale.restoreState(start)
                for frame in range(40):
                    ale.act(FIRE_OF[move] if fire and frame < 12 else move)
                end = ale.getRAM()
                ends.append((int(end[49]), int(end[54]), int(end[51])))
            probed += 1
            differ += ends[0] != ends[1]
            ale.restoreState(start)
        prev_x = ball_x
        ale.act(move)
        if ale.game_over():
            ale.reset_game()
    env.close()
    return probed, differ


def noisy_scores(games: int, noise: float, actions: list[int]) -> list[float]:
    """The default Pong expert's scores when the env executes one of `actions` (our env's
    minimal set) in place of its choice with probability `noise`."""
    from iq_atari.envs import make_env
    from iq_atari.episodes import run_episode
    from iq_atari.experts import get_expert
    from iq_atari.rollout import random_action_noise

    env = make_env("Pong", 1000)
    expert = get_expert("Pong")
    scores = []
    for i in range(games):
        perturb = random_action_noise(noise, 6, np.random.default_rng(1000 + i), actions)
        played = run_episode(
            env, lambda obs: expert.act(obs, env), 1000 + i, on_reset=lambda: expert.reset(env),
            perturb=perturb,
        )  # fmt: skip
        scores.append(played.score)
    env.close()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=200, help="near-contact states to probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expert-games", type=int, default=0, help="expert games per action set")
    parser.add_argument("--noise", type=float, default=0.1)
    args = parser.parse_args()
    probed, differ = contact_probe(args.states, args.seed)
    print(f"FIRE variant held 12 frames at contact: {differ} of {probed} states differ 40 on")
    sets = {"own (NOOP, up, down)": [0, 2, 3], "FIRE variants": [1, 4, 5], "all": list(range(6))}
    for name, actions in sets.items() if args.expert_games else ():
        scores = noisy_scores(args.expert_games, args.noise, actions)
        print(f"expert, random action from {name} with p={args.noise:g}: "
              f"{np.mean(scores):+.1f} ± {np.std(scores):.1f} {scores}")  # fmt: skip


if __name__ == "__main__":
    main()
