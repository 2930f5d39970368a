"""Replay and expert buffers that store each observation frame once and rebuild stacks by index.

Storage is one preallocated ring of `capacity // n_envs` slots per env stream. Slot i of a stream
holds the newest frame of one observation (Atari: one 84x84 uint8 frame; vector obs: the whole
vector), the step `t` of that observation within its episode, and, once the env has stepped from
it, the action, raw reward and how that step ended. The (k, H, W) stack of a slot is the frames of
slots i-k+1 .. i of the same stream, with zeros before the episode's first frame, exactly as
`envs.stack_indices` / `FrameStackObservation(padding_type="zero")` build it. The next observation
of a transition is simply the next slot of the stream; the last observation of an episode has no
transition (`has_next` is False), so transitions never cross episode ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iq_atari.errors import InputError


class BufferMemoryError(InputError):
    """A buffer would not fit in the memory available."""


@dataclass(frozen=True)
class Batch:
    """Sampled transitions, as numpy arrays (frames stay uint8).

    `terminated` stops bootstrapping; `truncated` (a time-limit end) does not, it is kept only for
    inspection.
    """

    obs: np.ndarray
    actions: np.ndarray  # int64 (B,)
    rewards: np.ndarray  # float32 (B,), raw
    next_obs: np.ndarray
    terminated: np.ndarray  # bool (B,)
    truncated: np.ndarray  # bool (B,)

    def __len__(self) -> int:
        return len(self.actions)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(nbytes: int, what: str, fraction: float = 0.8) -> None:
    """Raise BufferMemoryError if `nbytes` exceeds `fraction` of the memory available now."""
    free = available_memory()
    if free is not None and nbytes > fraction * free:
        raise BufferMemoryError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB of memory is "
            f"available; reduce its size (e.g. --replay-size)"
        )


class FrameBuffer:
    """Transitions of `n_envs` env streams in preallocated storage, one frame per observation.

    `obs_shape` is one env's observation shape: (k, H, W) uint8 stacks, or (D,) vectors (k = 1).
    Stream it with `start(obs)` after a reset and `add(...)` after every vector-env step, or fill it
    with whole episodes with `add_episode` (one stream).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        obs_dtype: np.dtype | type = np.uint8,
        n_envs: int = 1,
    ):
        if capacity < 2 * n_envs:
            raise ValueError(f"capacity {capacity} is too small for {n_envs} env streams")
        self.obs_shape = tuple(obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.stacked = len(self.obs_shape) == 3
        self.frame_stack = self.obs_shape[0] if self.stacked else 1
        frame_shape = self.obs_shape[1:] if self.stacked else self.obs_shape
        self.n_envs = n_envs
        self.slots = capacity // n_envs
        n = (n_envs, self.slots)
        row_bytes = self.obs_dtype.itemsize * int(np.prod(frame_shape)) + 4 + 8 + 4 + 3
        check_memory(n_envs * self.slots * row_bytes, f"a buffer of {n_envs * self.slots} frames")
        self.frames = np.zeros((*n, *frame_shape), dtype=self.obs_dtype)
        self.t = np.zeros(n, dtype=np.int32)  # step of the slot's observation in its episode
        self.actions = np.zeros(n, dtype=np.int64)
        self.rewards = np.zeros(n, dtype=np.float32)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.has_next = np.zeros(n, dtype=bool)
        self.pos = 0  # next slot to write (same for every stream: they advance together)
        self.count = 0  # slots written and still held

    @property
    def nbytes(self) -> int:
        arrays = (self.frames, self.t, self.actions, self.rewards, self.terminated, self.truncated)
        return sum(a.nbytes for a in arrays) + self.has_next.nbytes

    def __len__(self) -> int:
        """Number of transitions that can be sampled (approximately, near the ring's seam)."""
        return int(np.count_nonzero(self.has_next))

    def _newest_frame(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape[1:] != self.obs_shape:
            raise ValueError(f"observations of shape {obs.shape[1:]}, expected {self.obs_shape}")
        return obs[:, -1] if self.stacked else obs

    def _write(self, frames: np.ndarray, t: np.ndarray) -> None:
        slot = self.pos
        self.frames[:, slot] = frames
        self.t[:, slot] = t
        self.has_next[:, slot] = False
        self.pos = (slot + 1) % self.slots
        self.count = min(self.count + 1, self.slots)

    def start(self, obs: np.ndarray) -> None:
        """Record first observations after a reset of all envs: (n_envs, *obs_shape)."""
        self._write(self._newest_frame(obs), np.zeros(self.n_envs, dtype=np.int32))

    def add(
        self,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        autoreset: np.ndarray,
    ) -> None:
        """Record one vector-env step taken from the last recorded observations.

        `autoreset[i]` marks env i's step as gymnasium's NEXT_STEP autoreset (its previous step
        ended the episode): its action was ignored and `next_obs[i]` is a fresh reset observation.
        """
        if self.count == 0:
            raise RuntimeError("call start(obs) before add()")
        autoreset = np.asarray(autoreset, dtype=bool)
        cur = (self.pos - 1) % self.slots
        live = ~autoreset
        self.actions[:, cur] = actions
        self.rewards[:, cur] = rewards
        self.terminated[:, cur] = np.asarray(terminated) & live
        self.truncated[:, cur] = np.asarray(truncated) & live
        self.has_next[:, cur] = live
        self._write(self._newest_frame(next_obs), np.where(autoreset, 0, self.t[:, cur] + 1))

    def add_episode(self, trajectory) -> None:
        """Append one whole episode (a `demos.Trajectory`: T+1 single frames or vectors)."""
        if self.n_envs != 1:
            raise ValueError("add_episode needs a single-stream buffer (n_envs=1)")
        frames = np.asarray(trajectory.obs)
        n_steps = len(trajectory.actions)
        if frames.shape[1:] != self.frames.shape[2:] or len(frames) != n_steps + 1:
            raise ValueError(
                f"episode obs {frames.shape} do not fit frames {self.frames.shape[2:]} "
                f"with {n_steps} actions"
            )
        if n_steps + 1 > self.slots:
            raise ValueError(f"an episode of {n_steps} steps does not fit {self.slots} slots")
        slots = (self.pos + np.arange(n_steps + 1)) % self.slots
        self.frames[0, slots] = frames
        self.t[0, slots] = np.arange(n_steps + 1)
        steps = slots[:-1]
        self.actions[0, steps] = trajectory.actions
        self.rewards[0, steps] = trajectory.rewards
        self.terminated[0, steps] = False
        self.truncated[0, steps] = False
        self.terminated[0, steps[-1]] = trajectory.terminated
        self.truncated[0, steps[-1]] = trajectory.truncated
        self.has_next[0, steps] = True
        self.has_next[0, slots[-1]] = False
        self.pos = int((slots[-1] + 1) % self.slots)
        self.count = min(self.count + n_steps + 1, self.slots)

    def _valid(self, env: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slot of each (env, age) and whether it holds a transition with its whole stack held."""
        slot = (self.pos - self.count + age) % self.slots
        depth = np.minimum(self.t[env, slot], self.frame_stack - 1)
        return slot, self.has_next[env, slot] & (age >= depth)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """`batch_size` transitions drawn uniformly (with replacement) from those held."""
        if self.count < 2 or not self.has_next.any():
            raise RuntimeError("the buffer holds no complete transition yet")
        env = rng.integers(self.n_envs, size=batch_size)
        age = rng.integers(self.count - 1, size=batch_size)
        slot, ok = self._valid(env, age)
        for _ in range(1000):  # rejection: invalid slots are episode ends and the ring's seam
            if ok.all():
                break
            bad = np.flatnonzero(~ok)
            env[bad] = rng.integers(self.n_envs, size=len(bad))
            age[bad] = rng.integers(self.count - 1, size=len(bad))
            slot[bad], ok[bad] = self._valid(env[bad], age[bad])
        else:
            raise RuntimeError("could not sample valid transitions; the buffer is almost empty")
        next_slot = (slot + 1) % self.slots
        return Batch(
            obs=self._stacks(env, slot),
            actions=self.actions[env, slot],
            rewards=self.rewards[env, slot],
            next_obs=self._stacks(env, next_slot),
            terminated=self.terminated[env, slot],
            truncated=self.truncated[env, slot],
        )

    def observations(self, slot: np.ndarray, env: np.ndarray | None = None) -> np.ndarray:
        """Observations held in `slot` of stream `env` (default: stream 0), whether or not they
        can be sampled: (B, k, H, W) stacks or (B, D) vectors."""
        slot = np.asarray(slot)
        env = np.zeros_like(slot) if env is None else np.asarray(env)
        return self._stacks(env, slot)

    def _stacks(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Observations of the given slots: (B, k, H, W) stacks rebuilt by index, or vectors."""
        if not self.stacked:
            return self.frames[env, slot]
        back = np.arange(self.frame_stack - 1, -1, -1)  # oldest frame first
        idx = (slot[:, None] - back) % self.slots
        out = self.frames[env[:, None], idx]
        out[back[None, :] > self.t[env, slot][:, None]] = 0  # before the episode's first frame
        return out

    def initial_obs(self) -> np.ndarray:
        """Observations held at the first step of an episode (for the `v0` loss)."""
        age = np.arange(self.count)
        slot = (self.pos - self.count + age) % self.slots
        env, which = np.nonzero(self.t[:, slot] == 0)
        return self._stacks(env, slot[which])

    STATE_ARRAYS = ("frames", "t", "actions", "rewards", "terminated", "truncated", "has_next")

    def state_dict(self) -> dict[str, np.ndarray]:
        """What the buffer holds, as named arrays (not copies), e.g. for `np.savez`."""
        state = {name: getattr(self, name) for name in self.STATE_ARRAYS}
        return {**state, "pos": np.int64(self.pos), "count": np.int64(self.count)}

    def load_state_dict(self, state: dict[str, np.ndarray], name: str = "replay") -> None:
        """Hold what `state_dict` returned; raise InputError ("<name>: <field>: ...") unless it
        fits this buffer's streams, capacity, observation shape and dtypes."""
        for field in (*self.STATE_ARRAYS, "pos", "count"):
            if field not in state:
                raise InputError(f"{name}: {field}: missing")
        for field in self.STATE_ARRAYS:
            mine, theirs = getattr(self, field), np.asarray(state[field])
            if theirs.shape != mine.shape or theirs.dtype != mine.dtype:
                raise InputError(
                    f"{name}: {field}: {theirs.dtype}{list(theirs.shape)} does not fit a buffer "
                    f"of {mine.dtype}{list(mine.shape)}"
                )
        pos, count = int(state["pos"]), int(state["count"])
        if not (0 <= pos < self.slots and 0 <= count <= self.slots):
            raise InputError(f"{name}: pos/count: {pos}/{count} outside 0..{self.slots}")
        for field in self.STATE_ARRAYS:
            getattr(self, field)[...] = state[field]
        self.pos, self.count = pos, count


def expert_buffer(
    trajectories: Sequence,
    frame_stack: int,
    subsample: int = 1,
    rng: np.random.Generator | None = None,
) -> FrameBuffer:
    """A single-stream buffer holding exactly the given demo trajectories.

    `frame_stack` is the demo set's stack depth (ignored for vector observations). With
    `subsample` k > 1 only every k-th transition of each episode can be sampled, from a random
    offset per episode (the official `expert.subsample_freq`); all frames stay, so stacks are
    still whole.
    """
    if not trajectories:
        raise InputError("no expert trajectories to train from")
    if subsample < 1:
        raise InputError(f"--subsample must be >= 1, got {subsample}")
    first = np.asarray(trajectories[0].obs)
    stacked = first.ndim == 3
    obs_shape = (frame_stack, *first.shape[1:]) if stacked else first.shape[1:]
    capacity = sum(len(tr.actions) + 1 for tr in trajectories)
    buffer = FrameBuffer(capacity, obs_shape, first.dtype, n_envs=1)
    rng = rng if rng is not None else np.random.default_rng(0)
    for trajectory in trajectories:
        start = buffer.pos
        buffer.add_episode(trajectory)
        if subsample > 1:
            steps = np.arange(len(trajectory.actions))
            offset = rng.integers(min(subsample, len(steps)))
            buffer.has_next[0, start + steps[(steps - offset) % subsample != 0]] = False
    return buffer
