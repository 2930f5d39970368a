"""Train an expert with stable-baselines3 using RL-Zoo's hyperparameters, and measure its score.

Hyperparameters are copied from rl-baselines3-zoo `hyperparams/dqn.yml` and `ppo.yml` (Atari:
the `atari` entry; LunarLander-v2 there is LunarLander-v3 here). RL-Zoo normalises observations
(VecNormalize) for PPO on MountainCar/Acrobot; we do not, so the .zip alone is the expert.
Atari experts train as RL-Zoo does: `<Game>NoFrameskip-v4` + SB3 AtariWrapper + VecFrameStack(4);
the score is measured in our own env (sticky actions 0.25, noop 30), where demos are recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from iq_atari.envs import resolve_game
from iq_atari.errors import InputError
from iq_atari.utils import atomic_path, atomic_write_text


def _linear(start: float):
    """RL-Zoo's `lin_<x>`: decays linearly from x to 0 over training."""
    return lambda progress_remaining: progress_remaining * start


_NET_256 = {"net_arch": [256, 256]}
HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "dqn": {
        "atari": dict(
            policy="CnnPolicy",
            n_timesteps=10_000_000,
            buffer_size=100_000,
            learning_rate=1e-4,
            batch_size=32,
            learning_starts=100_000,
            target_update_interval=1000,
            train_freq=4,
            gradient_steps=1,
            exploration_fraction=0.1,
            exploration_final_eps=0.01,
            optimize_memory_usage=False,
        ),
        "CartPole-v1": dict(
            policy="MlpPolicy",
            n_timesteps=50_000,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=_NET_256,
        ),
        "MountainCar-v0": dict(
            policy="MlpPolicy",
            n_timesteps=120_000,
            learning_rate=4e-3,
            batch_size=128,
            buffer_size=10_000,
            learning_starts=1000,
            gamma=0.98,
            target_update_interval=600,
            train_freq=16,
            gradient_steps=8,
            exploration_fraction=0.2,
            exploration_final_eps=0.07,
            policy_kwargs=_NET_256,
        ),
        "LunarLander-v3": dict(
            policy="MlpPolicy",
            n_timesteps=100_000,
            learning_rate=6.3e-4,
            batch_size=128,
            buffer_size=50_000,
            learning_starts=0,
            gamma=0.99,
            target_update_interval=250,
            train_freq=4,
            gradient_steps=-1,
            exploration_fraction=0.12,
            exploration_final_eps=0.1,
            policy_kwargs=_NET_256,
        ),
        "Acrobot-v1": dict(
            policy="MlpPolicy",
            n_timesteps=100_000,
            learning_rate=6.3e-4,
            batch_size=128,
            buffer_size=50_000,
            learning_starts=0,
            gamma=0.99,
            target_update_interval=250,
            train_freq=4,
            gradient_steps=-1,
            exploration_fraction=0.12,
            exploration_final_eps=0.1,
            policy_kwargs=_NET_256,
        ),
    },
    "ppo": {
        "atari": dict(
            policy="CnnPolicy",
            n_envs=8,
            n_steps=128,
            n_epochs=4,
            batch_size=256,
            n_timesteps=10_000_000,
            learning_rate=_linear(2.5e-4),
            clip_range=_linear(0.1),
            vf_coef=0.5,
            ent_coef=0.01,
        ),
        "CartPole-v1": dict(
            policy="MlpPolicy",
            n_envs=8,
            n_timesteps=100_000,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=_linear(0.001),
            clip_range=_linear(0.2),
        ),
        "MountainCar-v0": dict(
            policy="MlpPolicy",
            n_envs=16,
            n_timesteps=1_000_000,
            n_steps=16,
            gae_lambda=0.98,
            gamma=0.99,
            n_epochs=4,
            ent_coef=0.0,
        ),
        "Acrobot-v1": dict(
            policy="MlpPolicy",
            n_envs=16,
            n_timesteps=1_000_000,
            n_steps=256,
            gae_lambda=0.94,
            gamma=0.99,
            n_epochs=4,
            ent_coef=0.0,
        ),
        "LunarLander-v3": dict(
            policy="MlpPolicy",
            n_envs=16,
            n_timesteps=1_000_000,
            n_steps=1024,
            batch_size=64,
            gae_lambda=0.98,
            gamma=0.999,
            n_epochs=4,
            ent_coef=0.01,
        ),
    },
}


def hyperparams(game: str, algo: str) -> dict[str, Any]:
    """RL-Zoo's hyperparameters for (game, algo); Atari games share the `atari` entry."""
    spec = resolve_game(game)
    if algo not in HYPERPARAMS:
        raise InputError(f"--algo: expected one of {', '.join(HYPERPARAMS)}, got {algo!r}")
    key = "atari" if spec.is_atari else spec.env_id
    if key not in HYPERPARAMS[algo]:
        raise InputError(f"--algo: no RL-Zoo {algo} hyperparameters for {spec.env_id}")
    return dict(HYPERPARAMS[algo][key])


def _train_env(game: str, n_envs: int, seed: int):
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    spec = resolve_game(game)
    if not spec.is_atari:
        return make_vec_env(spec.env_id, n_envs=n_envs, seed=seed)
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env(f"{spec.name}NoFrameskip-v4", n_envs, seed=seed), 4)


def train_expert(
    game: str,
    algo: str,
    steps: int | None,
    seed: int,
    out: Path,
    eval_episodes: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, save `out` (.zip) and `out`.json (its measured score in our env); return the score."""
    from iq_atari.experts.zoo import algo_class, load_zoo_expert
    from iq_atari.rollout import expert_episodes

    params = hyperparams(game, algo)
    total = int(steps if steps is not None else params.pop("n_timesteps"))
    params.pop("n_timesteps", None)
    n_envs = int(params.pop("n_envs", 1))
    policy = params.pop("policy")
    env = _train_env(game, n_envs, seed)
    model = algo_class(algo)(policy, env, seed=seed, device="cpu", verbose=0, **params)
    start = time.perf_counter()
    model.learn(total_timesteps=total, progress_bar=progress)
    train_s = time.perf_counter() - start
    out = Path(out)
    with atomic_path(out, suffix=".zip") as tmp:  # SB3 appends .zip to other names
        model.save(tmp)
    env.close()
    expert = load_zoo_expert(out, game, algo)
    episodes = expert_episodes(game, expert, eval_episodes, seed=1000 + seed, progress=progress)
    returns = [e.score for e in episodes]
    score = {
        "game": resolve_game(game).env_id,
        "algo": algo,
        "steps": total,
        "seed": seed,
        "train_time_s": round(train_s, 1),
        "eval_seeds": f"{1000 + seed}..{1000 + seed + eval_episodes - 1}",
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "hyperparams": "rl-baselines3-zoo hyperparams/" + algo + ".yml",
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(score, indent=2) + "\n")
    return score
