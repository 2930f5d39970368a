"""Environments: name resolution, Atari preprocessing + frame stack, classic control, seeding.

Atari observations are (4, 84, 84) uint8 stacks, channel-first, built from `ALE/<Game>-v5` with
frameskip=1 at the emulator and gymnasium's `AtariPreprocessing` (noop reset, skip 4 with max-pool,
84x84 grayscale) + `FrameStackObservation` with zero padding. Zero padding is what ale-py's
`AtariVectorEnv` does, so the single-env and vector-env paths give identical observations, and
a stack can be rebuilt from single frames (see `stack_indices`).

Episode returns (`info["episode"]["r"]`) are always the raw, unclipped score of the whole game,
also when `terminal_on_life_loss` splits a game into several learning episodes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.errors import InputError

ATARI_FRAME_SHAPE = (84, 84)
MAX_EPISODE_FRAMES = 108_000  # ALE v5 default: 30 minutes of play, 27k agent steps at skip 4

# Classic discrete-action tasks we support, keyed by a lowercase short name.
CLASSIC_ENV_IDS = {
    "cartpole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
    "mountaincar": "MountainCar-v0",
    "lunarlander": "LunarLander-v3",
}


class GameNameError(InputError):
    """An unknown game name; the message lists the closest known names."""


@dataclass(frozen=True)
class GameSpec:
    """A resolved game: its short name, gymnasium id and family."""

    name: str  # short display name: "Pong", "CartPole"
    env_id: str  # gymnasium id: "ALE/Pong-v5", "CartPole-v1"
    is_atari: bool

    @property
    def ale_name(self) -> str:
        """ROM id as ale-py's AtariVectorEnv wants it ("pong", "space_invaders")."""
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()
        return snake.replace("3_d", "_3d")  # TicTacToe3D -> tic_tac_toe_3d


@dataclass(frozen=True)
class AtariSettings:
    """Preprocessing settings of an Atari env; stored in demo metadata and checked on load."""

    sticky_actions: float = 0.25
    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    terminal_on_life_loss: bool = False
    fire_reset: bool = False
    max_episode_frames: int = MAX_EPISODE_FRAMES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(name: str) -> str:
    """Normalise a game name for lookup: no namespace, version, NoFrameskip, case or separators."""
    name = name.strip()
    name = name.split("/", 1)[-1]
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _atari_names() -> dict[str, str]:
    """Map normalised key -> short Atari name, from the ALE v5 ids gymnasium knows."""
    import ale_py

    gym.register_envs(ale_py)
    names = {}
    for env_id in gym.registry:
        match = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", env_id)
        if match:
            names[_key(match.group(1))] = match.group(1)
    return names


def resolve_game(name: str) -> GameSpec:
    """Resolve `Pong`, `pong`, `ALE/Pong-v5`, `PongNoFrameskip-v4`, `CartPole-v1`, ... to a spec.

    Raises GameNameError with the closest known names when nothing matches.
    """
    key = _key(name)
    if key in CLASSIC_ENV_IDS:
        env_id = CLASSIC_ENV_IDS[key]
        return GameSpec(name=env_id.split("-")[0], env_id=env_id, is_atari=False)
    atari = _atari_names()
    if key in atari:
        short = atari[key]
        return GameSpec(name=short, env_id=f"ALE/{short}-v5", is_atari=True)
    known = {**{k: v for k, v in CLASSIC_ENV_IDS.items()}, **atari}
    close = difflib.get_close_matches(key, list(known), n=5, cutoff=0.5)
    hint = ", ".join(known[k] for k in close) if close else "CartPole-v1, Pong, Breakout, ..."
    raise GameNameError(f"unknown game {name!r}; closest matches: {hint}")


def stack_indices(t: np.ndarray | int, frame_stack: int) -> np.ndarray:
    """Frame indices (within one episode) making up the stack at step t; -1 means a zero frame.

    Matches FrameStackObservation(padding_type="zero") and AtariVectorEnv: the stack at step t
    holds frames t-k+1 .. t, oldest first, with zeros before the episode's first frame.
    """
    t = np.asarray(t)
    idx = t[..., None] + np.arange(-frame_stack + 1, 1)
    return np.where(idx < 0, -1, idx)


def rebuild_stacks(frames: np.ndarray, frame_stack: int) -> np.ndarray:
    """Rebuild the (T+1, k, H, W) observation stacks of one episode from its T+1 single frames."""
    idx = stack_indices(np.arange(len(frames)), frame_stack)
    padded = np.concatenate([frames, np.zeros_like(frames[:1])])  # index -1 -> the zero frame
    return padded[idx]


