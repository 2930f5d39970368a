"""bf16 vs fp32 training parity: two learners continue the same checkpoint (weights and optimiser
state) for N offline updates on identical batches, one in fp32 and one with bf16 autocast. Prints
the loss of each and their greedy agreement on 2,048 demo frames every 250 updates, the updates/s
of each (same process, alternating update by update), then 10 greedy games of each from SEED.

  python examples/bf16_parity.py runs/Pong/<run>/checkpoints/<checkpoint>.pt 2000 999000
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time

import numpy as np
import torch
from gymnasium.spaces import Box

from iq_atari.buffers import expert_buffer
from iq_atari.checkpoint import read_checkpoint
from iq_atari.demos import load_demos
from iq_atari.evaluation import evaluate
from iq_atari.learners import make_learner, saved_config


def greedy(learner, obs: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [learner.act(obs[i : i + 256], greedy=True) for i in range(0, len(obs), 256)]
    )


def main(checkpoint: str, updates: int, eval_seed: int) -> None:
    torch.set_num_threads(1)
    state = read_checkpoint(checkpoint)
    config = saved_config(state, checkpoint)
    demos = load_demos(config.demos)
    expert = expert_buffer(demos.trajectories, demos.frame_stack)
    space = Box(0, 255, tuple(state["obs_shape"]), np.uint8)
    learners = {}
    for name in ("fp32", "bf16"):
        variant = dataclasses.replace(config, bf16=name == "bf16")
        learners[name] = make_learner(
            variant, space, state["n_actions"], torch.device("cpu"), expert.initial_obs(), expert
        )
        # A copy each: Adam's load_state_dict keeps the given moment tensors, so two learners
        # loading one dict would share (and each step twice) the same moments.
        learners[name].load_state_dict(copy.deepcopy(state["learner"]))
    held = expert.sample(2048, np.random.default_rng(123))
    rng = np.random.default_rng(7)
    seconds = dict.fromkeys(learners, 0.0)
    for update in range(1, updates + 1):
        batch = expert.sample(config.batch_size, rng)
        loss = {}
        for name, learner in learners.items():
            start = time.perf_counter()
            loss[name] = float(learner.update(batch, None)["total_loss"])
            seconds[name] += time.perf_counter() - start
        if update == 1 or update % 250 == 0:
            actions = {name: greedy(learner, held.obs) for name, learner in learners.items()}
            row = {
                "update": update,
                "loss": loss,
                "fp32_bf16_agreement": float(np.mean(actions["fp32"] == actions["bf16"])),
                "expert_agreement": {
                    k: float(np.mean(a == held.actions)) for k, a in actions.items()
                },
            }
            print(json.dumps(row), flush=True)
    rates = {name: updates / s for name, s in seconds.items()}
    print(json.dumps({"updates_per_s": rates, "ratio_bf16": rates["bf16"] / rates["fp32"]}))
    for name, learner in learners.items():
        returns = evaluate(
            lambda obs, agent=learner: agent.act(obs, greedy=True),
            config.game,
            10,
            eval_seed,
            max_envs=5,
        )
        summary = {"precision": name, "seeds": f"{eval_seed}..{eval_seed + 9}"}
        summary |= {"mean": float(np.mean(returns)), "std": float(np.std(returns))}
        print(json.dumps(summary | {"returns": [float(r) for r in returns]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
