"""Weight-free Atari experts that read the emulator: the look-ahead machinery they share
(`_Lookahead`) and the Breakout tracker; the Pong experts are in `atari_pong`. All act through
the same preprocessed env as the demos (frame skip 4, sticky actions 0.25, noop reset) and read
`env.unwrapped.ale` (RAM, state clones); the observation is unused.

The Pong planner and the Breakout tracker look ahead by emulating from
`ale.cloneState(include_rng=True)` and restoring that state. Cloning the RNG makes simulations see
the sticky-action draws the real continuation will see, so these are oracle experts (they foresee
their own sticky-action outcomes); their provenance says so. The Pong tracker instead simulates on
a second emulator with sticky actions off, from the state without its RNG: no foresight.

One thing the clone does not hold (ale-py 0.12.1): the action ALE repeats on a sticky frame
(`StellaEnvironment::m_actions`). Each simulation overwrites it, so after `restoreState` a sticky
frame would repeat the last *simulated* action, and the real game would differ from ordinary play.
`_Lookahead` keeps track of the true repeated action and puts it back after every simulation, so
the real continuation is exactly what it would be without look-ahead (a test replays the actions
in a fresh env and compares every frame).

RAM addresses and pixel offsets are in shared/EXPERTS.md.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np

LOOKAHEAD_NOTE = (
    "plans with ale.cloneState(include_rng=True) / restoreState look-ahead: it foresees its own "
    "sticky-action outcomes (an oracle expert); reads RAM, not pixels; the real game is left "
    "exactly as without look-ahead"
)


class _Lookahead:
    """Emulator access for look-ahead: RAM, action ids, and simulations that leave no trace."""

    name = "ale"
    frame_skip = 4
    max_probe = 16  # frames probed for the next non-sticky draw (all sticky: 0.25**16)

    def reset(self, env: gym.Env) -> None:
        unwrapped = env.unwrapped
        self.ale = unwrapped.ale
        meanings = list(unwrapped.get_action_meanings())
        self.raw = dict(zip(meanings, unwrapped._action_set, strict=True))
        self.index = {m: i for i, m in enumerate(meanings)}
        self._repeated = self.raw["NOOP"]  # ALE's action on sticky frames; NOOP after a reset

    def _begin(self) -> None:
        """Clone the current state and find the first frame whose sticky draw takes a new action
        (the draws are fixed by the cloned RNG; one frame of RIGHT vs LEFT differs only there)."""
        ale = self.ale
        self._state = ale.cloneState(include_rng=True)
        right, left = self.raw["RIGHT"], self.raw["LEFT"]
        self._free_frame = self.max_probe
        for frame in range(self.max_probe):
            before = ale.cloneState(include_rng=True)
            ale.act(right)
            after_right = pickle.dumps(ale.cloneState(include_rng=True))
            ale.restoreState(before)
            ale.act(left)
            if pickle.dumps(ale.cloneState(include_rng=True)) != after_right:
                self._free_frame = frame
                break
        self.restore()

    def restore(self) -> None:
        """Back to the cloned state, with ALE's repeated action as it was there."""
        ale = self.ale
        ale.restoreState(self._state)
        if self._free_frame < self.max_probe:
            for _ in range(self._free_frame + 1):  # the last of these frames takes the action
                ale.act(self._repeated)
            ale.restoreState(self._state)

    def _commit(self, action: int) -> int:
        """Restore, and remember the action ALE will repeat after the real step takes `action`."""
        self.restore()
        if self._free_frame < self.frame_skip:
            self._repeated = self.raw[self.meanings[action]]
        return action

    def _cheapest(self, frames_to_ball: int, target: int, near: bool) -> int:
        """Commit to the move of `self.moves` (NOOP first) whose simulated paddle ends closest to
        `target`, by the subclass's `_cost`; a near ball is also checked for its return."""
        frames = min(max(frames_to_ball, self.frame_skip), 16)
        best, best_cost = 0, float("inf")
        for index, raw_action in self.moves:
            cost = self._cost(raw_action, frames, 8 if near else 0, target, near)
            self.restore()
            if cost < best_cost:  # strict: ties keep the earlier action (NOOP first)
                best, best_cost = index, cost
        return self._commit(best)

    @property
    def meanings(self) -> list[str]:
        return list(self.index)


# ---- Breakout -----------------------------------------------------------------------------------

