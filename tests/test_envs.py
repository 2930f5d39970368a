"""Environments: spaces, name resolution, single-vs-vector equality, seeding, raw returns."""

import numpy as np
import pytest

from iq_atari.envs import (
    AtariSettings,
    GameNameError,
    OverlappedAtariVecEnv,
    make_env,
    make_vec_env,
    rebuild_stacks,
    resolve_game,
    stack_indices,
)
from iq_atari.errors import InputError

DETERMINISTIC = AtariSettings(sticky_actions=0.0, noop_max=0)


@pytest.mark.parametrize(
    ("name", "env_id"),
    [
        ("Pong", "ALE/Pong-v5"),
        ("pong", "ALE/Pong-v5"),
        ("ALE/Pong-v5", "ALE/Pong-v5"),
        ("PongNoFrameskip-v4", "ALE/Pong-v5"),
        ("BreakoutNoFrameskip-v4", "ALE/Breakout-v5"),
        ("space_invaders", "ALE/SpaceInvaders-v5"),
        ("CartPole-v1", "CartPole-v1"),
        ("cartpole", "CartPole-v1"),
        ("Acrobot-v1", "Acrobot-v1"),
        ("MountainCar-v0", "MountainCar-v0"),
        ("LunarLander-v3", "LunarLander-v3"),
    ],
)
def test_names_resolve(name, env_id):
    assert resolve_game(name).env_id == env_id


def test_unknown_name_suggests_close_matches():
    with pytest.raises(GameNameError, match=r"unknown game 'Pongg'.*closest matches: Pong") as err:
        resolve_game("Pongg")
    assert isinstance(err.value, InputError)
    assert "\n" not in str(err.value)
    with pytest.raises(GameNameError, match="CartPole-v1"):
        resolve_game("cartpol")


def test_atari_spaces_and_dtypes():
    env = make_env("Pong", seed=0)
    obs, _ = env.reset()
    assert env.observation_space.shape == (4, 84, 84)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.action_space.n == 6
    obs, reward, terminated, truncated, _ = env.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    # Preprocessing settings are the ones we asked for, not the env's v5 defaults.
    assert env.unwrapped._frameskip == 1
    sticky = "repeat_action_probability"
    assert env.unwrapped.ale.getFloat(sticky) == 0.25
    assert make_env("Pong", settings=DETERMINISTIC).unwrapped.ale.getFloat(sticky) == 0.0


@pytest.mark.parametrize(
    ("game", "shape", "n"),
    [("CartPole-v1", (4,), 2), ("Acrobot-v1", (6,), 3), ("MountainCar-v0", (2,), 3)],
)
def test_classic_spaces(game, shape, n):
    env = make_env(game, seed=0)
    obs, _ = env.reset()
    assert obs.shape == shape and obs.dtype == np.float32
    assert env.action_space.n == n


def test_lunar_lander_resolves_and_runs():
    pytest.importorskip("Box2D")
    env = make_env("LunarLander-v3", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (8,) and env.action_space.n == 4


def test_single_and_vector_envs_give_identical_observations():
    """Every step of a 200-step episode, first (zero-padded) stacks included."""
    env = make_env("Pong", seed=0, settings=DETERMINISTIC)
    venv = make_vec_env("Pong", 1, seed=0, settings=DETERMINISTIC, num_threads=1)
    obs, _ = env.reset()
    vobs, _ = venv.reset()
    rng = np.random.default_rng(0)
    for step in range(200):
        np.testing.assert_array_equal(obs, vobs[0], err_msg=f"step {step}")
        action = int(rng.integers(env.action_space.n))
        obs, reward, *_ = env.step(action)
        vobs, vreward, *_ = venv.step(np.array([action]))
        assert reward == vreward[0]
    assert vobs.dtype == np.uint8 and vobs.shape == (1, 4, 84, 84)


def _rollout(env, actions):
    obs, _ = env.reset()
    seen = [obs]
    rewards = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        seen.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(seen), np.array(rewards)


def test_seeding_is_reproducible_with_sticky_actions_and_noops():
    actions = np.random.default_rng(1).integers(6, size=150)
    obs_a, rew_a = _rollout(make_env("Pong", seed=7), actions)
    obs_b, rew_b = _rollout(make_env("Pong", seed=7), actions)
    obs_c, _ = _rollout(make_env("Pong", seed=8), actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a, obs_c)


def test_vector_env_seeding_is_reproducible():
    def run(seed):
        venv = make_vec_env("Breakout", 2, seed=seed, num_threads=1)
        obs, _ = venv.reset()
        for _ in range(30):
            obs, *_ = venv.step(venv.action_space.sample())
        return obs

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_frame_stack_rebuilds_from_single_frames():
    obs_seen, _ = _rollout(make_env("Pong", seed=0), np.full(40, 2))
    frames = obs_seen[:, -1]  # the newest frame of each stack, T+1 of them
    np.testing.assert_array_equal(rebuild_stacks(frames, 4), obs_seen)
    assert stack_indices(0, 4).tolist() == [-1, -1, -1, 0]
    assert stack_indices(5, 4).tolist() == [2, 3, 4, 5]


def test_returns_are_raw_whole_game_scores_with_life_loss_terminals():
    """SpaceInvaders pays 5..30 per alien: a clipped reward would be 1. With life-loss terminals
    the learning episodes end at each lost life, but the recorded return is the whole game's."""
    settings = AtariSettings(terminal_on_life_loss=True)
    env = make_env("SpaceInvaders", seed=0, settings=settings)
    rng = np.random.default_rng(0)
    total, life_terminals, rewards = 0.0, 0, []
    env.reset()
    for _ in range(20):  # a random game ends in well under 20 lives
        while True:
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(6)))
            rewards.append(reward)
            total += reward
            if terminated or truncated:
                break
        if "episode" in info:  # the real end of the game
            break
        life_terminals += 1
        env.reset()
    assert max(rewards) > 1, "rewards must be raw, not clipped"
    assert life_terminals >= 2, "terminal_on_life_loss should end a learning episode per life"
    assert info["episode"]["r"] == pytest.approx(total)


