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
