"""DAgger distillation: teacher labels on the student's own states, a tiny `runners.distill` run
end to end, and the saved student as an expert that records pixel demos."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from iq_atari.demos import load_demos
from iq_atari.envs import make_env
from iq_atari.errors import InputError
from iq_atari.experts import get_expert
from iq_atari.experts.distill import DistillConfig, PixelPolicyExpert, _play, distill


class ConstantExpert:
    """Always the same action; counts resets."""

    name = "constant"
    provenance = {"kind": "test"}

    def __init__(self, action: int):
        self.action, self.resets = action, 0

    def reset(self, env):
        self.resets += 1

    def act(self, obs, env):
        return self.action


def test_play_records_the_teachers_labels_on_the_students_states():
    env = make_env("Pong", 0)
    try:
        teacher = ConstantExpert(2)
        episode, agreement = _play(env, teacher, lambda obs: 3, seed=0, max_steps=40)
    finally:
        env.close()
    assert teacher.resets == 1
    assert len(episode.trajectory) == 40
    assert (episode.trajectory.actions == 2).all()  # labels, not the executed 3s
    assert agreement == 0.0
    # The teacher playing itself agrees everywhere.
    env = make_env("Pong", 0)
    try:
        _, agreement = _play(env, teacher, None, seed=0, max_steps=10)
    finally:
        env.close()
    assert agreement == 1.0


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    """A student distilled from the Pong tracker in 2 short rounds, with the fine encoder
    trained under bf16 autocast."""
    out = tmp_path_factory.mktemp("distill") / "student.pt"
    done = _run(
        "runners.distill", "--game", "Pong", "--expert", "tracker", "--rounds", "2",
        "--episodes", "1", "--updates", "20", "--max-steps", "60", "--out", str(out),
        "--capacity", "1000", "--checkpoint-dir", str(out.parent / "checkpoints"), "--no-progress",
        "--encoder", "fine", "--bf16",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round 2: student" in done.stdout
    return out


def test_distill_cli_writes_a_student_and_its_rounds(student):
    info = json.loads(student.with_suffix(".json").read_text())
    assert info["algo"] == "distilled" and info["game"] == "ALE/Pong-v5"
    assert info["teacher_name"] == "tracker"
    assert [r["player"] for r in info["rounds"]] == ["teacher", "student", "student"]
    assert [r["transitions"] for r in info["rounds"]] == [60, 120, 180]  # aggregated
    assert info["rounds"][0]["agreement"] == 1.0
    assert info["command"].startswith("python -m runners.distill")
    assert info["config"]["bf16"] and info["config"]["encoder"] == "fine"


def test_student_loads_as_an_expert_and_records_pixel_demos(student, tmp_path):
    expert = get_expert("Pong", str(student))
    assert isinstance(expert, PixelPolicyExpert)
    assert expert.net.encoder == "fine"  # the saved student's own conv layers
    assert not expert.net.bf16  # trained under bf16, it acts in float32 like _logits below
    obs = make_env("Pong", 0).reset(seed=0)[0]
    state = torch.load(student, weights_only=True)
    assert expert.act(obs, None) == int(np.argmax(_logits(state, obs)))
    demos = tmp_path / "demos.npz"
    done = _run(
        "runners.demos", "--game", "Pong", "--expert", str(student), "--episodes", "1",
        "--out", str(demos), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = load_demos(demos)
    assert loaded.trajectories[0].obs.shape[1:] == (84, 84)
    assert loaded.meta["expert"]["algo"] == "distilled"
    assert "pixels" in loaded.meta["expert"]["observes"]


def _logits(state: dict, obs: np.ndarray) -> np.ndarray:
    import gymnasium as gym

    from iq_atari.networks import make_q_network

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    net = make_q_network(space, state["n_actions"], encoder=state["encoder"])
    net.load_state_dict(state["net"])
    with torch.no_grad():
        return net(torch.as_tensor(obs[None])).numpy()[0]


def test_bad_student_files_are_one_clear_error(student, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pt: not a distilled student"):
        get_expert("Pong", str(junk))
    with pytest.raises(InputError, match="distilled for ALE/Pong-v5, not ALE/Breakout-v5"):
        get_expert("Breakout", str(student))
    with pytest.raises(InputError, match="no such file"):
        get_expert("Pong", str(tmp_path / "missing.pt"))


def _distill(tmp: Path, name: str, rounds: int, resume: bool = False, stop_at=None, **changes):
    """A tiny distillation from the tracker; `stop_at`: interrupt it when it says that."""
    config = DistillConfig(
        rounds=rounds, episodes=1, updates=8, max_steps=25, capacity=300, **changes
    )

    def say(line: str) -> None:
        if stop_at is not None and line.startswith(stop_at):
            raise KeyboardInterrupt

    return distill(
        "Pong", get_expert("Pong", "tracker"), tmp / name / "student.pt", config,
        progress=False, say=say, checkpoint_dir=tmp / name / "ckpt", resume=resume,
    )  # fmt: skip


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["learner"]["net"]


def test_a_resumed_distillation_learns_exactly_what_an_uninterrupted_one_does(tmp_path):
    straight = _distill(tmp_path, "straight", rounds=2)
    _distill(tmp_path, "split", rounds=1)  # ends after playing round 1, its labels not yet learnt
    with pytest.raises(KeyboardInterrupt):  # learns them, then is interrupted in round 2
        _distill(tmp_path, "split", rounds=2, resume=True, stop_at="round 2: student")
    resumed = _distill(tmp_path, "split", rounds=2, resume=True)  # plays round 2 again
    assert [r.scores for r in resumed.rounds] == [r.scores for r in straight.rounds]
    assert [r.transitions for r in resumed.rounds] == [r.transitions for r in straight.rounds]
    assert [r.agreement for r in resumed.rounds] == [r.agreement for r in straight.rounds]
    a = _weights(tmp_path / "straight" / "ckpt" / "distill.pt")
    b = _weights(tmp_path / "split" / "ckpt" / "distill.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "split" / "student.json").read_text())
    assert [r["round"] for r in info["rounds"]] == [0, 1, 2]


def test_a_saved_distillation_is_never_overwritten_nor_resumed_with_other_settings(tmp_path):
    _distill(tmp_path, "run", rounds=1)
    with pytest.raises(InputError, match="a distillation is saved there; pass --resume"):
        _distill(tmp_path, "run", rounds=1)
    with pytest.raises(InputError, match="--lr: 0.001 differs from the saved run's 0.00025"):
        _distill(tmp_path, "run", rounds=2, resume=True, lr=1e-3)
    with pytest.raises(InputError, match="--bf16: True differs from the saved run's False"):
        _distill(tmp_path, "run", rounds=2, resume=True, bf16=True)
    with pytest.raises(InputError, match="--resume: no distillation saved at"):
        _distill(tmp_path, "other", rounds=1, resume=True)
    (tmp_path / "run" / "ckpt" / "aggregate.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="aggregate.npz: not a readable replay buffer"):
        _distill(tmp_path, "run", rounds=2, resume=True)
