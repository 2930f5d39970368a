"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from iq_atari.rollout import record_demos


@pytest.fixture(scope="session")
def cartpole_one_demo(tmp_path_factory) -> Path:
    """One CartPole controller episode (seed 0), recorded once per test session; read-only."""
    path = tmp_path_factory.mktemp("demos") / "CartPole_controller_1ep.npz"
    return record_demos("CartPole", None, episodes=1, seed=0, out=path, progress=False)


@pytest.fixture(scope="session")
def cartpole_checkpoint(tmp_path_factory, cartpole_one_demo) -> Path:
    """A tiny trained CartPole run (20 updates on one demo episode): its checkpoints/best.pt."""
    from iq_atari.config import TrainConfig
    from iq_atari.train import train

    root = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        game="CartPole",
        demos=str(cartpole_one_demo),
        steps=20,
        eval_interval=20,
        eval_episodes=1,
        run_dir=str(root / "run"),
        tensorboard=False,
        progress=False,
    )
    train(config)
    return root / "run" / "checkpoints" / "best.pt"
