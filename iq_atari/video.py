"""Gameplay videos: play policies on full-colour emulator frames and write a browser-ready mp4.

One video frame per agent step (plus the reset frame), so an Atari video at 60 / frame_skip fps
(15 fps at the usual skip of 4) plays at the console's real speed: ALE emulates NTSC at 60 Hz and
the agent acts every `frame_skip` of those frames. Classic-control videos use the env's own
`metadata["render_fps"]`. The skipped emulator frames are not written: a quarter of the frames
keeps files and encoding time small, and the agent never sees the others either.

Every panel has a header with its label, the episode and step, and the running raw score. In a
side-by-side video the policies play the same seeds in lockstep, each in its own env; a policy
whose episode has ended stays on its last frame (marked "game over") until all have ended.
Episodes follow one another in a single file. Frames are streamed to the encoder (H.264, yuv420p,
+faststart), never held in memory, and the file appears atomically when complete.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

from iq_atari.demos import Trajectory
from iq_atari.envs import AtariSettings, make_env, resolve_game
from iq_atari.episodes import single_frame  # the demo-file form of an observation
from iq_atari.evaluation import PolicyFn, eval_settings
from iq_atari.experts import Expert
from iq_atari.utils import atomic_path

ATARI_HZ = 60  # NTSC frames per second emulated by ALE
HEADER_HEIGHT = 40  # pixels of label / score text above each panel
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _GREY, _RED = (255, 255, 255), (170, 170, 170), (255, 110, 110)

Policy = Callable[[np.ndarray], int]  # observation (as the env gives it) -> action


class PolicyExpert:
    """Wraps a plain `policy(obs) -> action` (e.g. a trained agent) in the Expert interface."""

    def __init__(self, policy: Policy, name: str, provenance: dict[str, Any] | None = None):
        self._policy = policy
        self.name = name
        self.provenance = dict(provenance or {"kind": "policy"})

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        return int(self._policy(obs))


@dataclass
class Recording:
    """What `record_video` wrote: the file, its frame count / size / rate, and what was played."""

    path: Path
    frames: int
    width: int
    height: int
    fps: Fraction
    settings: AtariSettings | None  # what the envs used (Atari), for demo metadata
    labels: list[str]
    returns: dict[str, list[float]]  # per label, the raw score of each episode
    lengths: dict[str, list[int]]  # per label, agent steps of each episode
    last_frame: np.ndarray  # the final composed RGB frame (H, W, 3), e.g. for a TensorBoard image
    # Per label, the played episodes (only with `keep_trajectories`).
    trajectories: dict[str, list[Trajectory]] = field(default_factory=dict)


def video_fps(game: str, settings: AtariSettings | None = None) -> Fraction:
    """Frames per second at which one frame per agent step plays at the game's real speed."""
    spec = resolve_game(game)
    if spec.is_atari:
        return Fraction(ATARI_HZ, (settings or AtariSettings()).frame_skip)
    env = gym.make(spec.env_id)
    try:
        return Fraction(env.metadata.get("render_fps") or 30)
    finally:
        env.close()


