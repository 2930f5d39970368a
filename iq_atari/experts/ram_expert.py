"""RL experts on RAM features: train PPO on `RamFeatureEnv`, and play it in our pixel env.

`train_ram_expert` trains stable-baselines3 PPO (MLP) on the object features of `ram.py`, in
parallel envs on every core, with a progress bar showing the rolling training return,
TensorBoard logs, and a checkpoint every `checkpoint_every` steps that `resume` continues from.
`RamPolicyExpert` plays the trained policy in any of our envs: it reads the RAM through
`env.unwrapped.ale` after every step, so the demos it records hold our pixel observations while
the expert itself never looks at them. Needs the `zoo` extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.envs import AtariSettings, resolve_game
from iq_atari.errors import InputError
from iq_atari.experts.base import RAM_ALGO
from iq_atari.experts.ram import feature_kind, ram_features
from iq_atari.utils import atomic_path


@dataclass(frozen=True)
class RamPPOConfig:
    """PPO settings for RAM-feature experts: RL-Zoo's Atari PPO with an MLP, a doubled learning
    rate and 128-128 layers, the settings the shipped Pong agent trained with (docs/RESULTS.md,
    Experts)."""

    n_envs: int = 8
    n_steps: int = 128
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 5e-4  # decays linearly to 0 over the run
    clip_range: float = 0.1
    ent_coef: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.95
    net_arch: tuple[int, ...] = (128, 128)
    # Train on the sign of each step's reward, as RL-Zoo's AtariWrapper does; episode returns
    # (the bar, the logs, the evaluation) stay the game's own points.
    clip_reward: bool = False
    # With this probability the env executes a uniformly random action in place of the policy's
    # (the policy's own action is what PPO learns from). An expert trained so keeps margins that
    # an imitator's occasional wrong action does not cost points; measured so far, fine-tunes did
    # not become more robust (docs/RESULTS.md, "Pong: DART from the expert's own actions").
    action_noise: float = 0.0


# Games whose points span a wide range (SpaceInvaders: 5-30 an alien, 200 the mothership) train on
# clipped rewards: unscaled, the value loss dwarfs the policy's and PPO barely moves.
GAME_CONFIGS: dict[str, RamPPOConfig] = {
    "ALE/SpaceInvaders-v5": RamPPOConfig(clip_reward=True),
}


def ram_ppo_config(game: str) -> RamPPOConfig:
    """The PPO settings `make expert` uses for `game`."""
    return GAME_CONFIGS.get(resolve_game(game).env_id, RamPPOConfig())


class RamPolicyExpert:
    """A PPO policy over RAM features, acting greedily in our env (it reads `env.unwrapped.ale`)."""

    def __init__(self, model: Any, path: Path, game: str) -> None:
        self.model = model
        self.name = RAM_ALGO
        self.game = resolve_game(game).env_id
        self._features = ram_features(game, int(model.action_space.n))
        if int(model.observation_space.shape[0]) != self._features.size:
            raise InputError(
                f"{path}: the model expects {model.observation_space.shape[0]} features, "
                f"{resolve_game(game).name}'s RAM map gives {self._features.size}"
            )
        if int(model.action_space.n) != len(self._features.actions):
            raise InputError(
                f"{path}: the model has {model.action_space.n} actions, the RAM agent of "
                f"{resolve_game(game).name} uses {len(self._features.actions)}"
            )
        self.provenance: dict[str, Any] = {
            "kind": "rl",
            "algo": "ppo",
            "observes": f"RAM features ({feature_kind(game)}, {self._features.size} values)",
            "actions": list(self._features.actions),
            **({"canonical_actions": self._features.canonical} if self._features.canonical else {}),
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        score_file = path.with_suffix(".json")
        if score_file.is_file():
            self.provenance["score"] = json.loads(score_file.read_text())

    def reset(self, env: gym.Env) -> None:
        self._features.reset()

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        """Features of the RAM now (the step `obs` came from), then the greedy game action."""
        ram = env.unwrapped.ale.getRAM()
        action, _ = self.model.predict(self._features(ram), deterministic=True)
        return self._features.canonical_action(int(self._features.actions[int(action)]), ram)


def load_ram_expert(path: str | Path, game: str) -> RamPolicyExpert:
    """Load a RAM-feature PPO checkpoint (.zip) as an expert for `game`; bad files: InputError."""
    from iq_atari.experts.zoo import CUSTOM_OBJECTS, UNREADABLE, algo_class

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--expert: no such file {str(path)!r}")
    try:
        model = algo_class("ppo").load(path, device="cpu", custom_objects=CUSTOM_OBJECTS)
    except UNREADABLE as err:
        raise InputError(f"{path}: not a readable PPO checkpoint ({err})") from err
    return RamPolicyExpert(model, path, game)


def _vec_env(
    game: str,
    n_envs: int,
    seed: int,
    settings: AtariSettings,
    subprocesses: bool,
    clip_reward: bool = False,
    action_noise: float = 0.0,
):
    """n_envs RamFeatureEnvs: each in its own process (SB3 SubprocVecEnv) with `subprocesses`,
    else all in this one (DummyVecEnv).

    With `clip_reward` the learner sees sign(reward); SB3's Monitor sits inside the clipping, so
    the episode returns it records are the game's points. With `action_noise` p each env executes
    a uniformly random action instead of the given one with probability p.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from iq_atari.experts.ram import RamFeatureEnv

    def factory() -> gym.Env:
        return RamFeatureEnv(game, settings)

    return make_vec_env(
        factory,
        n_envs=n_envs,
        seed=seed,
        vec_env_cls=SubprocVecEnv if subprocesses else DummyVecEnv,
        vec_env_kwargs={"start_method": "fork"} if subprocesses else None,
        wrapper_class=lambda env: _wrap(env, clip_reward, action_noise),
    )