BREAKOUT_PADDLE_ROW = 176  # ram[101] (ball y) from which a falling ball meets the paddle
BREAKOUT_HORIZON = 200
BREAKOUT_MAX_SCORE = 864  # both walls cleared: no brick is left and the ball would bounce forever
BREAKOUT_STALL_STEPS = 300  # agent steps without a point before the hit point is changed
BREAKOUT_OFFSETS = (0, 5, -5, 3, -3)  # paddle centre minus ball x at contact, tried in turn


def _bcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0xF)


def _breakout_score(ram: np.ndarray) -> int:
    return _bcd(int(ram[76])) * 100 + _bcd(int(ram[77]))


def _breakout_ball_x(ram: np.ndarray) -> int:
    return int(ram[99]) - 49 + 1


def _breakout_paddle_centre(ram: np.ndarray) -> int:
    return int(ram[72]) - 47 + 8


class BreakoutTracker(_Lookahead):
    """Breakout: emulate ahead to where the ball comes down to the paddle's row, and take the
    action whose simulated paddle ends closest to it (the paddle moves in jumps of up to ~20 px
    per agent step, so a plain tracker overshoots); FIRE when no ball is in play. Once both
    walls are cleared (864 points, nothing left to score) it keeps the paddle away from the
    ball, so the game ends instead of running to the frame limit. When the ball loops without
    scoring for `BREAKOUT_STALL_STEPS` steps it moves on to the next hit point
    (`BREAKOUT_OFFSETS`), which changes the bounce angle."""

    name = "tracker"

    def __init__(self, near_frames: int = 16) -> None:
        self.near_frames = near_frames
        self.provenance: dict[str, Any] = {
            "kind": "scripted",
            "source": f"{__name__}.BreakoutTracker",
            "params": {"near_frames": near_frames},
            "note": LOOKAHEAD_NOTE + "; lets the ball go once the score is 864 (cleared); "
            "changes its hit point after 300 steps without a point",
        }

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        self.noop = self.raw["NOOP"]
        self.moves = [(self.index[m], self.raw[m]) for m in ("NOOP", "RIGHT", "LEFT")]
        self._score, self._since_score, self._offset = -1, 0, 0

    def _hit_offset(self, score: int) -> int:
        """The hit point to use: the next one in turn after a stall without points."""
        self._since_score = 0 if score != self._score else self._since_score + 1
        self._score = score
        if self._since_score >= BREAKOUT_STALL_STEPS:
            self._since_score = 0
            self._offset = (self._offset + 1) % len(BREAKOUT_OFFSETS)
        return BREAKOUT_OFFSETS[self._offset]

    def _landing(self) -> tuple[int, int] | None:
        """Frames until the falling ball reaches the paddle row, and its centre x there."""
        ale, prev_y = self.ale, None
        for frame in range(1, BREAKOUT_HORIZON + 1):
            ale.act(self.noop)
            ram = ale.getRAM()
            y = int(ram[101])
            if y == 0:
                return None  # the ball is lost (or gone) before reaching the paddle
            if prev_y is not None and y > prev_y and y >= BREAKOUT_PADDLE_ROW:
                return frame, _breakout_ball_x(ram)
            prev_y = y
        return None

    def _cost(self, raw_action: int, frames: int, extra: int, target: int, near: bool) -> float:
        """Distance of the paddle centre to `target` after `frames` frames, starting with
        `raw_action` (for one agent step) then NOOP; `extra` frames more check the return.
        When `near`, a lost life costs 999 and not returning the ball 1000 more."""
        ale, lives, distance = self.ale, self.ale.lives(), 0.0
        prev_y, returned = None, False
        for frame in range(frames + extra):
            ale.act(raw_action if frame < self.frame_skip else self.noop)
            if near and ale.lives() < lives:
                return 1999.0
            ram = ale.getRAM()
            if frame == frames - 1:
                distance = abs(_breakout_paddle_centre(ram) - target)
            y = int(ram[101])
            returned = returned or (prev_y is not None and 0 < y < prev_y)
            prev_y = y
        return distance + (1000.0 if near and not returned else 0.0)

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        ram = self.ale.getRAM()
        self._begin()
        if ram[101] == 0:
            return self._commit(self.index["FIRE"])
        cleared = _breakout_score(ram) >= BREAKOUT_MAX_SCORE
        offset = self._hit_offset(_breakout_score(ram))
        landing = self._landing()
        self.restore()
        if landing is None:
            frames_to_ball, target = 16, _breakout_ball_x(ram)
        else:
            frames_to_ball, target = landing[0], landing[1] + offset
        if cleared:  # nothing left to score: keep the paddle away from the ball to end the game
            target += -40 if target > 80 else 40
        near = landing is not None and frames_to_ball <= self.near_frames and not cleared
        return self._cheapest(frames_to_ball, target, near)