@contextlib.contextmanager
def mp4_writer(
    path: str | Path, fps: Fraction | int, crf: int = 20
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(rgb_frame)`; frames go to an H.264 mp4 at `path`, written atomically.

    The first frame fixes the size (both sides must be even, as yuv420p needs). Nothing is left
    at `path` if the body raises or writes no frame.
    """
    with (
        atomic_path(path, suffix=".mp4") as tmp,
        av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container,
    ):
        stream: Any = None

        def write(frame: np.ndarray) -> None:
            nonlocal stream
            height, width = frame.shape[:2]
            if stream is None:
                if height % 2 or width % 2:
                    raise ValueError(f"mp4_writer: frame size {width}x{height} must be even")
                stream = container.add_stream(
                    "libx264", rate=Fraction(fps), options={"crf": str(crf), "preset": "veryfast"}
                )
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.thread_count = 2
            elif (height, width) != (stream.height, stream.width):
                raise ValueError(
                    f"mp4_writer: frame size {width}x{height} differs from the first frame's "
                    f"{stream.width}x{stream.height}"
                )
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(image))

        yield write
        if stream is None:
            raise ValueError(f"mp4_writer: no frames written to {path}")
        container.mux(stream.encode(None))  # flush the encoder's delayed frames


def format_score(score: float) -> str:
    """A raw score for display: integers without decimals, others to one decimal."""
    return f"{score:.0f}" if float(score).is_integer() else f"{score:.1f}"


def panel(
    frame: np.ndarray, label: str, score: float, detail: str, scale: int = 1, over: bool = False
) -> np.ndarray:
    """A game frame scaled up (nearest neighbour) below a header with label, score and detail."""
    if scale > 1:
        frame = cv2.resize(
            frame, (frame.shape[1] * scale, frame.shape[0] * scale), interpolation=cv2.INTER_NEAREST
        )
    height, width = frame.shape[:2]
    out = np.zeros((HEADER_HEIGHT + height + height % 2, width + width % 2, 3), dtype=np.uint8)
    out[HEADER_HEIGHT : HEADER_HEIGHT + height, :width] = frame
    score_text = f"score {format_score(score)}"
    (score_w, _), _ = cv2.getTextSize(score_text, _FONT, 0.55, 2)
    cv2.putText(out, label, (6, 16), _FONT, 0.5, _WHITE, 1, cv2.LINE_AA)
    cv2.putText(out, score_text, (width - score_w - 6, 17), _FONT, 0.55, _WHITE, 2, cv2.LINE_AA)
    cv2.putText(out, detail, (6, 34), _FONT, 0.42, _GREY, 1, cv2.LINE_AA)
    if over:
        (over_w, _), _ = cv2.getTextSize("game over", _FONT, 0.42, 1)
        cv2.putText(out, "game over", (width - over_w - 6, 34), _FONT, 0.42, _RED, 1, cv2.LINE_AA)
    return out


class _Player:
    """One policy in its own rendering env, stepped one agent step at a time."""

    def __init__(
        self,
        game: str,
        label: str,
        expert: Expert,
        seed: int,
        settings: AtariSettings | None,
        keep: bool,
    ):
        self.label, self.expert, self.keep = label, expert, keep
        if not resolve_game(game).is_atari:
            # Classic-control rgb_array rendering runs pygame.init(), whose SDL display and
            # audio probing print "error: XDG_RUNTIME_DIR ..." and ALSA noise on headless
            # machines. Off-screen drawing needs neither; a user's own choice is kept.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        self.env = make_env(game, seed, settings=settings, render_mode="rgb_array")

    def reset(self, seed: int) -> None:
        self.obs, _ = self.env.reset(seed=seed)
        self.expert.reset(self.env)
        self.score, self.steps, self.done = 0.0, 0, False
        self.terminated = self.truncated = False
        self.frame = self.env.render()
        self.observations = [single_frame(self.obs)] if self.keep else []
        self.actions: list[int] = []
        self.rewards: list[float] = []

    def step(self, max_steps: int | None) -> None:
        action = int(self.expert.act(self.obs, self.env))
        self.obs, reward, self.terminated, self.truncated, _ = self.env.step(action)
        self.score += float(reward)
        self.steps += 1
        self.frame = self.env.render()
        if self.keep:
            self.observations.append(single_frame(self.obs))
            self.actions.append(action)
            self.rewards.append(float(reward))
        if max_steps is not None and self.steps >= max_steps and not self.terminated:
            self.truncated = True
        self.done = self.terminated or self.truncated

    def trajectory(self) -> Trajectory:
        return Trajectory(
            obs=np.stack(self.observations),
            actions=np.asarray(self.actions, dtype=np.int64),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            terminated=self.terminated,
            truncated=self.truncated,
        )


def record_video(
    path: str | Path,
    game: str,
    players: Sequence[tuple[str, Expert]],
    *,
    episodes: int = 1,
    seed: int = 0,
    settings: AtariSettings | None = None,
    max_steps: int | None = None,
    keep_trajectories: bool = False,
    progress: bool = True,
) -> Recording:
    """Play `episodes` episodes (seeds seed, seed+1, ...) with each (label, expert) into one mp4.

    Several players appear side by side, left to right, on the same seeds. `max_steps` caps each
    episode (the episode then counts as truncated). With `keep_trajectories` the played episodes
    are returned as Trajectories (for `save_demos`).
    """
    if not players:
        raise ValueError("record_video: no players")
    if episodes < 1:
        raise ValueError(f"record_video: episodes must be >= 1, got {episodes}")
    spec = resolve_game(game)
    settings = eval_settings(settings) if spec.is_atari else None
    fps = video_fps(game, settings)
    scale = 2 if spec.is_atari else 1  # 160x210 is too small to watch in a browser
    labels = [label for label, _ in players]
    if len(set(labels)) != len(labels):
        raise ValueError(f"record_video: labels must differ, got {labels}")
    playing = [_Player(game, label, e, seed, settings, keep_trajectories) for label, e in players]
    returns: dict[str, list[float]] = {label: [] for label in labels}
    lengths: dict[str, list[int]] = {label: [] for label in labels}
    trajectories: dict[str, list[Trajectory]] = {label: [] for label in labels}
    frame = np.zeros((0, 0, 3), np.uint8)
    n_frames = 0

    def compose(episode: int) -> np.ndarray:
        panels = [
            panel(
                p.frame,
                p.label,
                p.score,
                f"ep {episode + 1}/{episodes}  step {p.steps}",
                scale,
                over=p.done,
            )
            for p in playing
        ]
        for right in panels[1:]:
            right[:, :2] = _GREY  # a divider that keeps the width an exact multiple
        return np.hstack(panels)

    bar = tqdm(desc=f"video {spec.name}", unit="frame", disable=not progress, file=sys.stderr)
    try:
        with mp4_writer(path, fps) as write:
            for episode in range(episodes):
                for player in playing:
                    player.reset(seed + episode)
                while True:
                    frame = compose(episode)
                    write(frame)
                    n_frames += 1
                    bar.update()
                    if all(p.done for p in playing):
                        break
                    for player in playing:
                        if not player.done:
                            player.step(max_steps)
                for player in playing:
                    returns[player.label].append(player.score)
                    lengths[player.label].append(player.steps)
                    if keep_trajectories:
                        trajectories[player.label].append(player.trajectory())
                bar.set_postfix({p.label: format_score(p.score) for p in playing})
    finally:
        bar.close()
        for player in playing:
            player.env.close()
    height, width = frame.shape[:2]
    return Recording(
        Path(path),
        n_frames,
        width,
        height,
        fps,
        settings,
        labels,
        returns,
        lengths,
        frame,
        trajectories,
    )


def record_policy_video(
    policy_fn: PolicyFn,
    game: str,
    path: str | Path,
    seed: int,
    *,
    settings: AtariSettings | None = None,
    episodes: int = 1,
    max_steps: int | None = 2_000,
    label: str = "agent",
    progress: bool = False,
) -> Recording:
    """Record `policy_fn` playing `game` to `path`: videos during training (`--video-every`).

    `policy_fn` maps a batch of observations to a batch of actions, as for `evaluate`. The env is
    `make_env(game, seed, settings=eval_settings(settings))`, so the policy sees the observations
    it is trained on; episodes are capped at `max_steps` agent steps.
    """
    policy = PolicyExpert(lambda obs: int(np.asarray(policy_fn(obs[None]))[0]), label)
    return record_video(
        path,
        game,
        [(label, policy)],
        episodes=episodes,
        seed=seed,
        settings=settings,
        max_steps=max_steps,
        progress=progress,
    )
