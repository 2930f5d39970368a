"""Rollouts, `record_demos`, the demos runner, and the import of official IQ-Learn files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import iq_atari.rollout as rollout
from iq_atari.demo_library import find_demos
from iq_atari.demos import load_demos
from iq_atari.envs import make_env
from iq_atari.errors import DemoError
from iq_atari.experts import get_expert
from iq_atari.rollout import collect_episodes, record_demos
from runners.demos import main as demos_main


def test_episode_i_uses_seed_plus_i() -> None:
    expert = get_expert("Acrobot")
    a = collect_episodes("Acrobot", expert, 2, seed=10, progress=False)
    b = collect_episodes("Acrobot", expert, 1, seed=11, progress=False)
    np.testing.assert_array_equal(a[1].obs, b[0].obs)
    assert not np.array_equal(a[0].obs[0], a[1].obs[0])
    again = collect_episodes("Acrobot", expert, 2, seed=10, progress=False)
    for x, y in zip(a, again, strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)


def test_trajectory_ends() -> None:
    (cart,) = collect_episodes("CartPole", get_expert("CartPole"), 1, 0, progress=False)
    assert len(cart) == 500 and cart.truncated and not cart.terminated  # time limit
    (acro,) = collect_episodes("Acrobot", get_expert("Acrobot"), 1, 0, progress=False)
    assert acro.terminated and not acro.truncated and acro.ret == -(len(acro) - 1)


def test_record_demos_default_path_and_table(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(rollout, "DEMO_DIR", tmp_path)
    path = record_demos("MountainCar", None, 3, seed=0, progress=False)
    assert path == tmp_path / "MountainCar_planner_3ep.npz"
    out = capsys.readouterr().out
    assert "return" in out and "length" in out and "mean" in out and "wrote" in out
    demos = load_demos(path, env=make_env("MountainCar"))
    assert len(demos) == 3 and demos.meta["expert"]["name"] == "planner"
    assert demos.meta["episode_seeds"] == [0, 1, 2]
    assert find_demos("MountainCar", tmp_path) == path


def test_record_demos_min_return(tmp_path) -> None:
    played = collect_episodes("Acrobot", get_expert("Acrobot"), 4, 0, progress=False)
    returns = sorted(t.ret for t in played)
    threshold = returns[2]  # keeps the 2 best
    path = record_demos(
        "Acrobot", None, 4, 0, out=tmp_path / "a.npz", min_return=threshold, progress=False
    )
    demos = load_demos(path)
    assert len(demos) == 2 and (demos.returns >= threshold).all()
    assert demos.meta["min_return"] == threshold
    with pytest.raises(DemoError, match="no episode reached"):
        record_demos("Acrobot", None, 2, 0, out=tmp_path / "b.npz", min_return=0, progress=False)
    assert not (tmp_path / "b.npz").exists()


def test_demos_runner(tmp_path, capsys) -> None:
    out = tmp_path / "c.npz"
    assert (
        demos_main(["--game", "cartpole", "--episodes", "2", "--out", str(out), "--no-progress"])
        == 0
    )
    assert len(load_demos(out, game="CartPole-v1")) == 2
    assert demos_main(["--game", "Seaquest", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Seaquest has no default expert; pass EXPERT=")
    assert demos_main(["--game", "Pongg"]) == 2
    assert "closest matches: Pong" in capsys.readouterr().err


# ---- import of official IQ-Learn files -----------------------------------------------------------


def _official_cartpole(path: Path, episodes: int = 2) -> list:
    """Write a file shaped as the official generator's: per-episode lists, done on the last step."""
    trajs = collect_episodes("Acrobot", get_expert("Acrobot"), episodes, 0, progress=False)
    data = {k: [] for k in ("states", "next_states", "actions", "rewards", "dones", "lengths")}
    for t in trajs:
        data["states"].append([s.astype(np.float64) for s in t.obs[:-1]])
        data["next_states"].append([s for s in t.obs[1:]])
        data["actions"].append([int(a) for a in t.actions])
        data["rewards"].append([float(r) for r in t.rewards])
        data["dones"].append([False] * (len(t) - 1) + [True])
        data["lengths"].append(len(t))
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return trajs


def test_import_refuses_pickle_without_trust(tmp_path, capsys) -> None:
    src = tmp_path / "Acrobot-v1_2.pkl"
    _official_cartpole(src)
    assert (
        demos_main(
            ["--game", "Acrobot", "--import-iq-learn", str(src), "--out", str(tmp_path / "x.npz")]
        )
        == 2
    )
    assert "--trust-pickle" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_import_vector(tmp_path) -> None:
    src = tmp_path / "Acrobot-v1_2.pkl"
    trajs = _official_cartpole(src)
    out = tmp_path / "imported.npz"
    assert (
        demos_main(
            [
                "--game",
                "Acrobot",
                "--import-iq-learn",
                str(src),
                "--trust-pickle",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    demos = load_demos(out, env=make_env("Acrobot"))
    assert demos.meta["expert"]["kind"] == "imported"
    for a, b in zip(trajs, demos.trajectories, strict=True):
        np.testing.assert_allclose(a.obs, b.obs)
        np.testing.assert_array_equal(a.actions, b.actions)
        assert b.terminated and not b.truncated


def test_import_atari_stacks_and_npy(tmp_path) -> None:
    """Official Atari states are (4, 84, 84) channel-first stacks; keep the newest frame."""
    from iq_atari.iq_learn_files import import_iq_learn

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(11, 84, 84), dtype=np.uint8)
    stacks = np.stack([frames[np.clip(np.arange(t - 3, t + 1), 0, None)] for t in range(11)])
    data = {
        "states": [list(stacks[:-1])],
        "next_states": [list(stacks[1:])],
        "actions": [list(rng.integers(0, 6, 10))],
        "rewards": [[0.0] * 9 + [1.0]],
        "dones": [[False] * 10],  # cut short: not done -> truncated
        "lengths": [10],
    }
    src = tmp_path / "pong.npy"
    np.save(src, np.array(data, dtype=object), allow_pickle=True)
    with pytest.raises(DemoError, match="--trust-pickle"):
        import_iq_learn(src, "Pong")
    out = import_iq_learn(src, "Pong", out=tmp_path / "p.npz", trust_pickle=True)
    demos = load_demos(out, env=make_env("Pong"))
    traj = demos.trajectories[0]
    np.testing.assert_array_equal(traj.obs, frames)
    assert traj.truncated and not traj.terminated and demos.returns[0] == 1.0
    np.testing.assert_array_equal(demos.stacked_obs(0)[3:], stacks[3:])  # equal once stacks fill
    assert not demos.stacked_obs(0)[0, 0].any()  # ours pads with zeros, theirs repeated frame 0

    data["next_states"][0][3] = data["next_states"][0][4]  # no longer the following states
    np.save(src, np.array(data, dtype=object), allow_pickle=True)
    with pytest.raises(DemoError, match="next_states\\[0\\]: not the following states"):
        import_iq_learn(src, "Pong", out=tmp_path / "q.npz", trust_pickle=True)
