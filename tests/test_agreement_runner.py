"""`runners.agreement`: a checkpoint's agreement with its expert on demo states and on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iq_atari.demos import load_demos
from iq_atari.evaluation import action_agreement, expert_agreement_on_agent_states
from iq_atari.experts import get_expert
from iq_atari.learners import load_learner
from runners import agreement


def test_reports_what_the_evaluation_functions_measure(cartpole_checkpoint, tmp_path, capsys):
    out = tmp_path / "agreement.json"
    argv = ["--checkpoint", str(cartpole_checkpoint), "--own-games", "1", "--seed", "3",
            "--out", str(out)]  # fmt: skip
    assert agreement.main(argv) == 0
    result = json.loads(out.read_text())
    learner, config = load_learner(cartpole_checkpoint)
    policy = lambda obs: learner.act(obs, greedy=True)  # noqa: E731
    demos = load_demos(config.demos)
    expected = action_agreement(policy, demos.trajectories, demos.frame_stack, 2)
    (on_demos,) = result["demos"]  # default: the demos the checkpoint trained on
    assert on_demos["steps"] == expected["steps"] == int(np.sum(demos.lengths))
    assert on_demos["accuracy"] == pytest.approx(expected["accuracy"])
    assert on_demos["recall"] == pytest.approx(expected["recall"])
    own = expert_agreement_on_agent_states(policy, get_expert("CartPole"), "CartPole", 1, 3)
    assert result["own_states"]["accuracy"] == pytest.approx(own["accuracy"])
    assert result["own_states"]["scores"] == own["scores"] and result["own_states"]["seeds"] == [3]
    assert result["own_states"]["expert"] == "controller"
    printed = capsys.readouterr().out
    assert f"{100 * expected['accuracy']:.1f}% of {expected['steps']:,} steps" in printed


def test_several_demo_files_first_episodes_and_no_own_games(
    cartpole_checkpoint, cartpole_one_demo, tmp_path
):
    out = tmp_path / "a.json"
    files = f"{cartpole_one_demo},{cartpole_one_demo}"
    argv = ["--checkpoint", str(cartpole_checkpoint), "--demos", files, "--demo-episodes", "1",
            "--own-games", "0", "--out", str(out)]  # fmt: skip
    assert agreement.main(argv) == 0
    result = json.loads(out.read_text())
    assert len(result["demos"]) == 2 and "own_states" not in result
    assert all(d["episodes"] == 1 for d in result["demos"])
    assert result["demos"][0]["accuracy"] == result["demos"][1]["accuracy"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--demos", "missing.npz"], "--demos: missing.npz: no such demo file"),
        (["--out", "a.txt"], "--out: expected a .json file name"),
        (["--own-games", "-1"], "--own-games must be >= 0"),
        (["--expert", "nosuch"], "nosuch"),
    ],
)
def test_bad_input_is_one_error_line(extra, message, cartpole_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(cartpole_checkpoint), *extra]
    if extra[0] == "--expert":
        argv += ["--demo-episodes", "1"]
    assert agreement.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
