"""FrameBuffer: every sampled stack equals the one a naive stored-stack buffer holds, across
episode ends, NEXT_STEP autoresets and the ring's wrap-around; terminated vs truncated apart."""

import numpy as np
import pytest

from iq_atari.buffers import BufferMemoryError, FrameBuffer, expert_buffer
from iq_atari.demos import Trajectory
from iq_atari.envs import rebuild_stacks
from iq_atari.errors import InputError

K, H, W = 4, 2, 2


def frame(uid: int) -> np.ndarray:
    """A 2x2 uint8 frame that encodes a unique id (base 256), never all zeros."""
    return np.frombuffer(int(uid + 1).to_bytes(4, "little"), dtype=np.uint8).reshape(H, W)


def frame_id(f: np.ndarray) -> int:
    return int.from_bytes(f.astype(np.uint8).tobytes(), "little") - 1


class NaiveVecEnv:
    """Streams of frame-stacked observations like gymnasium's NEXT_STEP autoreset vector envs,
    and a naive replay list of (obs stack, action, reward, next stack, terminated, truncated)."""

    def __init__(self, n_envs: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.n = n_envs
        self.uid = 0
        self.stacks = np.zeros((n_envs, K, H, W), np.uint8)
        self.done = np.zeros(n_envs, bool)
        self.transitions = {}  # newest-frame id of obs -> transition
        self.env_of = {}
        for i in range(n_envs):
            self._reset(i)

    def _new_frame(self, i):
        self.env_of[self.uid] = i
        self.uid += 1
        return frame(self.uid - 1)

    def _reset(self, i):
        self.stacks[i] = 0  # zero padding before an episode's first frame
        self.stacks[i, -1] = self._new_frame(i)

    def step(self, actions):
        rewards = self.rng.standard_normal(self.n).astype(np.float32)
        terminated = self.rng.random(self.n) < 0.08
        truncated = ~terminated & (self.rng.random(self.n) < 0.05)
        autoreset = self.done.copy()
        for i in range(self.n):
            if autoreset[i]:  # the action is ignored, the obs is a fresh reset
                self._reset(i)
                rewards[i], terminated[i], truncated[i] = 0.0, False, False
                continue
            obs = self.stacks[i].copy()
            self.stacks[i] = np.concatenate([obs[1:], self._new_frame(i)[None]])
            self.transitions[frame_id(obs[-1])] = (
                obs,
                actions[i],
                rewards[i],
                self.stacks[i].copy(),
                terminated[i],
                truncated[i],
            )
        self.done = terminated | truncated
        return self.stacks.copy(), rewards, terminated, truncated, autoreset


def fill(buffer: FrameBuffer, env: NaiveVecEnv, steps: int, rng) -> None:
    buffer.start(env.stacks.copy())
    for _ in range(steps):
        actions = rng.integers(0, 6, env.n)
        obs, rewards, terminated, truncated, autoreset = env.step(actions)
        buffer.add(actions, rewards, terminated, truncated, obs, autoreset)


@pytest.mark.parametrize(("n_envs", "capacity", "steps"), [(1, 500, 300), (3, 120, 400)])
def test_sampled_transitions_match_a_naive_stored_stack_buffer(n_envs, capacity, steps):
    rng = np.random.default_rng(0)
    env = NaiveVecEnv(n_envs, seed=1)
    buffer = FrameBuffer(capacity, (K, H, W), np.uint8, n_envs=n_envs)
    fill(buffer, env, steps, rng)
    batch = buffer.sample(20_000, np.random.default_rng(2))
    seen = set()
    for i in range(len(batch)):
        uid = frame_id(batch.obs[i, -1])
        obs, action, reward, next_obs, terminated, truncated = env.transitions[uid]
        np.testing.assert_array_equal(batch.obs[i], obs)
        np.testing.assert_array_equal(batch.next_obs[i], next_obs)
        assert batch.actions[i] == action and batch.rewards[i] == reward
        assert batch.terminated[i] == terminated and batch.truncated[i] == truncated
        seen.add(uid)
    # Exactly the transitions whose frames (whole stack and next obs) are still held are drawn.
    held = {uid for uid in env.transitions}
    if steps + 1 > buffer.slots:  # the ring wrapped: old frames were overwritten
        newest = env.uid
        held = set()
        for uid, (obs, *_rest, next_obs, _t, _tr) in env.transitions.items():
            ids = [frame_id(f) for f in obs if f.any()] + [frame_id(next_obs[-1])]
            per_env = [u for u in range(newest) if env.env_of[u] == env.env_of[uid]]
            kept = set(per_env[-buffer.slots :])
            if all(u in kept for u in ids):
                held.add(uid)
    assert seen == held
    assert len(buffer) >= len(held)


def test_terminated_and_truncated_are_kept_apart():
    rng = np.random.default_rng(3)
    env = NaiveVecEnv(2, seed=4)
    buffer = FrameBuffer(2000, (K, H, W), np.uint8, n_envs=2)
    fill(buffer, env, 600, rng)
    batch = buffer.sample(5000, rng)
    assert batch.terminated.any() and batch.truncated.any()
    assert not (batch.terminated & batch.truncated).any()
    # The next observation after a time-limit end is the real last obs, not a reset.
    i = np.flatnonzero(batch.truncated)[0]
    np.testing.assert_array_equal(batch.next_obs[i, :-1], batch.obs[i, 1:])


def _trajectory(start_uid, length, terminated):
    frames = np.stack([frame(start_uid + t) for t in range(length + 1)])
    return Trajectory(
        frames,
        np.arange(length) % 3,
        np.arange(length, dtype=np.float32),
        terminated,
        not terminated,
    )


def test_expert_buffer_rebuilds_the_demo_stacks():
    episodes = [_trajectory(0, 7, True), _trajectory(100, 2, False), _trajectory(200, 5, True)]
    buffer = expert_buffer(episodes, frame_stack=K)
    assert len(buffer) == 7 + 2 + 5 and buffer.frames.shape == (1, 8 + 3 + 6, H, W)
    expected = {}
    for ep in episodes:
        stacks = rebuild_stacks(ep.obs, K)  # what the env wrapper gives, per demos.py
        for t in range(len(ep)):
            last = t == len(ep) - 1
            expected[frame_id(ep.obs[t])] = (
                stacks[t],
                stacks[t + 1],
                ep.actions[t],
                ep.rewards[t],
                ep.terminated and last,
                ep.truncated and last,
            )
    batch = buffer.sample(3000, np.random.default_rng(0))
    seen = set()
    for i in range(len(batch)):
        obs, next_obs, action, reward, terminated, truncated = expected[frame_id(batch.obs[i, -1])]
        np.testing.assert_array_equal(batch.obs[i], obs)
        np.testing.assert_array_equal(batch.next_obs[i], next_obs)
        assert (batch.actions[i], batch.rewards[i]) == (action, reward)
        assert (batch.terminated[i], batch.truncated[i]) == (terminated, truncated)
        seen.add(frame_id(batch.obs[i, -1]))
    assert seen == set(expected)  # every transition, none across an episode end

    initial = buffer.initial_obs()
    assert initial.shape == (3, K, H, W)
    np.testing.assert_array_equal(initial[:, :-1], 0)
    assert [frame_id(f) for f in initial[:, -1]] == [0, 100, 200]


def test_subsampled_expert_buffer_keeps_every_kth_transition_with_whole_stacks():
    episodes = [_trajectory(0, 20, True), _trajectory(100, 9, False)]
    buffer = expert_buffer(episodes, frame_stack=K, subsample=4, rng=np.random.default_rng(0))
    batch = buffer.sample(2000, np.random.default_rng(1))
    steps = {}
    for i in range(len(batch)):
        uid = frame_id(batch.obs[i, -1])
        steps.setdefault(uid // 100, set()).add(uid % 100)
        ep = episodes[uid // 100]
        np.testing.assert_array_equal(batch.obs[i], rebuild_stacks(ep.obs, K)[uid % 100])
    for ep, taken in steps.items():
        taken = sorted(taken)
        assert np.all(np.diff(taken) == 4), (ep, taken)  # one random offset per episode
        assert len(taken) == len(range(taken[0], len(episodes[ep]), 4))
    assert len(buffer) == sum(len(taken) for taken in steps.values())
    assert buffer.initial_obs().shape[0] == 2  # v0 still sees every episode start
    with pytest.raises(InputError):
        expert_buffer(episodes, frame_stack=K, subsample=0)


def test_vector_observations_have_no_stack_axis():
    obs = np.arange(12, dtype=np.float32).reshape(6, 2)
    episode = Trajectory(obs, np.zeros(5, np.int64), np.zeros(5, np.float32), True, False)
    buffer = expert_buffer([episode], frame_stack=1)
    batch = buffer.sample(100, np.random.default_rng(0))
    assert batch.obs.shape == (100, 2) and batch.obs.dtype == np.float32
    np.testing.assert_array_equal(batch.next_obs, batch.obs + 2)
    np.testing.assert_array_equal(batch.terminated, batch.obs[:, 0] == 8)


def test_memory_is_checked_before_allocating():
    with pytest.raises(BufferMemoryError, match="GiB") as info:
        FrameBuffer(10**12, (4, 84, 84), np.uint8)
    assert isinstance(info.value, InputError)


def test_misuse_is_reported():
    buffer = FrameBuffer(10, (K, H, W), np.uint8)
    with pytest.raises(RuntimeError):
        buffer.sample(1, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="start"):
        buffer.add(np.zeros(1), np.zeros(1), [False], [False], np.zeros((1, K, H, W)), [False])
    with pytest.raises(ValueError, match="shape"):
        buffer.start(np.zeros((1, K, 3, 3), np.uint8))
    with pytest.raises(InputError):
        expert_buffer([], frame_stack=4)


def test_state_round_trip_through_npz_continues_like_the_original(tmp_path):
    rng = np.random.default_rng(0)
    env = NaiveVecEnv(3, seed=1)
    buffer = FrameBuffer(120, (K, H, W), np.uint8, n_envs=3)
    fill(buffer, env, 150, rng)  # the ring has wrapped
    np.savez(tmp_path / "replay.npz", **buffer.state_dict())
    copy = FrameBuffer(120, (K, H, W), np.uint8, n_envs=3)
    with np.load(tmp_path / "replay.npz") as npz:
        copy.load_state_dict(dict(npz))
    # The same stream of steps goes on in both, and both sample the same transitions.
    for _ in range(30):
        actions = rng.integers(0, 6, env.n)
        obs, rewards, terminated, truncated, autoreset = env.step(actions)
        for b in (buffer, copy):
            b.add(actions, rewards, terminated, truncated, obs, autoreset)
    a, b = (x.sample(500, np.random.default_rng(3)) for x in (buffer, copy))
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.next_obs, b.next_obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert len(copy) == len(buffer)


def test_state_that_does_not_fit_is_refused():
    buffer = FrameBuffer(120, (K, H, W), np.uint8, n_envs=3)
    state = FrameBuffer(120, (K, H, W), np.uint8, n_envs=2).state_dict()
    with pytest.raises(InputError, match=r"^replay.npz: frames: uint8\[2, 60, 2, 2\] does not fit"):
        buffer.load_state_dict(state, "replay.npz")
    state = buffer.state_dict()
    del state["count"]
    with pytest.raises(InputError, match="r.npz: count: missing"):
        buffer.load_state_dict(state, "r.npz")
