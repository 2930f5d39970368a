"""The online collector: the overlapped Atari path stores exactly what the plain path stores."""

from __future__ import annotations

import numpy as np
from gymnasium.spaces import Box

from iq_atari.buffers import FrameBuffer
from iq_atari.collector import Collector
from iq_atari.config import TrainConfig
from iq_atari.envs import AtariSettings, make_vec_env

SETTINGS = AtariSettings(max_episode_frames=600)  # episodes of ~150 agent steps
OBS_SPACE = Box(0, 255, (4, 84, 84), np.uint8)


class ObservationPolicy:
    """A deterministic stand-in learner whose actions depend on the observation."""

    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray:
        return (obs[:, -1, 30:60].sum(axis=(1, 2), dtype=np.int64) % 6).astype(np.int64)


def plain_replay(config: TrainConfig, steps: int) -> tuple[FrameBuffer, list[float]]:
    """What a synchronous step-then-act loop over make_vec_env stores."""
    envs = make_vec_env(config.game, config.n_envs, seed=config.seed, settings=SETTINGS)
    buffer = FrameBuffer(config.replay_size, OBS_SPACE.shape, n_envs=config.n_envs)
    obs, _ = envs.reset()
    buffer.start(obs)
    autoreset = np.zeros(config.n_envs, dtype=bool)
    returns: list[float] = []
    for _ in range(steps):
        actions = ObservationPolicy().act(obs, greedy=False)
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        buffer.add(actions, rewards, terminated, truncated, obs, autoreset)
        autoreset = terminated | truncated
        if "episode" in infos:
            returns += infos["episode"]["r"][infos["_episode"]].tolist()
    envs.close()
    return buffer, returns


def test_overlapped_collector_stores_what_the_plain_loop_stores():
    # 3 envs (uneven halves), 120 slots per env stream: 200 steps wrap the ring.
    config = TrainConfig(game="SpaceInvaders", mode="online", n_envs=3, seed=5, replay_size=360)
    collector = Collector(config, SETTINGS, OBS_SPACE)
    assert collector.overlapped
    learner = ObservationPolicy()
    for _ in range(200):
        collector.step(learner)
    reference, returns = plain_replay(config, 200)
    got = collector.buffer
    for field in ("frames", "t", "actions", "rewards", "terminated", "truncated", "has_next"):
        np.testing.assert_array_equal(getattr(got, field), getattr(reference, field), field)
    assert (got.pos, got.count) == (reference.pos, reference.count)
    # Autoreset rows are no transitions: 200 steps per env less one per finished episode.
    assert len(returns) >= 3 and collector.steps == 3 * 200 - len(returns)
    assert collector.episode_returns == returns and max(returns) > 0
    batch = got.sample(256, np.random.default_rng(0))
    expected = reference.sample(256, np.random.default_rng(0))
    np.testing.assert_array_equal(batch.obs, expected.obs)
    np.testing.assert_array_equal(batch.next_obs, expected.next_obs)
    collector.close()  # one step is in flight; close receives it first


def test_classic_and_single_env_collectors_are_plain():
    cartpole = TrainConfig(game="CartPole", mode="online", n_envs=2, replay_size=100)
    pong = TrainConfig(game="Pong", mode="online", n_envs=1, replay_size=100)
    vector = Box(-np.inf, np.inf, (4,), np.float32)
    for config, settings, space in ((cartpole, None, vector), (pong, AtariSettings(), OBS_SPACE)):
        collector = Collector(config, settings, space)
        assert not collector.overlapped
        collector.close()
