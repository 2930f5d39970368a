"""Experts: lookup, classic-control scores, the Atari planners' behaviour, the SB3 loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iq_atari.envs import AtariSettings, make_env
from iq_atari.episodes import run_episode
from iq_atari.errors import InputError
from iq_atari.experts import Expert, available_experts, default_expert_name, get_expert
from iq_atari.rollout import expert_episodes


def test_default_experts() -> None:
    assert default_expert_name("CartPole-v1") == "controller"
    assert default_expert_name("pong") == "ppo-ram"  # the shipped RAM agent
    assert get_expert("pong", "scripted").name == "planner"
    assert "tracker" in available_experts("pong")
    assert default_expert_name("ALE/Breakout-v5") == "ppo-ram"
    assert get_expert("Breakout", "scripted").name == "tracker"
    assert default_expert_name("Seaquest") is None
    assert "random" in available_experts("Seaquest")
    for game in ("CartPole", "Acrobot", "MountainCar", "LunarLander", "Pong", "Breakout"):
        expert = get_expert(game, "scripted")
        assert isinstance(expert, Expert) and expert.provenance["kind"] == "scripted"
    assert get_expert("Pong").provenance["kind"] == "rl"


def test_unknown_expert_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no default expert; pass EXPERT="):
        get_expert("Seaquest")
    with pytest.raises(InputError, match="unknown expert 'nope' for CartPole; known: controller"):
        get_expert("CartPole", "nope")
    with pytest.raises(InputError, match="no such file"):
        get_expert("CartPole", str(tmp_path / "missing.zip"))


@pytest.mark.parametrize(
    ("game", "threshold"),
    [("CartPole", 500), ("Acrobot", -90), ("MountainCar", -120), ("LunarLander", 200)],
)
def test_classic_experts_reach_targets(game: str, threshold: float) -> None:
    episodes = expert_episodes(game, get_expert(game), 10, seed=0, progress=False)
    returns = [e.score for e in episodes]
    assert np.mean(returns) >= threshold, returns
    random_returns = [
        e.score for e in expert_episodes(game, get_expert(game, "random"), 3, 0, progress=False)
    ]
    assert np.mean(returns) > np.mean(random_returns)


def _play(game: str, expert: Expert, steps: int, seed: int) -> tuple[list[int], float, list]:
    env = make_env(game, settings=AtariSettings(max_episode_frames=4 * steps))
    episode = run_episode(
        env, lambda obs: expert.act(obs, env), seed, on_reset=lambda: expert.reset(env)
    )
    return list(episode.trajectory.actions), episode.score, episode.trajectory


@pytest.mark.parametrize(("game", "seed", "min_score"), [("Pong", 5, 1), ("Breakout", 0, 5)])
def test_lookahead_leaves_the_game_unchanged(game: str, seed: int, min_score: int) -> None:
    """Look-ahead restores the emulator, its RNG and ALE's sticky-repeat action: replaying the
    expert's actions in a fresh env from the same seed gives exactly the same frames, so demos
    are ordinary play of the standard env."""
    expert = get_expert(game, "scripted")
    actions, score, traj = _play(game, expert, 250, seed=seed)
    assert score >= min_score  # within the first 1000 frames
    if game == "Breakout":
        assert actions[0] == 1  # FIRE: no ball in play after reset
    replay_env = make_env(game, settings=AtariSettings(max_episode_frames=1000))
    it = iter(actions)
    replay = run_episode(replay_env, lambda obs: next(it), seed=seed)
    np.testing.assert_array_equal(replay.trajectory.obs, traj.obs)
    assert "cloneState(include_rng=True)" in expert.provenance["note"]


def test_sticky_repeat_action_is_not_in_the_clone() -> None:
    """Why the experts track ALE's repeated action: a simulation between real steps changes the
    continuation when only cloneState(include_rng=True) / restoreState is used (ale-py 0.12.1).
    If this starts failing, ALE restores that action itself and the tracking is redundant."""

    def frames(simulate: bool) -> np.ndarray:
        env = make_env("Pong")
        obs, _ = env.reset(seed=3)
        ale, raw = env.unwrapped.ale, env.unwrapped._action_set
        rng, out = np.random.default_rng(0), [obs]
        for _ in range(40):
            if simulate:
                state = ale.cloneState(include_rng=True)
                for _ in range(12):
                    ale.act(raw[0])
                ale.restoreState(state)
            out.append(env.step(int(rng.integers(6)))[0])
        return np.array(out)

    assert not np.array_equal(frames(False), frames(True))


def _actions_under_other_rng(expert_name: str, steps: int) -> tuple[int, list[int], list]:
    """Play Pong with `expert_name` while a second copy of it acts in an env that is given the
    same emulator state (without the RNG) every step but has its own sticky-action seed.
    Returns how many of the two copies' actions differ, the actions and the observations."""
    env, twin_env = make_env("Pong"), make_env("Pong")
    obs, _ = env.reset(seed=5)
    twin_env.reset(seed=99)
    expert, copy = get_expert("Pong", expert_name), get_expert("Pong", expert_name)
    expert.reset(env)
    copy.reset(twin_env)
    differ, actions, frames = 0, [], [obs]
    for _ in range(steps):
        twin_env.unwrapped.ale.restoreState(env.unwrapped.ale.cloneState())
        action = expert.act(obs, env)
        differ += action != copy.act(obs, twin_env)
        actions.append(action)
        obs, *_ = env.step(action)
        twin_env.step(action)
        frames.append(obs)
    return differ, actions, frames


