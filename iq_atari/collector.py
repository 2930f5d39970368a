"""Online collection: the agent's sampling policy steps a vector env and every transition goes
to a replay `FrameBuffer`. Atari with 2+ envs overlaps the policy forward with emulation.
The replay buffer is saved beside last.pt (`save_replay`) and read back on resume (`load_replay`).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from iq_atari.buffers import FrameBuffer
from iq_atari.config import TrainConfig
from iq_atari.envs import AtariSettings, OverlappedAtariVecEnv, make_vec_env, resolve_game
from iq_atari.errors import InputError
from iq_atari.learners import Learner
from iq_atari.utils import atomic_path

REPLAY_FILE = "replay.npz"  # checkpoints/replay.npz: an online run's replay buffer, with last.pt


class Collector:
    """Steps `n_envs` envs with the agent's sampling policy and streams transitions to a buffer.

    Atari with n_envs >= 2 overlaps the policy forward with emulation (`OverlappedAtariVecEnv`):
    each half's next actions are chosen as soon as its step arrives, and the steps stay in flight
    while the learner updates. Actions are chosen by the current learner either way (in the
    overlapped loop, before the updates that run between two `step` calls). Classic games and a
    single env use a plain vector env.
    """

    def __init__(
        self,
        config: TrainConfig,
        settings: AtariSettings | None,
        obs_space: gym.Space,
        replay: dict[str, np.ndarray] | None = None,
    ):
        """`replay`: a saved `FrameBuffer.state_dict()` to continue from (a resumed run); the
        envs still start new episodes, so the transitions saved stay whole and none crosses."""
        if settings is not None and settings.terminal_on_life_loss:
            raise InputError("online mode cannot use terminal_on_life_loss demos (vector envs)")
        self.overlapped = resolve_game(config.game).is_atari and config.n_envs >= 2
        if self.overlapped:
            self.envs = OverlappedAtariVecEnv(
                config.game, config.n_envs, seed=config.seed, settings=settings
            )
        else:
            self.envs = make_vec_env(
                config.game, config.n_envs, seed=config.seed, settings=settings
            )
        self.buffer = FrameBuffer(
            config.replay_size, obs_space.shape, obs_space.dtype, n_envs=config.n_envs
        )
        self.restored = False  # whether `replay` was restored
        if replay is not None:
            replay_path = Path(config.run_dir or "") / "checkpoints" / REPLAY_FILE
            try:  # checked before any array is copied
                self.buffer.load_state_dict(replay, str(replay_path))
            except InputError as err:
                raise InputError(
                    f"{err} (not saved by this run); delete it to resume with a fresh replay buffer"
                ) from err
            self.restored = True
        self.obs, _ = self.envs.reset()
        self.buffer.start(self.obs)
        self.autoreset = np.zeros(config.n_envs, dtype=bool)
        self.steps = 0  # transitions collected by this collector
        self.episode_returns: list[float] = []

    def step(self, learner: Learner) -> None:
        """One step of every env, recorded in the buffer (autoreset rows hold no transition)."""
        if self.overlapped:

            def policy(obs: np.ndarray) -> np.ndarray:
                return learner.act(obs, greedy=False)

            actions, obs, rewards, terminated, truncated, infos = self.envs.step(policy)
        else:
            actions = learner.act(self.obs, greedy=False)
            obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.buffer.add(actions, rewards, terminated, truncated, obs, self.autoreset)
        self.steps += int((~self.autoreset).sum())
        self.autoreset = terminated | truncated
        self.obs = obs
        if "episode" in infos:
            self.episode_returns += [float(r) for r in infos["episode"]["r"][infos["_episode"]]]

    def close(self) -> None:
        self.envs.close()


def save_replay(path: Path, buffer: FrameBuffer, updates: int, compressed: bool = False) -> None:
    """Write `buffer` to `path` atomically, stamped with the update count of its last.pt.
    `compressed`: Atari frames and a ring's unfilled slots shrink ~100x, in about the time of
    an uncompressed write (np.load reads either)."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path, suffix=".npz") as tmp:
        save(tmp, updates=np.int64(updates), **buffer.state_dict())


def read_replay(path: Path, fix: str) -> tuple[int, dict[str, np.ndarray]]:
    """The update stamp and arrays of a buffer file written by `save_replay`; a file that is not
    one is an InputError naming it and ending with `fix`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            replay = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise InputError(
            f"{path}: not a readable replay buffer ({type(err).__name__}: "
            f"{' '.join(str(err).split())}); {fix}"
        ) from err
    saved_at = replay.pop("updates", None)
    if saved_at is None or np.shape(saved_at) != () or saved_at.dtype.kind not in "iu":
        raise InputError(f"{path}: updates: missing or not an integer; {fix}")
    return int(saved_at), replay


def load_replay(path: Path, updates: int) -> dict[str, np.ndarray] | None:
    """The replay saved with last.pt at `updates`, if it is there; None if there is none
    or it is from another update (a run killed between writing it and last.pt), saying so.
    A file that is not a whole replay buffer is an InputError: it was not written by a run."""
    if not path.is_file():
        return None
    saved_at, replay = read_replay(path, "delete it to resume with a fresh replay buffer")
    if saved_at != updates:
        why = f"it is from update {saved_at}, last.pt from update {updates}"
        print(f"{path}: not restored ({why}); collecting the replay afresh", file=sys.stderr)
        return None
    return replay
