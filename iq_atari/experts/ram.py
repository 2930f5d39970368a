"""Object features read from the emulator RAM, and the env an RL expert trains on with them.

An RL expert on a CPU: PPO on a small vector of object positions (ball, paddles, aliens) takes
far less compute per agent step than PPO on pixels and needs far fewer steps (docs/RESULTS.md,
Experts). The features are read from RAM after every agent step, in exactly the dynamics our
demos use (ALE v5, frameskip 1 at the emulator, sticky actions, up to `noop_max` noops at reset,
`frame_skip` frames per agent step, the frame cap), so an expert trained here plays the same game
in our pixel env, reading `env.unwrapped.ale` there (`RamPolicyExpert` in `ram_expert.py`).

RAM maps follow shared/EXPERTS.md and OCAtari's `ocatari/ram/<game>.py` (facts, not a
dependency). A game without a map falls back to the raw 128 bytes of this and the last step,
which learns far more slowly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from iq_atari.envs import AtariSettings, resolve_game


class RamFeatures:
    """Base class: features of one game from the RAM of consecutive agent steps.

    `actions` are the gym action indices the RL agent chooses among (a subset of the game's
    minimal action set: Pong's agent needs only NOOP, up and down). `reset` forgets the previous
    step; `__call__(ram)` returns the features of this step and remembers its RAM.
    """

    actions: tuple[int, ...] = ()
    size: int = 0
    canonical: str = ""  # what canonical_action changes, for the demos' provenance

    def __init__(self) -> None:
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, ram: np.ndarray) -> np.ndarray:
        ram = np.asarray(ram, dtype=np.int32)
        prev = ram if self._prev is None else self._prev
        self._prev = ram.copy()
        return np.asarray(self.features(ram, prev), dtype=np.float32)

    def features(self, ram: np.ndarray, prev: np.ndarray) -> list[float]:
        raise NotImplementedError

    def canonical_action(self, action: int, ram: np.ndarray) -> int:
        """The action to record for `action` in this RAM state: the same action by default.

        A game may map an action to one with the same effect on the emulator here, so that demo
        labels do not carry the expert's arbitrary choice between equivalent actions (which an
        imitator cannot see in the frames). The game played is unchanged.
        """
        return action


def _reflect(y: float, low: float, high: float) -> float:
    """Fold a straight-line position back into [low, high] as wall bounces do."""
    span = high - low
    if span <= 0:
        return low
    t = (y - low) % (2 * span)
    return low + (t if t <= span else 2 * span - t)


class PongFeatures(RamFeatures):
    """Ball position and velocity, both paddles, where and when the ball will reach the player.

    RAM (EXPERTS.md): ball x = ram[49], y = ram[54] (no ball when ram[49] is 0 or 205), player
    paddle ram[51] (top y = ram[51] - 14, 16 px), opponent ram[50]. The ball meets the player
    paddle at ram[49] >= 188. All values are in RAM units scaled to roughly [-1, 1]. Besides the
    predicted arrival point, the agent gets the agent steps until the ball arrives and the arrival
    point's offset from the paddle centre at paddle scale (clipped): which part of the paddle
    will meet the ball decides the return's angle, and the time left decides whether to move.
    """

    actions = (0, 2, 3)  # NOOP, up, down
    size = 16
    AWAY_STEPS = 20.0  # time-to-contact feature when the ball is not coming (and its scale)
    CONTACT_X = 188.0
    BALL_Y = (44.0, 207.0)  # range of ram[54] while the ball is in play

    @staticmethod
    def _ball(ram: np.ndarray) -> tuple[bool, float, float]:
        present = int(ram[49]) not in (0, 205) and int(ram[54]) != 0
        return present, float(ram[49]), float(ram[54])

    def arrival_y(self, x: float, y: float, dx: float, dy: float) -> float:
        """The ball's y when it reaches the player's column, bounces folded in; y if moving away."""
        if dx <= 0:
            return y
        steps = (self.CONTACT_X - x) / dx
        return _reflect(y + dy * max(steps, 0.0), *self.BALL_Y)

    def features(self, ram: np.ndarray, prev: np.ndarray) -> list[float]:
        present, bx, by = self._ball(ram)
        was_present, px_prev, py_prev = self._ball(prev)
        moving = present and was_present
        dx = bx - px_prev if moving else 0.0
        dy = by - py_prev if moving else 0.0
        player = float(ram[51]) + 8.0  # paddle centre, ball-y units (ball centre = ram[54] + 2)
        opponent = float(ram[50]) + 8.0
        player_dy = float(ram[51]) - float(prev[51])
        arrival = self.arrival_y(bx, by, dx, dy) + 2.0 if present else player
        ball_c = by + 2.0 if present else player
        coming = present and dx > 0
        steps = max(self.CONTACT_X - bx, 0.0) / dx if coming else self.AWAY_STEPS
        return [
            float(present),
            bx / 205.0 if present else 0.0,
            by / 210.0 if present else 0.0,
            dx / 10.0,
            dy / 10.0,
            player / 210.0,
            opponent / 210.0,
            player_dy / 10.0,
            float(dx > 0),
            arrival / 210.0,
            (arrival - player) / 50.0,
            (ball_c - player) / 50.0,
            (ball_c - opponent) / 50.0,
            min(steps, self.AWAY_STEPS) / self.AWAY_STEPS,
            float(np.clip((arrival - player) / 16.0, -2.0, 2.0)),
            float(np.clip((arrival - opponent) / 50.0, -2.0, 2.0)),
        ]


class BreakoutFeatures(RamFeatures):
    """Paddle, ball position and velocity, where the falling ball reaches the paddle row, lives.

    RAM (EXPERTS.md): paddle left x = ram[72] - 47 (16 px), ball left x = ram[99] - 49, ball top
    y = ram[101] + 9, ram[101] = 0 means no ball in play (FIRE serves); lives ram[57].
    """

    actions = (0, 1, 2, 3)  # NOOP, FIRE, RIGHT, LEFT
    size = 12
    PADDLE_ROW = 180.0  # ram[101] where the ball reaches the paddle (screen y ~189)
    BALL_X = (57.0, 201.0)
    # Below this ram[101] a ball is in play and above the paddle, and FIRE changes nothing in the
    # emulator (checked frame by frame, tests/test_ram_expert.py); at and past it the ball is
    # being lost and FIRE can serve the next one early.
    FIRE_IDLE_BELOW = 200
    canonical = "FIRE recorded as NOOP while a ball is in play above the paddle (same emulation)"

    def canonical_action(self, action: int, ram: np.ndarray) -> int:
        """FIRE while a ball is in play does what NOOP does: record it as NOOP.

        The RAM agent presses FIRE on many in-play steps, a choice the frames cannot show; with
        those labels FIRE looks arbitrary to an imitator, which then does not serve after losing
        a ball and stands still until the frame cap (docs/RESULTS.md, Breakout).
        """
        if action == 1 and 0 < int(ram[101]) < self.FIRE_IDLE_BELOW:
            return 0
        return action

    def features(self, ram: np.ndarray, prev: np.ndarray) -> list[float]:
        present = int(ram[101]) != 0
        was_present = int(prev[101]) != 0
        bx, by = float(ram[99]), float(ram[101])
        moving = present and was_present
        dx = bx - float(prev[99]) if moving else 0.0
        dy = by - float(prev[101]) if moving else 0.0
        paddle = float(ram[72]) - 47.0 + 8.0  # paddle centre, screen x
        ball_c = bx - 49.0 + 1.0 if present else paddle
        if present and dy > 0:
            steps = (self.PADDLE_ROW - by) / dy
            landing = _reflect(bx + dx * max(steps, 0.0), *self.BALL_X) - 49.0 + 1.0
        else:
            landing = ball_c
        return [
            float(present),
            bx / 255.0 if present else 0.0,
            by / 210.0 if present else 0.0,
            dx / 10.0,
            dy / 10.0,
            paddle / 160.0,
            (float(ram[72]) - float(prev[72])) / 10.0,
            float(dy > 0),
            landing / 160.0,
            (landing - paddle) / 40.0,
            (ball_c - paddle) / 40.0,
            float(ram[57]) / 5.0,
        ]


class SpaceInvadersFeatures(RamFeatures):
    """Player, the alien block (position and its 6 x 6 bitmap), bullets, lives (OCAtari's map).

    RAM: player x = ram[28]; alien block x, y = ram[26], ram[16], bitmap ram[18:24] (one byte
    per row, low 6 bits); player bullet (ram[87], ram[85]); enemy bullets (ram[83 + k],
    ram[81 + k]) for k = 0, 1; satellite x ram[30]; lives ram[73].
    """

    actions = (0, 1, 2, 3, 4, 5)  # NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE
    size = 13 + 36 + 6 + 1  # scalars, the alien bitmap, aliens per column, lives

    def features(self, ram: np.ndarray, prev: np.ndarray) -> list[float]:
        player = float(ram[28])
        block_x, block_y = float(ram[26]), float(ram[16])
        rows = ram[18:24] & 0x3F
        bits = ((rows[:, None] >> np.arange(6)[None, :]) & 1).astype(np.float32)
        # Aliens per column and the nearest occupied column's x relative to the player.
        columns = bits.sum(axis=0)
        column_x = block_x + 16.0 * np.arange(6)
        occupied = columns > 0
        rel = (column_x - player)[occupied]
        nearest = float(rel[np.argmin(np.abs(rel))]) if occupied.any() else 0.0
        return [
            player / 128.0,
            (player - float(prev[28])) / 10.0,
            block_x / 128.0,
            block_y / 32.0,
            (block_x - float(prev[26])) / 4.0,
            float(ram[87]) / 160.0,
            float(ram[85]) / 100.0,
            (float(ram[83]) - player) / 128.0,
            float(ram[81]) / 100.0,
            (float(ram[84]) - player) / 128.0,
            float(ram[82]) / 100.0,
            (float(ram[30]) - player) / 160.0,
            nearest / 128.0,
            *bits.ravel().tolist(),
            *(columns / 6.0).tolist(),
            float(ram[73]) / 3.0,
        ]


class RawRamFeatures(RamFeatures):
    """Any game: the 128 RAM bytes of this and the previous step, scaled to [0, 1]."""

    size = 256

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.actions = tuple(range(n_actions))

    def features(self, ram: np.ndarray, prev: np.ndarray) -> list[float]:
        return np.concatenate([ram, prev]).astype(np.float32) / 255.0  # type: ignore[return-value]


FEATURES: dict[str, type[RamFeatures]] = {
    "ALE/Pong-v5": PongFeatures,
    "ALE/Breakout-v5": BreakoutFeatures,
    "ALE/SpaceInvaders-v5": SpaceInvadersFeatures,
}


def ram_features(game: str, n_actions: int) -> RamFeatures:
    """The feature extractor for `game`: a RAM map where we have one, else the raw RAM."""
    cls = FEATURES.get(resolve_game(game).env_id)
    return cls() if cls is not None else RawRamFeatures(n_actions)


def feature_kind(game: str) -> str:
    """'objects' for games with a RAM map, 'raw-ram' otherwise (stored in provenance)."""
    return "objects" if resolve_game(game).env_id in FEATURES else "raw-ram"


@dataclass
class RamFeatureEnv(gym.Env):
    """One Atari game as our pixel env plays it, observed through RAM features.

    Same dynamics as `make_env`: ALE v5 with frameskip 1 and sticky actions, a random 1..noop_max
    noops at reset drawn from the env's own generator (as AtariPreprocessing does), `frame_skip`
    frames per step with rewards summed, the frame cap as truncation. No screen is processed.
    """

    game: str
    settings: AtariSettings = field(default_factory=AtariSettings)

    def __post_init__(self) -> None:
        import ale_py

        gym.register_envs(ale_py)
        spec = resolve_game(self.game)
        self._env = gym.make(
            spec.env_id,
            frameskip=1,
            repeat_action_probability=self.settings.sticky_actions,
            full_action_space=False,
            max_num_frames_per_episode=self.settings.max_episode_frames,
            obs_type="ram",
        ).unwrapped
        n_game_actions = int(self._env.action_space.n)
        self.extractor = ram_features(self.game, n_game_actions)
        self.action_space = gym.spaces.Discrete(len(self.extractor.actions))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.extractor.size,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._env.reset(seed=seed, options=options)
        noop_max = self.settings.noop_max
        noops = self._env.np_random.integers(1, noop_max + 1) if noop_max > 0 else 0
        for _ in range(noops):
            self._env.step(0)
        self.extractor.reset()
        return self.extractor(self._env.ale.getRAM()), {}

    def step(self, action: int):
        game_action = self.extractor.actions[int(action)]
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.settings.frame_skip):
            _, r, terminated, truncated, _ = self._env.step(game_action)
            reward += float(r)
            if terminated or truncated:
                break
        # Episode returns come from SB3's Monitor wrapper, as for any gymnasium env.
        return self.extractor(self._env.ale.getRAM()), reward, terminated, truncated, {}

    def close(self) -> None:
        self._env.close()
