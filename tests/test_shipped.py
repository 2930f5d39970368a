"""Shipped agents: a checkpoint slimmed to its policy's weights plays like the checkpoint, the
ship runner scores it and writes its .json, and record plays it when nothing was trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from iq_atari import shipped
from iq_atari.checkpoint import read_checkpoint
from iq_atari.config import ADDED_FIELDS, TrainConfig, resolve_config
from iq_atari.demo_library import find_demos
from iq_atari.learners import POLICY_ONLY, load_learner
from iq_atari.networks import DEFAULT_ENCODER
from iq_atari.shipped import export_agent
from runners import record, ship


def _greedy(learner, obs: np.ndarray) -> np.ndarray:
    return learner.act(obs, greedy=True)


def test_exported_agent_acts_like_its_checkpoint(cartpole_checkpoint, tmp_path):
    original, config = load_learner(cartpole_checkpoint)
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    full = export_agent(cartpole_checkpoint, tmp_path / "fp32.pt", half=False)
    half = export_agent(cartpole_checkpoint, tmp_path / "fp16.pt", half=True)
    assert "optimizer" not in full["learner"] and POLICY_ONLY in full["learner"]
    assert all(v.dtype == torch.float16 for v in half["learner"][POLICY_ONLY].values())
    assert (tmp_path / "fp16.pt").stat().st_size < (tmp_path / "fp32.pt").stat().st_size
    assert (tmp_path / "fp32.pt").stat().st_size < cartpole_checkpoint.stat().st_size
    fp32, fp32_config = load_learner(tmp_path / "fp32.pt")
    assert fp32_config == config
    assert np.array_equal(_greedy(fp32, obs), _greedy(original, obs))
    fp16, _ = load_learner(tmp_path / "fp16.pt")
    assert np.mean(_greedy(fp16, obs) == _greedy(original, obs)) >= 0.95
    read_checkpoint(tmp_path / "fp16.pt")  # still a checkpoint of our format


def test_policy_weights_of_another_network_are_one_error_line(cartpole_checkpoint, tmp_path):
    from iq_atari.errors import InputError

    path = tmp_path / "agent.pt"
    export_agent(cartpole_checkpoint, path, half=True)
    state = torch.load(path, weights_only=True)
    state["learner"][POLICY_ONLY].pop(next(iter(state["learner"][POLICY_ONLY])))
    torch.save(state, path)
    with pytest.raises(InputError, match=r"agent\.pt: its iq policy does not fit its network"):
        load_learner(path)


def test_ship_runner_scores_and_writes_the_agent_and_its_json(cartpole_checkpoint, tmp_path):
    out = tmp_path / "agents" / "iq-CartPole.pt"
    argv = ["--checkpoint", str(cartpole_checkpoint), "--episodes", "2", "--seed", "5",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert ship.main(argv) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["seeds"] == [5, 6] and len(info["returns"]) == 2
    assert info["mean"] == pytest.approx(np.mean(info["returns"]))
    assert info["weights"] in ("fp16", "fp32") and info["file_bytes"] == out.stat().st_size
    assert info["demos"]["expert"] == "controller" and info["demos"]["expert_score"] == 500.0
    assert info["updates"] == 20 and info["game"] == "CartPole" and info["algo"] == "iq"
    assert "normalised" not in info  # no random score for classic control
    assert 0.0 <= info["fp16_action_agreement"] <= 1.0  # fp16 vs fp32 on the demos' frames
    learner, _ = load_learner(out)
    assert learner.act(np.zeros((1, 4), np.float32), greedy=True).shape == (1,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give one of --run DIR or --checkpoint PATH"),
        (["--checkpoint", "nope.pt"], "nope.pt: no such checkpoint file"),
    ],
)
def test_ship_bad_input_is_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert ship.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_record_plays_the_shipped_agent_beside_its_expert_when_nothing_was_trained(
    cartpole_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shipped, "AGENT_DIR", tmp_path / "agents")
    export_agent(cartpole_checkpoint, tmp_path / "agents" / "iq-CartPole.pt", half=True)
    assert record.main(["--game", "CartPole", "--max-steps", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "playing the shipped agent" in captured.err
    assert "expert: controller" in captured.out and "agent: iq greedy" in captured.out
    # A run trained here wins over the shipped agent.
    shutil.copytree(cartpole_checkpoint.parent.parent, tmp_path / "runs/CartPole/iq-0-x")
    assert record.main(["--game", "CartPole", "--max-steps", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "shipped" not in captured.err and "expert:" not in captured.out


@pytest.mark.parametrize("path", sorted(shipped.AGENT_DIR.glob("*.pt")), ids=lambda p: p.name)
def test_every_shipped_agent_loads_and_acts_on_its_games_frames(path):
    info = json.loads(path.with_suffix(".json").read_text())
    learner, config = load_learner(path)
    encoder = info["train_config"].get("encoder", DEFAULT_ENCODER)
    assert config.game == info["game"] and config.encoder == encoder
    assert path.stat().st_size == info["file_bytes"]
    frames = np.zeros((2, 4, 84, 84), np.uint8)
    actions = learner.act(frames, greedy=True)
    assert actions.shape == (2,) and (actions == actions[0]).all()  # greedy: same frames, same act


def test_ship_takes_fp16_when_its_actions_match_even_if_a_few_games_say_otherwise(
    cartpole_checkpoint, tmp_path, monkeypatch
):
    # Game noise: the fp16 games score far below the fp32 ones although the two policies act
    # alike on the demos' frames; the paired check decides.
    scores = iter([[500.0, 500.0], [100.0, 100.0]])
    monkeypatch.setattr(ship, "score_agent", lambda *a, **k: next(scores))
    monkeypatch.setattr(ship, "greedy_agreement", lambda a, b, demos: 1.0)
    out = tmp_path / "iq-CartPole.pt"
    assert ship.main(["--checkpoint", str(cartpole_checkpoint), "--out", str(out)]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["weights"] == "fp16" and info["fp16_action_agreement"] == 1.0
    scores = iter([[500.0, 500.0], [100.0, 100.0]])
    monkeypatch.setattr(ship, "greedy_agreement", lambda a, b, demos: 0.99)
    assert ship.main(["--checkpoint", str(cartpole_checkpoint), "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["weights"] == "fp32"


def test_greedy_agreement_of_a_learner_with_itself_and_with_its_fp16_file(
    cartpole_checkpoint, tmp_path
):
    learner, config = load_learner(cartpole_checkpoint)
    assert ship.greedy_agreement(learner, learner, config.demos, frames=300) == 1.0
    assert ship.greedy_agreement(learner, learner, str(tmp_path / "gone.npz")) is None
    export_agent(cartpole_checkpoint, tmp_path / "fp16.pt", half=True)
    half, _ = load_learner(tmp_path / "fp16.pt")
    assert ship.greedy_agreement(learner, half, config.demos) >= 0.95


# TrainConfig fields that change what a run learns (not where it writes, how fast, or what it
# measures). bf16 is left out: the preset asks for it only where the CPU has bf16 instructions.
LEARNING_FIELDS = (
    "mode", "algo", "num_demos", "subsample", "steps", "seed", "batch_size", "lr",
    "lr_decay_from", "gamma", "alpha", "learn_alpha", "value_term", "divergence", "chi2_alpha",
    "regularize_over", "next_v", "tau", "target_interval", "absorbing", "grad_penalty",
    "augment_shift", "augment_from", "hidden", "activation", "encoder", "average_from",
)  # fmt: skip


@pytest.mark.parametrize("path", sorted(shipped.AGENT_DIR.glob("*.pt")), ids=lambda p: p.name)
def test_make_train_runs_the_recipe_that_made_each_shipped_agent(path):
    """`make train GAME=<game>`: the defaults, the game's presets and its default demo set."""
    info = json.loads(path.with_suffix(".json").read_text())
    made = {**ADDED_FIELDS, **info["train_config"]}
    config = resolve_config(TrainConfig(game=info["game"]))
    assert {name: getattr(config, name) for name in LEARNING_FIELDS} == {
        name: made[name] for name in LEARNING_FIELDS
    }
    assert find_demos(info["game"]).name == Path(made["demos"]).name