def test_pong_tracker_has_no_foresight() -> None:
    """The tracker's action is a function of the emulator state without its RNG: a copy given
    the same state in an env with other sticky-action draws acts the same at every step (the
    planner, which foresees its draws, does not). Its games are ordinary play: replaying the
    actions in a fresh env gives the same frames."""
    differ, actions, frames = _actions_under_other_rng("tracker", 300)
    assert differ == 0 and set(actions) == {0, 2, 3}
    replay_env = make_env("Pong")
    obs, _ = replay_env.reset(seed=5)
    replayed = [obs] + [replay_env.step(a)[0] for a in actions]
    np.testing.assert_array_equal(np.array(replayed), np.array(frames))
    assert _actions_under_other_rng("planner", 300)[0] > 0


def test_pong_planner_uses_only_noop_up_down() -> None:
    actions, _, _ = _play("Pong", get_expert("Pong"), 60, seed=0)
    assert set(actions) <= {0, 2, 3} and len(set(actions)) >= 2


# ---- stable-baselines3 checkpoints ---------------------------------------------------------------


def test_sb3_vector_checkpoint_round_trip(tmp_path: Path, one_torch_thread, monkeypatch) -> None:
    from stable_baselines3 import PPO

    import iq_atari.demo_library

    model = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(128)
    path = tmp_path / "experts" / "ppo-CartPole-v1.zip"  # as `make expert` names it
    model.save(path)
    expert = get_expert("CartPole", str(path))
    assert expert.provenance["kind"] == "sb3" and expert.provenance["algo"] == "ppo"
    assert expert.name == "ppo-CartPole-v1"
    monkeypatch.setattr(iq_atari.demo_library, "DEMO_DIR", tmp_path)  # shipped: usable by algo name
    assert list(available_experts("CartPole")) == ["controller", "ppo", "random"]
    assert get_expert("CartPole", "ppo").provenance["sha256"] == expert.provenance["sha256"]
    env = make_env("CartPole", seed=0)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(50):
        theirs, _ = model.predict(obs, deterministic=True)
        assert expert.act(obs, env) == int(theirs)
        obs, _, term, trunc, _ = env.step(int(rng.integers(2)))
        if term or trunc:
            obs, _ = env.reset()


@pytest.fixture
def one_torch_thread():
    """SB3 training in tests on 2 shared cores: one thread avoids oversubscription stalls."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sb3_atari_checkpoint_layout(tmp_path: Path, one_torch_thread) -> None:
    """A DQN trained on SB3's AtariWrapper + VecFrameStack (channel-last (84, 84, 4) stacks):
    our expert, given our channel-first stacks, feeds the network the same tensor SB3 builds from
    the channel-last stack, and acts as SB3's predict does."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    sb3_env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4)
    assert sb3_env.observation_space.shape == (84, 84, 4)
    model = DQN(
        "CnnPolicy",
        sb3_env,
        buffer_size=300,
        learning_starts=100,
        train_freq=20,
        seed=0,
        device="cpu",
    )
    model.learn(160)  # a few gradient steps
    path = tmp_path / "dqn-PongNoFrameskip-v4.zip"
    model.save(path)
    sb3_env.close()

    expert = get_expert("Pong", str(path))
    assert expert.provenance["algo"] == "dqn"
    env = make_env("Pong", seed=0)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(20):
        channel_last = np.transpose(obs, (1, 2, 0))
        theirs = model.policy.obs_to_tensor(channel_last)[0]
        ours = expert.model.policy.obs_to_tensor(expert.sb3_obs(obs))[0]
        assert torch.equal(ours, theirs)
        assert expert.act(obs, env) == int(model.predict(channel_last, deterministic=True)[0])
        obs, *_ = env.step(int(rng.integers(6)))


def test_sb3_wrong_env_refused(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "Acrobot-v1", n_steps=32, batch_size=32, n_epochs=1, device="cpu")
    path = tmp_path / "ppo-Acrobot-v1.zip"
    model.save(path)
    with pytest.raises(InputError, match="the model has 3 actions, CartPole has 2"):
        get_expert("CartPole", str(path))
    junk = tmp_path / "dqn-junk.zip"
    junk.write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load"):
        get_expert("CartPole", str(junk))


def test_expert_runner_trains_and_scores(tmp_path: Path, one_torch_thread) -> None:
    from runners.expert import main

    out = tmp_path / "cartpole_dqn.zip"
    assert (
        main(
            [
                "--game",
                "CartPole",
                "--algo",
                "dqn",
                "--steps",
                "300",
                "--out",
                str(out),
                "--eval-episodes",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    score = json.loads(out.with_suffix(".json").read_text())
    assert score["algo"] == "dqn" and len(score["returns"]) == 2 and score["steps"] == 300
    expert = get_expert("CartPole", str(out))
    assert expert.provenance["score"]["mean_return"] == score["mean_return"]


def test_breakout_score_from_ram() -> None:
    from iq_atari.experts.atari_scripted import BREAKOUT_MAX_SCORE, _breakout_score

    ram = np.zeros(128, np.uint8)
    ram[76], ram[77] = 0x08, 0x64  # BCD: 8 hundreds, 64
    assert _breakout_score(ram) == BREAKOUT_MAX_SCORE == 864
