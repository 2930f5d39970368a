"""Weight-free Pong experts that read the emulator: the look-ahead `PongPlanner` (an oracle that
foresees its own sticky-action draws) and the `PongTracker` (the same search on a sticky-free
copy of the emulator, without that foresight). The look-ahead machinery is
`atari_scripted._Lookahead`; RAM addresses and pixel offsets are in shared/EXPERTS.md.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from iq_atari.experts.atari_scripted import LOOKAHEAD_NOTE, _Lookahead

PONG_CONTACT_X = 139  # ball left x at which it meets the player's paddle (screen x 140-143)
PONG_MIDDLE = 114  # paddle centre y in the middle of the field
PONG_HORIZON = 200  # frames of NOOP emulated to find where the ball arrives
# Hit points the planner chooses among (paddle centre minus ball centre at contact): off-centre
# only, since centre hits make endless rallies (shared/EXPERTS.md); the paddle with the ball
# spans -10..10.
PONG_AIMS = (*range(-12, -4), *range(5, 13))


def _pong_ball(ram: np.ndarray) -> tuple[int, int] | None:
    """Ball (left x, centre y) on screen, or None when no ball is in play."""
    if ram[49] in (0, 205):
        return None
    return int(ram[49]) - 49, int(ram[54]) - 14 + 2


def _pong_paddle_centre(ram: np.ndarray, address: int = 51) -> int:
    return int(ram[address]) - 14 + 8


class PongPlanner(_Lookahead):
    """Pong: predict where the ball arrives, choose where on the paddle to hit it, and take the
    action whose simulated paddle ends closest to that target (EXPERTS.md "What worked").

    The hit point (`aim`) is chosen once per incoming ball by simulating the shot for every aim
    in -12..12, the paddle held there in the simulation by RAM writes (ram[51] drawn position,
    ram[60] where the game moves it), and taking the middle of the longest run of aims after
    which we score. With none it hits 8 px off-centre away from the opponent, avoiding aims that
    lose the point.
    """

    name = "planner"

    def __init__(self, aim: int = 8, near_frames: int = 16, choose_aim: bool = True) -> None:
        self.aim = aim
        self.near_frames = near_frames
        self.choose_aim = choose_aim
        self.provenance: dict[str, Any] = {
            "kind": "scripted",
            "source": f"{__name__}.PongPlanner",
            "params": {"aim": aim, "near_frames": near_frames, "choose_aim": choose_aim},
            "note": LOOKAHEAD_NOTE + "; picks the hit point by simulating each shot with the "
            "paddle held in place through RAM writes (simulation only)",
        }
        self._aim_cache: tuple[int, int] | None = None  # (contact frame number, aim)
        self._arrival_cache: tuple[int, int] | None = None  # (contact frame number, ball y)

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        self.noop = self.raw["NOOP"]
        self.moves = [(self.index[m], self.raw[m]) for m in ("NOOP", "RIGHT", "LEFT")]
        self._aim_cache = None
        self._arrival_cache = None

    def _arrival(self) -> tuple[int, int] | None:
        """Frames until the ball reaches the paddle column moving right, and its centre y there."""
        ale, prev_x = self.ale, None
        for frame in range(1, PONG_HORIZON + 1):
            if ale.act(self.noop) != 0:
                return None  # a point is scored first
            ball = _pong_ball(ale.getRAM())
            if ball is None:
                return None
            if prev_x is not None and ball[0] > prev_x and ball[0] >= PONG_CONTACT_X:
                return frame, ball[1]
            prev_x = ball[0]
        return None

    def _shot_outcome(self, frames_to_ball: int, arrival_y: int, aim: int) -> float:
        """+1 if hitting the ball with the paddle centre `aim` px below it scores, -1 if the
        point is lost, 0 if the opponent returns it."""
        ale = self.ale
        paddle_ram = arrival_y + aim + 14 - 8
        prev_x = None
        for frame in range(1, 2 * PONG_HORIZON):
            if frames_to_ball - 6 <= frame <= frames_to_ball + 3:
                ale.setRAM(51, paddle_ram)
                ale.setRAM(60, paddle_ram)
            reward = ale.act(self.noop)
            if reward != 0:
                return float(np.sign(reward))
            ball = _pong_ball(ale.getRAM())
            if ball is not None and frame > frames_to_ball + 3:
                if prev_x is not None and ball[0] > prev_x and ball[0] < 60:
                    return 0.0  # the opponent returned it
                prev_x = ball[0]
        return 0.0

    def _choose_aim(self, frames_to_ball: int, arrival_y: int, opponent_y: int) -> int:
        default = -self.aim if opponent_y < arrival_y else self.aim
        if not self.choose_aim:
            return default
        outcomes = {}
        for aim in PONG_AIMS:
            outcomes[aim] = self._shot_outcome(frames_to_ball, arrival_y, aim)
            self.restore()
        runs: list[list[int]] = []
        for aim in PONG_AIMS:
            if outcomes[aim] > 0:
                if runs and runs[-1][-1] == aim - 1:  # contiguous: robust to a px of error
                    runs[-1].append(aim)
                else:
                    runs.append([aim])
        if runs:
            best = max(runs, key=len)
            return best[len(best) // 2]
        safe = [aim for aim in PONG_AIMS if outcomes[aim] == 0]
        return min(safe, key=lambda aim: abs(aim - default)) if safe else default

    def _cost(self, raw_action: int, frames: int, extra: int, target: int, near: bool) -> float:
        """Distance of the paddle centre to `target` after `frames` frames, starting with
        `raw_action` (for one agent step) then NOOP; `extra` more frames check the return.
        A lost point costs 999, and not returning a near ball 1000 more."""
        ale, distance = self.ale, 0.0
        prev_x, returned = None, False
        for frame in range(frames + extra):
            if ale.act(raw_action if frame < self.frame_skip else self.noop) < 0:
                return 999.0 + (1000.0 if near else 0.0)
            ram = ale.getRAM()
            if frame == frames - 1:
                distance = abs(_pong_paddle_centre(ram) - target)
            ball = _pong_ball(ram)
            if ball is not None:
                returned = returned or (prev_x is not None and ball[0] < prev_x)
                prev_x = ball[0]
        return distance + (1000.0 if near and not returned else 0.0)

    def _predict_arrival(self) -> tuple[int, int] | None:
        """`_arrival`, cached until contact: until then the ball's path does not depend on us."""
        now = self.ale.getEpisodeFrameNumber()
        if self._arrival_cache is not None and self._arrival_cache[0] > now:
            return self._arrival_cache[0] - now, self._arrival_cache[1]
        arrival = self._arrival()
        self.restore()
        self._arrival_cache = None if arrival is None else (now + arrival[0], arrival[1])
        return arrival

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        self._begin()
        arrival = self._predict_arrival()
        if arrival is None:
            frames_to_ball, target = 16, PONG_MIDDLE
        else:
            frames_to_ball, arrival_y = arrival
            contact = self.ale.getEpisodeFrameNumber() + frames_to_ball
            if self._aim_cache is None or abs(self._aim_cache[0] - contact) > 8:
                opponent_y = _pong_paddle_centre(self.ale.getRAM(), 50)
                self._aim_cache = (contact, self._choose_aim(frames_to_ball, arrival_y, opponent_y))
            target = arrival_y + self._aim_cache[1]
        near = arrival is not None and frames_to_ball <= self.near_frames
        return self._cheapest(frames_to_ball, target, near)