class FireResetEnv(gym.Wrapper):
    """Press FIRE after reset for games that wait for it (training only, never evaluation)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if "FIRE" not in meanings:
            raise ValueError(f"fire_reset: {env.spec.id if env.spec else env} has no FIRE action")
        self._fire = meanings.index("FIRE")

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


class EpisodicLifeEnv(gym.Wrapper):
    """Signal `terminated` on a life loss, but reset the game only when it is really over.

    Training only: it makes value bootstrapping stop at a lost life (as SB3's EpisodicLifeEnv).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # continue the same game after a lost life with a no-op step
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info


class _FirstResetSeed:
    """Use `seed` for the first reset unless the caller passes one, and seed the action space:
    make_env(seed=s) is enough. Shared by the single-env and the vector wrapper."""

    def __init__(self, env: Any, seed: int | None):
        super().__init__(env)
        self._seed = seed
        if seed is not None:
            env.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        return self.env.reset(seed=seed, options=options)


class SeedOnFirstReset(_FirstResetSeed, gym.Wrapper):
    """An env whose first reset uses `seed` (see `_FirstResetSeed`)."""


def make_env(
    game: str,
    seed: int | None = None,
    *,
    settings: AtariSettings | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """Make one env with our preprocessing. Atari: (k, 84, 84) uint8 stacks; classic: raw vectors.

    `seed` seeds the first reset and the action space. `info["episode"]["r"]` at the end of a
    game is its raw score. `settings` only applies to Atari games.
    """
    spec = resolve_game(game)
    if not spec.is_atari:
        env = gym.make(spec.env_id, render_mode=render_mode)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        return SeedOnFirstReset(env, seed)

    import ale_py

    gym.register_envs(ale_py)
    s = settings or AtariSettings()
    env = gym.make(
        spec.env_id,
        frameskip=1,
        repeat_action_probability=s.sticky_actions,
        full_action_space=False,
        max_num_frames_per_episode=s.max_episode_frames,
        render_mode=render_mode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=s.noop_max, frame_skip=s.frame_skip, screen_size=s.screen_size
    )
    # Below the life-loss wrapper, so the recorded return is the whole game's raw score.
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if s.terminal_on_life_loss:
        env = EpisodicLifeEnv(env)
    if s.fire_reset:
        env = FireResetEnv(env)
    env = gym.wrappers.FrameStackObservation(env, s.frame_stack, padding_type="zero")
    return SeedOnFirstReset(env, seed)


def make_vec_env(
    game: str,
    n_envs: int,
    seed: int | None = None,
    *,
    settings: AtariSettings | None = None,
    num_threads: int = 0,
) -> gym.vector.VectorEnv:
    """Make `n_envs` envs stepped together: ale-py's AtariVectorEnv (C++ threads) for Atari,
    a gymnasium SyncVectorEnv otherwise. Same observations as `make_env` for the same settings.

    Every AtariVectorEnv default that differs from ALE v5 is set explicitly (sticky actions,
    reward clipping, fire reset). Autoreset is gymnasium's NEXT_STEP mode. `seed` seeds the
    first reset and the action space.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    spec = resolve_game(game)
    if not spec.is_atari:
        envs = gym.make_vec(
            spec.env_id,
            num_envs=n_envs,
            vectorization_mode="sync",
        )
    else:
        s = settings or AtariSettings()
        envs = _atari_vector_env(spec, n_envs, s, num_threads)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    return VecSeedOnFirstReset(envs, seed)


def _atari_vector_env(
    spec: GameSpec, n_envs: int, s: AtariSettings, num_threads: int
) -> gym.vector.VectorEnv:
    """ale-py's AtariVectorEnv with our settings (NEXT_STEP autoreset, no episode statistics)."""
    import ale_py

    if s.terminal_on_life_loss:
        # AtariVectorEnv's episodic_life restarts the whole game at each lost life (seen in
        # ale-py 0.12.1), which would change the task; use make_env for this option.
        raise ValueError("terminal_on_life_loss: supported by make_env only, not make_vec_env")
    return ale_py.AtariVectorEnv(
        spec.ale_name,
        n_envs,
        num_threads=num_threads,
        repeat_action_probability=s.sticky_actions,
        full_action_space=False,
        max_num_frames_per_episode=s.max_episode_frames,
        img_height=s.screen_size,
        img_width=s.screen_size,
        grayscale=True,
        stack_num=s.frame_stack,
        frameskip=s.frame_skip,
        maxpool=True,
        noop_max=s.noop_max,
        episodic_life=False,
        reward_clipping=False,
        use_fire_reset=s.fire_reset,
    )


class VecSeedOnFirstReset(_FirstResetSeed, gym.vector.VectorWrapper):
    """Vector twin of SeedOnFirstReset: env i's first reset uses seed + i."""


Policy = Callable[[np.ndarray], np.ndarray]


class OverlappedAtariVecEnv:
    """`n_envs` Atari envs as two half-size AtariVectorEnvs stepped in turn, so that the caller's
    policy runs on one half's observations while the other half emulates.

    `step(policy)` advances every env by one step, as a NEXT_STEP-autoreset vector env does, and
    returns the actions taken with the results. The actions of the following step are chosen by
    `policy` as soon as each half's results arrive and are sent at once, so they are in flight
    (emulating in ale-py's threads) while `step` returns and the caller does other work; `close`
    receives them first. Env i's first reset uses seed + i, as `make_vec_env`, so each env's
    sequence equals `make_vec_env`'s for the same actions. `infos["episode"]["r"]` (raw return)
    and `["l"]`, masked by `infos["_episode"]`, are as gymnasium's RecordEpisodeStatistics gives.
    `num_threads` is ale-py's emulation threads per half.
    """

    def __init__(
        self,
        game: str,
        n_envs: int,
        seed: int | None = None,
        *,
        settings: AtariSettings | None = None,
        num_threads: int = 1,
    ):
        spec = resolve_game(game)
        if not spec.is_atari:
            raise ValueError(f"OverlappedAtariVecEnv: {spec.env_id} is not an Atari game")
        if n_envs < 2:
            raise ValueError(f"OverlappedAtariVecEnv needs n_envs >= 2, got {n_envs}")
        s = settings or AtariSettings()
        first = n_envs // 2
        self._slices = (slice(0, first), slice(first, n_envs))
        self._halves = [
            _atari_vector_env(spec, sl.stop - sl.start, s, num_threads) for sl in self._slices
        ]
        self.num_envs = n_envs
        self.single_observation_space = self._halves[0].single_observation_space
        self.single_action_space = self._halves[0].single_action_space
        self._seed = seed
        self._obs: np.ndarray | None = None  # observations the in-flight actions were chosen on
        self._in_flight: list[np.ndarray] | None = None  # actions sent, per half
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._done = np.zeros(n_envs, dtype=bool)

    def reset(self) -> tuple[np.ndarray, dict]:
        """Reset every env (the first time with seed + i); no actions are in flight after it."""
        self._drain()
        obs = []
        for half, sl in zip(self._halves, self._slices, strict=True):
            seed = None if self._seed is None else self._seed + sl.start
            obs.append(half.reset(seed=seed)[0])
        self._seed = None
        self._obs = np.concatenate(obs)
        self._returns[:], self._lengths[:], self._done[:] = 0, 0, False
        return self._obs, {}

    def step(
        self, policy: Policy
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """One step of every env: (actions taken, next obs, rewards, terminated, truncated,
        infos). `policy` maps a batch of observations to actions."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._in_flight is None:
            self._in_flight = [
                self._send(i, policy(self._obs[sl])) for i, sl in enumerate(self._slices)
            ]
        taken = np.concatenate(self._in_flight)
        results = []
        for i, sl in enumerate(self._slices):
            obs, rewards, terminated, truncated, info = self._halves[i].recv()
            # With batch_size == num_envs, recv waits for every env and answers in env order.
            if not np.array_equal(info["env_id"], np.arange(sl.stop - sl.start)):
                raise RuntimeError(f"recv answered envs {info['env_id']}, expected all in order")
            self._in_flight[i] = self._send(i, policy(obs))
            results.append((obs, rewards, terminated, truncated))
        obs, rewards, terminated, truncated = (
            np.concatenate(r) for r in zip(*results, strict=True)
        )
        self._obs = obs
        return (
            taken,
            obs,
            rewards,
            terminated,
            truncated,
            self._episode_infos(rewards, terminated | truncated),
        )

    def _send(self, i: int, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        self._halves[i].send(actions)
        return actions

    def _episode_infos(self, rewards: np.ndarray, done: np.ndarray) -> dict:
        """Accumulate raw returns; an autoreset step (after a done) starts the next episode."""
        self._returns[self._done], self._lengths[self._done] = 0, 0
        live = ~self._done
        self._returns[live] += rewards[live]
        self._lengths[live] += 1
        self._done = done
        if not done.any():
            return {}
        episode = {"r": np.where(done, self._returns, 0.0), "l": np.where(done, self._lengths, 0)}
        return {"episode": episode, "_episode": done.copy()}

    def _drain(self) -> None:
        """Receive the steps in flight, discarding them."""
        if self._in_flight is not None:
            for half in self._halves:
                half.recv()
            self._in_flight = None

    def close(self) -> None:
        """Receive the steps in flight, then close both halves."""
        self._drain()
        for half in self._halves:
            half.close()


def action_meanings(env: gym.Env) -> list[str]:
    """Names of the discrete actions (Atari: the ALE meanings; classic: a0, a1, ...)."""
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "get_action_meanings"):
        return list(unwrapped.get_action_meanings())
    return [f"a{i}" for i in range(env.action_space.n)]


def env_settings(game: str, settings: AtariSettings | None = None) -> dict[str, Any]:
    """The settings dict recorded in demo metadata and run configs for `game`."""
    spec = resolve_game(game)
    return (settings or AtariSettings()).to_dict() if spec.is_atari else {}


def is_image_space(space: gym.Space) -> bool:
    """True for uint8 image stacks (Atari), False for flat vector observations."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
