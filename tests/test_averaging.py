"""Weight averaging: the running mean, the snapshots the loop takes, what checkpoints keep and
load, exact resume, and the option's presets and checks."""

import json
import shutil

import pytest
import torch

from iq_atari.averaging import WeightAverage
from iq_atari.config import TrainConfig, config_from_dict, resolve_config
from iq_atari.errors import InputError
from iq_atari.learners import load_learner
from iq_atari.train import train
from runners import ship


def test_running_mean_of_snapshots():
    snapshots = [
        {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(1)},
        {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(2)},
        {"w": torch.tensor([8.0, 1.0]), "n": torch.tensor(3)},
    ]
    average = WeightAverage()
    for snapshot in snapshots:
        average.add(snapshot)
    assert average.count == 3
    torch.testing.assert_close(average.weights["w"], torch.tensor([4.0, 3.0]))
    assert average.weights["n"].item() == 3  # integer entries take the last snapshot
    snapshots[0]["w"] += 100  # the average holds copies
    torch.testing.assert_close(average.weights["w"], torch.tensor([4.0, 3.0]))

    copy = WeightAverage()
    copy.load_state_dict(average.state_dict())
    assert copy.count == 3 and torch.equal(copy.weights["w"], average.weights["w"])
    with pytest.raises(ValueError, match="other weights"):
        copy.add({"v": torch.zeros(2)})
    with pytest.raises(ValueError, match="snapshots"):
        WeightAverage().load_state_dict({"count": 2, "weights": {}})


def test_run_evaluates_keeps_and_resumes_the_average(cartpole_one_demo, tmp_path):
    common = dict(
        game="CartPole",
        demos=str(cartpole_one_demo),
        eval_interval=40,
        eval_episodes=2,
        seed=5,
        average_from=80,  # snapshots at 80 and 120
        progress=False,
        tensorboard=False,
        reward_check_episodes=0,
    )
    straight = tmp_path / "straight"
    record = train(TrainConfig(steps=120, run_dir=str(straight), **common))
    assert record["averaged_snapshots"] == 2

    resumed = tmp_path / "resumed"
    train(TrainConfig(steps=80, run_dir=str(resumed), **common))
    at_80 = tmp_path / "at80.pt"
    shutil.copy(resumed / "checkpoints" / "last.pt", at_80)
    train(TrainConfig(steps=120, run_dir=str(resumed), resume=True, progress=False))

    def saved(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    final = saved(resumed / "checkpoints" / "last.pt")
    assert saved(at_80)["average"]["count"] == 1 and final["average"]["count"] == 2
    for name, value in saved(straight / "checkpoints" / "last.pt")["average"]["weights"].items():
        torch.testing.assert_close(final["average"]["weights"][name], value, rtol=0, atol=0)

    # The average is the mean of the trained weights at 80 and 120 updates; training itself
    # went on from the last weights, and a loaded checkpoint acts with the average.
    w80, w120 = saved(at_80)["learner"]["agent"], final["learner"]["agent"]
    learner, _ = load_learner(resumed / "checkpoints" / "last.pt")
    acting = learner.policy_state()
    assert acting and set(acting) <= set(w120)
    for name, value in acting.items():
        torch.testing.assert_close(value, (w80[name] + w120[name]) / 2)
    assert not torch.allclose(acting["q_net.net.0.weight"], w120["q_net.net.0.weight"])
    evaluations = json.loads((resumed / "eval.json").read_text())
    assert evaluations["averaged_snapshots"] == 2

    # Shipping it ships the average (fp32 here: the weights compare exactly).
    out = tmp_path / "iq-CartPole.pt"
    argv = ["--checkpoint", str(resumed / "checkpoints" / "last.pt"), "--episodes", "2",
            "--half", "no", "--out", str(out), "--no-progress"]  # fmt: skip
    assert ship.main(argv) == 0
    shipped = load_learner(out)[0].policy_state()
    for name, value in acting.items():
        torch.testing.assert_close(shipped[name], value, rtol=0, atol=0)
    assert json.loads(out.with_suffix(".json").read_text())["averaged_snapshots"] == 2


def test_presets_and_checks():
    assert resolve_config(TrainConfig(game="Pong")).average_from == 40_000
    assert resolve_config(TrainConfig(game="CartPole")).average_from == 0
    assert resolve_config(TrainConfig(game="Pong", algo="bc")).average_from == 0
    assert resolve_config(TrainConfig(game="Pong", average_from=100)).average_from == 100
    with pytest.raises(InputError, match="--average-from is an IQ option"):
        resolve_config(TrainConfig(game="Pong", algo="bc", average_from=10))
    with pytest.raises(InputError, match="--average-from must be >= 0"):
        resolve_config(TrainConfig(game="Pong", average_from=-1))
    # A run saved before the option existed did not average.
    assert resolve_config(config_from_dict({"game": "Pong"})).average_from == 0
    assert config_from_dict({"game": "Pong"}).encoder == "nature"  # nor chose an encoder
