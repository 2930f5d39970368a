"""Faults inside the training loop: a NaN loss stops the run and keeps the last good checkpoint;
Ctrl-C (KeyboardInterrupt) writes checkpoints/last.pt, prints a resume hint, and the run resumes."""

import csv
import math

import pytest
import torch

from iq_atari.config import TrainConfig
from iq_atari.errors import NumericalError
from iq_atari.iq_learner import IQLearner
from iq_atari.train import train

FAST = dict(progress=False, tensorboard=False, reward_check_episodes=0, eval_episodes=1)


@pytest.fixture
def demos(cartpole_one_demo):
    return cartpole_one_demo


def _patch_update(monkeypatch, fault_at: int, fault) -> None:
    """From its `fault_at`-th call on (1-based), IQLearner.update passes its metrics to `fault`."""
    original = IQLearner.update
    calls = {"n": 0}

    def update(self, expert_batch, agent_batch):
        calls["n"] += 1
        if calls["n"] >= fault_at:
            return fault(original(self, expert_batch, agent_batch))
        return original(self, expert_batch, agent_batch)

    monkeypatch.setattr(IQLearner, "update", update)


def _config(demos, run_dir, **kwargs) -> TrainConfig:
    values = dict(game="CartPole", demos=str(demos), steps=30, eval_interval=10, log_interval=5)
    return TrainConfig(run_dir=str(run_dir), threads=1, **{**values, **FAST, **kwargs})


def test_nan_loss_stops_and_keeps_last_good_checkpoint(demos, tmp_path, monkeypatch):
    def nan_loss(metrics):
        return {**metrics, "total_loss": torch.tensor(math.nan)}

    _patch_update(monkeypatch, 13, nan_loss)
    run = tmp_path / "run"
    with pytest.raises(NumericalError, match=r"train/total_loss is nan at update 15"):
        train(_config(demos, run))
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["loop"]["updates"] == 10
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert max(int(r["step"]) for r in rows) == 10
    assert all(math.isfinite(float(r["value"])) for r in rows)


def test_nan_loss_cli_gives_one_error_line(demos, tmp_path, monkeypatch, capsys):
    from runners import train as train_runner

    _patch_update(monkeypatch, 3, lambda m: {**m, "v_expert": torch.tensor(math.inf)})
    argv = ["--demos", str(demos), "--steps", "10", "--log-interval", "5", "--eval-interval", "5"]
    argv += ["--run-dir", str(tmp_path / "run"), "--no-progress", "--no-tensorboard"]
    assert train_runner.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train/v_expert is inf"), err


def test_keyboard_interrupt_saves_and_resumes(demos, tmp_path, monkeypatch, capsys):
    def interrupt(metrics):
        raise KeyboardInterrupt

    _patch_update(monkeypatch, 8, interrupt)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_config(demos, run, steps=20))
    err = capsys.readouterr().err
    assert f"Resume with: python -m runners.train --resume --run-dir {run}" in err
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["loop"]["updates"] == 7

    monkeypatch.undo()
    record = train(TrainConfig(run_dir=str(run), resume=True, progress=False))
    assert record["updates"] == 20
    with open(run / "metrics.csv") as f:
        keys = [(r["step"], r["tag"]) for r in csv.DictReader(f)]
    assert len(keys) == len(set(keys))
    assert {int(step) for step, _ in keys} == {5, 10, 15, 20}
