"""Gameplay videos: mp4s decode back with the expected frames / size / fps; side by side; errors."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from iq_atari.demos import load_demos
from iq_atari.experts import get_expert
from iq_atari.video import (
    HEADER_HEIGHT,
    PolicyExpert,
    mp4_writer,
    record_policy_video,
    record_video,
    video_fps,
)
from runners import record


def probe(path: Path) -> tuple[int, int, int, Fraction, str]:
    """(decoded frame count, width, height, average fps, codec) of an mp4, read with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, stream.average_rate, stream.codec_context.name


def test_atari_video_decodes_with_expected_frames_size_and_fps(tmp_path):
    out = tmp_path / "pong.mp4"
    rec = record_video(
        out,
        "Pong",
        [("random", get_expert("Pong", "random"))],
        episodes=2,
        max_steps=12,
        progress=False,
    )
    # One frame per agent step plus the reset frame, per episode; 2x scale + header.
    assert (rec.frames, rec.width, rec.height) == (2 * 13, 320, 2 * 210 + HEADER_HEIGHT)
    assert probe(out) == (26, 320, 460, Fraction(15), "h264")
    assert rec.fps == 15 and rec.lengths == {"random": [12, 12]}
    assert rec.last_frame.shape == (460, 320, 3)
    assert out.read_bytes()[4:8] == b"ftyp" and not list(tmp_path.glob(".*"))  # no temp left


def test_side_by_side_is_twice_as_wide_and_runs_to_the_longer_episode(tmp_path):
    out = tmp_path / "cartpole.mp4"
    left = PolicyExpert(lambda obs: 0, "always-left")  # falls within ~10 steps
    rec = record_video(
        out,
        "CartPole",
        [("left", left), ("expert", get_expert("CartPole"))],
        max_steps=40,
        progress=False,
    )
    frames, width, height, fps, _ = probe(out)
    assert (width, height, fps) == (2 * 600, 400 + HEADER_HEIGHT, Fraction(50))
    assert rec.lengths["left"][0] < 40 and rec.lengths["expert"] == [40]
    assert frames == rec.frames == 41


def test_record_policy_video_takes_a_batch_policy(tmp_path):
    calls = []

    def policy_fn(obs: np.ndarray) -> np.ndarray:
        calls.append(obs.shape)
        return np.ones(len(obs), dtype=np.int64)

    rec = record_policy_video(
        policy_fn, "CartPole", tmp_path / "v" / "u100.mp4", seed=3, max_steps=5
    )
    assert calls[0] == (1, 4) and rec.frames == len(calls) + 1 <= 6
    assert probe(rec.path)[:3] == (rec.frames, 600, 440)


def test_video_fps_is_real_time():
    assert video_fps("Pong") == 15
    assert video_fps("CartPole") == 50 and video_fps("Acrobot-v1") == 15