def test_vector_env_returns_are_raw():
    venv = make_vec_env("SpaceInvaders", 2, seed=0, num_threads=1)
    venv.reset()
    rewards = []
    for _ in range(300):
        _, reward, *_ = venv.step(venv.action_space.sample())
        rewards.append(reward)
    assert np.max(rewards) > 1


def test_fire_reset_starts_breakout():
    env = make_env("Breakout", seed=0, settings=AtariSettings(fire_reset=True, noop_max=0))
    env.reset()
    ball_in_play = env.unwrapped.ale.getRAM()[101] != 0
    plain = make_env("Breakout", seed=0, settings=AtariSettings(noop_max=0))
    plain.reset()
    assert ball_in_play and plain.unwrapped.ale.getRAM()[101] == 0


def test_vector_env_rejects_life_loss_terminals():
    with pytest.raises(ValueError, match="make_env only"):
        make_vec_env("Breakout", 2, settings=AtariSettings(terminal_on_life_loss=True))


def observation_policy(obs: np.ndarray) -> np.ndarray:
    """Deterministic actions that depend on the observation, so any divergence compounds."""
    return (obs[:, -1, 30:60].sum(axis=(1, 2), dtype=np.int64) % 6).astype(np.int64)


def test_overlapped_vec_env_steps_as_make_vec_env():
    """Same seeds and policy: every step's obs, rewards and ends, and the episode returns, equal
    the plain vector env's, across truncation autoresets and with uneven halves (1 + 2 envs)."""
    settings = AtariSettings(max_episode_frames=600)  # episodes of ~150 agent steps
    plain = make_vec_env("SpaceInvaders", 3, seed=5, settings=settings)
    overlapped = OverlappedAtariVecEnv("SpaceInvaders", 3, seed=5, settings=settings)
    obs, _ = plain.reset()
    obs_o, _ = overlapped.reset()
    np.testing.assert_array_equal(obs, obs_o)
    returns, returns_o, autoresets = [], [], 0
    for step in range(200):
        actions = observation_policy(obs)
        obs, rewards, terminated, truncated, infos = plain.step(actions)
        taken, obs_o, rewards_o, terminated_o, truncated_o, infos_o = overlapped.step(
            observation_policy
        )
        np.testing.assert_array_equal(taken, actions, err_msg=f"step {step}")
        np.testing.assert_array_equal(obs_o, obs, err_msg=f"step {step}")
        np.testing.assert_array_equal(rewards_o, rewards)
        np.testing.assert_array_equal(terminated_o, terminated)
        np.testing.assert_array_equal(truncated_o, truncated)
        autoresets += int((terminated | truncated).sum())
        if "episode" in infos:
            returns += infos["episode"]["r"][infos["_episode"]].tolist()
            np.testing.assert_array_equal(infos_o["_episode"], infos["_episode"])
            np.testing.assert_array_equal(infos_o["episode"]["l"], infos["episode"]["l"])
        if "episode" in infos_o:
            returns_o += infos_o["episode"]["r"][infos_o["_episode"]].tolist()
    overlapped.close()
    plain.close()
    assert autoresets >= 3 and len(returns) == autoresets
    assert returns_o == returns and max(returns) > 0


def test_overlapped_vec_env_bad_use():
    with pytest.raises(ValueError, match="not an Atari game"):
        OverlappedAtariVecEnv("CartPole", 2)
    with pytest.raises(ValueError, match="n_envs >= 2"):
        OverlappedAtariVecEnv("Pong", 1)
    envs = OverlappedAtariVecEnv("Pong", 2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(observation_policy)
    envs.reset()
    envs.step(observation_policy)  # leaves the next step in flight
    envs.close()  # receives it first; closing with a step in flight must not hang or crash
