"""Crash and resume: a training run killed with SIGKILL after its first checkpoint continues from
checkpoints/last.pt with --resume, and its metrics have no duplicate or missing rows."""

import csv
import json
import signal
import subprocess
import sys
import time

import torch

STEPS, EVAL_INTERVAL, LOG_INTERVAL = 2000, 200, 50


def test_sigkill_then_resume_continues_the_run(tmp_path, cartpole_one_demo):
    demos = cartpole_one_demo
    run = tmp_path / "run"
    base = [sys.executable, "-m", "runners.train", "--run-dir", str(run), "--no-progress"]
    base += ["--no-tensorboard", "--threads", "1", "--steps", str(STEPS)]
    flags = ["--demos", str(demos), "--eval-interval", str(EVAL_INTERVAL), "--eval-episodes", "1"]
    flags += ["--log-interval", str(LOG_INTERVAL), "--reward-check-episodes", "0"]
    last = run / "checkpoints" / "last.pt"
    proc = subprocess.Popen([*base, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert last.exists(), "no checkpoint appeared"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = torch.load(last, weights_only=True)["loop"]["updates"]
    assert 0 < killed_at < STEPS and killed_at % EVAL_INTERVAL == 0
    assert not (run / "eval.json").exists()

    resumed = subprocess.run(
        [*base, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr

    record = json.loads((run / "eval.json").read_text())
    assert record["updates"] == STEPS
    final = torch.load(last, weights_only=True)
    assert final["loop"]["updates"] == final["learner"]["updates"] == STEPS
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    keys = [(int(r["step"]), r["tag"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated (step, tag) rows"
    loss_steps = sorted(step for step, tag in keys if tag == "train/total_loss")
    assert loss_steps == list(range(LOG_INTERVAL, STEPS + 1, LOG_INTERVAL))
    eval_steps = sorted(step for step, tag in keys if tag == "eval/mean_return")
    assert eval_steps == list(range(EVAL_INTERVAL, STEPS + 1, EVAL_INTERVAL))


def test_ctrl_c_finishes_the_update_saves_and_prints_a_resume_hint(tmp_path, cartpole_one_demo):
    demos = cartpole_one_demo
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "runners.train", "--run-dir", str(run), "--no-progress"]
    argv += ["--no-tensorboard", "--threads", "1", "--steps", "100000", "--demos", str(demos)]
    argv += ["--eval-interval", "100", "--eval-episodes", "1", "--reward-check-episodes", "0"]
    last = run / "checkpoints" / "last.pt"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"Resume with: python -m runners.train --resume --run-dir {run}" in stderr
    saved = torch.load(last, weights_only=True)
    assert saved["loop"]["updates"] == saved["learner"]["updates"] > 0


def _online(tmp_path, demos, steps, resume=False):
    from iq_atari.config import TrainConfig
    from iq_atari.train import train

    config = TrainConfig(
        game="CartPole",
        mode="online",
        demos=str(demos),
        steps=steps,
        learning_starts=50,
        eval_interval=30,
        eval_episodes=1,
        run_dir=str(tmp_path / "online"),
        resume=resume,
        progress=False,
        tensorboard=False,
        reward_check_episodes=0,
    )
    return train(config)


def test_online_resume_restores_the_replay_instead_of_collecting_again(
    tmp_path, capsys, cartpole_one_demo
):
    import numpy as np

    from iq_atari.collector import REPLAY_FILE

    demos = cartpole_one_demo
    first = _online(tmp_path, demos, steps=60)
    assert first["env_steps"] == 50 + 60  # learning_starts, then one env step per update
    replay = tmp_path / "online" / "checkpoints" / REPLAY_FILE
    with np.load(replay) as npz:
        assert int(npz["updates"]) == 60 and int(npz["has_next"].sum()) >= 100
    resumed = _online(tmp_path, demos, steps=90, resume=True)
    assert resumed["env_steps"] == 110 + 30  # no second learning_starts
    assert "not restored" not in capsys.readouterr().err

    # A replay that does not belong to last.pt is left unused, with one line saying why.
    with np.load(replay) as npz:
        state = dict(npz)
    state["updates"] = np.int64(7)
    np.savez(replay, **state)
    again = _online(tmp_path, demos, steps=100, resume=True)
    assert again["env_steps"] == 140 + 50 + 10
    err = capsys.readouterr().err
    assert "replay.npz: not restored (it is from update 7, last.pt from update 90)" in err