def test_mp4_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match="no frames"), mp4_writer(out, 30):
        pass
    with pytest.raises(ValueError, match="must be even"), mp4_writer(out, 30) as write:
        write(np.zeros((11, 16, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_runner_records_an_expert_and_saves_demos(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demos = tmp_path / "my_demos.npz"
    argv = ["--game", "CartPole", "--expert", "scripted", "--episodes", "2", "--max-steps", "30",
            "--no-progress", "--save-demos", str(demos)]  # fmt: skip
    assert record.main(argv) == 0
    assert "wrote videos/CartPole/controller-seed0-2ep.mp4" in capsys.readouterr().out
    assert probe(tmp_path / "videos/CartPole/controller-seed0-2ep.mp4")[0] == 62
    loaded = load_demos(demos, game="CartPole")
    assert list(loaded.lengths) == [30, 30] and loaded.trajectories[0].truncated
    assert loaded.meta["expert"]["name"] == "controller" and loaded.meta["episode_seeds"] == [0, 1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "nope/best.pt"], "--checkpoint: nope/best.pt: no such checkpoint file"),
        (["--run", "nope"], "--run: nope: no such run directory"),
        ([], "no trained run of CartPole under runs/CartPole/"),
        (["--expert", "no-such-expert"], "unknown expert 'no-such-expert'"),
        (["--expert", "random", "--out", "x.avi"], "--out: expected a .mp4"),
        (["--run", "r", "--checkpoint", "c"], "--run DIR or --checkpoint PATH, not both"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert record.main(["--game", "CartPole", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_runner_records_an_agent_into_its_run_dir(cartpole_checkpoint, capsys):
    run_dir = cartpole_checkpoint.parent.parent
    argv = ["--game", "cartpole", "--run", str(run_dir), "--side-by-side", "--expert", "random",
            "--max-steps", "8", "--no-progress"]  # fmt: skip
    assert record.main(argv) == 0
    out = run_dir / "videos" / "random-vs-iq-best-greedy-seed0-1ep.mp4"
    assert "agent: iq greedy" in capsys.readouterr().out
    frames, width, *_ = probe(out)
    assert width == 1200 and 2 <= frames <= 9


def test_runner_defaults_to_the_newest_run(cartpole_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(cartpole_checkpoint.parent.parent, tmp_path / "runs/CartPole/iq-0-x")
    assert record.main(["--game", "CartPole", "--max-steps", "3", "--no-progress"]) == 0
    assert "wrote runs/CartPole/iq-0-x/videos/iq-best-greedy-seed0-1ep.mp4" in (
        capsys.readouterr().out
    )


def test_checkpoint_of_another_game_is_refused(cartpole_checkpoint, capsys):
    argv = ["--game", "Acrobot", "--checkpoint", str(cartpole_checkpoint), "--no-progress"]
    assert record.main(argv) == 2
    err = capsys.readouterr().err
    assert "a checkpoint for CartPole, not Acrobot; pass --game CartPole" in err


def test_save_demos_with_two_players_is_refused_before_loading_anything(tmp_path, capsys):
    argv = ["--game", "CartPole", "--run", str(tmp_path / "no-run"), "--side-by-side",
            "--save-demos", str(tmp_path / "d.npz")]  # fmt: skip
    assert record.main(argv) == 2
    assert "--save-demos records one policy" in capsys.readouterr().err


def test_recording_does_not_change_what_is_played(tmp_path):
    """The rendering env plays the same episode as the plain one: --save-demos equals demos."""
    from iq_atari.rollout import collect_episodes

    rec = record_video(
        tmp_path / "c.mp4",
        "CartPole",
        [("e", get_expert("CartPole", "random"))],
        seed=5,
        keep_trajectories=True,
        progress=False,
    )
    (plain,) = collect_episodes("CartPole", get_expert("CartPole", "random"), 1, 5, progress=False)
    recorded = rec.trajectories["e"][0]
    assert np.array_equal(recorded.obs, plain.obs)
    assert np.array_equal(recorded.actions, plain.actions)
    assert np.array_equal(recorded.rewards, plain.rewards)
    assert (recorded.terminated, recorded.truncated) == (plain.terminated, plain.truncated)


def test_training_records_a_video_every_n_evaluations(tmp_path, cartpole_one_demo):
    from iq_atari.config import TrainConfig
    from iq_atari.train import train

    config = TrainConfig(
        game="CartPole",
        demos=str(cartpole_one_demo),
        steps=30,
        eval_interval=10,
        eval_episodes=1,
        video_every=2,
        video_max_steps=20,
        reward_check_episodes=0,
        run_dir=str(tmp_path / "run"),
        progress=False,
    )
    train(config)
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").iterdir())
    assert videos == ["update-0000020.mp4"]  # evaluations at 10, 20, 30: every second one
    frames, width, height, _, codec = probe(tmp_path / "run" / "videos" / videos[0])
    assert codec == "h264" and 2 <= frames <= 21 and width > 84  # reset frame + <= 20 steps