def _wrap(env: gym.Env, clip_reward: bool, action_noise: float) -> gym.Env:
    if action_noise > 0:
        env = RandomActions(env, action_noise)
    if clip_reward:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return env


class RandomActions(gym.ActionWrapper):
    """With `probability`, execute a uniformly random action instead of the given one. The draws
    come from a generator of their own, reseeded from the seed `reset` is given."""

    def __init__(self, env: gym.Env, probability: float) -> None:
        super().__init__(env)
        self.probability = probability
        self._perturb = self._noise(np.random.default_rng())

    def _noise(self, rng: np.random.Generator):
        from iq_atari.rollout import random_action_noise

        return random_action_noise(self.probability, int(self.action_space.n), rng)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._perturb = self._noise(np.random.default_rng([seed, 2]))
        return super().reset(seed=seed, options=options)

    def action(self, action: Any) -> int:
        return self._perturb(int(action))


def _callbacks(total: int, checkpoint: Path, every: int, progress: bool):
    """A tqdm bar with the rolling training return, and atomic periodic checkpoints."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=total,
                initial=self.model.num_timesteps,
                unit="step",
                desc="ppo-ram",
                disable=not progress,
                smoothing=0.05,
            )
            self.last_save = self.model.num_timesteps

        def _on_step(self) -> bool:
            done = self.model.num_timesteps - self.bar.n
            self.bar.update(done)
            episodes = [e["r"] for e in self.model.ep_info_buffer]
            if episodes:
                self.bar.set_postfix(ret10=f"{np.mean(episodes[-10:]):.1f}", refresh=False)
            if self.model.num_timesteps - self.last_save >= every:
                self.last_save = self.model.num_timesteps
                save_model(self.model, checkpoint)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return Progress()


def save_model(model: Any, path: Path) -> None:
    """Save an SB3 model atomically at `path` (.zip), readable by all."""
    with atomic_path(path, suffix=".zip") as tmp:  # SB3 appends .zip to other names
        model.save(tmp)


def train_ram_expert(
    game: str,
    steps: int,
    seed: int,
    out: Path,
    *,
    config: RamPPOConfig | None = None,
    settings: AtariSettings | None = None,
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 200_000,
    log_dir: Path | None = None,
    restart_lr: float | None = None,
) -> tuple[Any, float]:
    """Train PPO on RAM features for `steps` agent steps; save `out`; return (model, seconds).

    Checkpoints go to `out` with the suffix `.ckpt.zip` every `checkpoint_every` steps; with
    `resume`, training continues from that file (its step count, schedule and optimizer), and
    `restart_lr` replaces the schedule by one from that rate linearly to 0 over the steps left.
    """
    import torch
    from stable_baselines3 import PPO

    config = config or ram_ppo_config(game)
    if not 0.0 <= config.action_noise < 1.0:
        raise InputError(
            f"--action-noise: expected a probability in [0, 1), got {config.action_noise:g}"
        )
    if restart_lr is not None and not resume:
        raise InputError("--restart-lr: only with --resume (a new run decays from its own rate)")
    settings = settings or AtariSettings()
    out = Path(out)
    checkpoint = out.with_name(out.stem + ".ckpt.zip")
    # SubprocVecEnv runs one process per env: with fewer cores than envs the processes contend and
    # the per-step pipes cost more than they save (docs/RESULTS.md, "Envs in one process").
    subprocesses = (os.cpu_count() or 1) >= config.n_envs
    torch.set_num_threads(1)  # an MLP this small gains nothing from more threads
    env = _vec_env(
        game, config.n_envs, seed, settings, subprocesses, config.clip_reward, config.action_noise
    )
    lr = config.learning_rate

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * lr

    if resume:
        if not checkpoint.is_file():
            raise InputError(f"--resume: no checkpoint {checkpoint} to resume from")
        from iq_atari.experts.zoo import UNREADABLE

        try:
            model = PPO.load(checkpoint, env=env, device="cpu")
        except UNREADABLE as err:
            raise InputError(f"{checkpoint}: not a readable PPO checkpoint ({err})") from err
        if int(model.observation_space.shape[0]) != int(env.observation_space.shape[0]):
            raise InputError(f"{checkpoint}: trained on another game's features")
        # A loaded model keeps the TensorBoard directory it was trained with, which may not be
        # this machine's: log where this run was asked to.
        model.tensorboard_log = str(log_dir) if log_dir else None
        if restart_lr is not None:
            # SB3's progress runs from 1 - done / steps to 0 over the steps left. The schedule is
            # saved with the model: a plain --resume of this run goes on with it.
            left = max(1.0 - model.num_timesteps / steps, 1e-9)
            model.learning_rate = lambda progress: restart_lr * progress / left
            model._setup_lr_schedule()
    else:
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            n_epochs=config.n_epochs,
            learning_rate=schedule,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            policy_kwargs={"net_arch": list(config.net_arch)},
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(log_dir) if log_dir else None,
        )
    start = time.perf_counter()
    try:
        # SB3 adds the steps already done when not resetting: ask only for the rest.
        model.learn(
            total_timesteps=max(steps - model.num_timesteps, 0) if resume else steps,
            callback=_callbacks(steps, checkpoint, checkpoint_every, progress),
            reset_num_timesteps=not resume,
            tb_log_name="ppo-ram",
        )
    except KeyboardInterrupt:
        save_model(model, checkpoint)
        env.close()
        raise
    seconds = time.perf_counter() - start
    save_model(model, checkpoint)
    save_model(model, out)
    env.close()
    return model, seconds


def evaluate_ram_policy(
    model: Any,
    game: str,
    episodes: int,
    seed: int,
    settings: AtariSettings | None = None,
    progress: bool = True,
) -> list[float]:
    """Greedy scores of `model` over `episodes` games of `RamFeatureEnv`, game i from seed + i.

    The env replays exactly our pixel env's emulation (tests/test_ram_expert.py checks), without
    drawing the screen, so this is the expert's score in our env at a fraction of the cost.
    """
    from tqdm import tqdm

    from iq_atari.experts.ram import RamFeatureEnv

    env = RamFeatureEnv(game, settings or AtariSettings())
    scores = []
    try:
        for i in tqdm(range(episodes), desc="evaluate", unit="game", disable=not progress):
            obs, _ = env.reset(seed=seed + i)
            score, done = 0.0, False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                score += reward
                done = terminated or truncated
            scores.append(score)
    finally:
        env.close()
    return scores