class PongTracker(PongPlanner):
    """Pong without foresight: an expert whose moves follow from what the frames show.

    It predicts where the ball arrives and moves the paddle there whenever moving brings it
    closer (the planner's move search, without the return check), hitting the ball `aim` px
    off-centre away from the opponent's paddle. All of that is a function of the ball's position
    and velocity and the two paddles, which a stack of frames shows.

    Unlike the planner it never looks at the real emulator's future: it copies the state
    *without* the RNG into a second emulator with sticky actions off (`twin`) and simulates
    there, so it cannot foresee its own sticky-action draws, and the real game is never touched.
    The planner's foresight is what makes its moves precise and hard to imitate from pixels
    (docs/RESULTS.md, Pong); this expert pays for its honesty with long rallies and lost points
    (aim 4 px: measured in expert_demos/README.md).
    """

    name = "tracker"

    def __init__(self, aim: int = 4) -> None:
        super().__init__(aim=aim, choose_aim=False)
        self.provenance = {
            "kind": "scripted",
            "source": f"{__name__}.PongTracker",
            "params": {"aim": aim},
            "note": "reads RAM; predicts the ball's arrival and searches moves in a second "
            "emulator with sticky actions off, from the real state without its RNG: no "
            "foresight of sticky-action draws, the real game untouched; hits the ball "
            f"{aim} px off-centre away from the opponent",
        }
        self.twin: Any = None
        self.real: Any = None  # the game's emulator; `self.ale` is the twin after `reset`

    def reset(self, env: gym.Env) -> None:
        super().reset(env)
        if self.twin is None:
            from ale_py import ALEInterface, roms

            self.twin = ALEInterface()
            self.twin.setFloat("repeat_action_probability", 0.0)
            self.twin.loadROM(roms.get_rom_path("pong"))
        self.real, self.ale = self.ale, self.twin  # simulations below run on the twin

    def restore(self) -> None:
        self.twin.restoreState(self._state)

    def _commit(self, action: int) -> int:
        return action

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        self._state = self.real.cloneState()  # without the RNG: no sticky-action foresight
        self.restore()
        arrival = self._predict_arrival()
        if arrival is None:
            frames_to_ball, target = 16, PONG_MIDDLE
        else:
            frames_to_ball, arrival_y = arrival
            opponent_y = _pong_paddle_centre(self.real.getRAM(), 50)
            target = arrival_y + self._choose_aim(frames_to_ball, arrival_y, opponent_y)
        return self._cheapest(frames_to_ball, target, near=False)
