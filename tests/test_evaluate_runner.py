"""`runners.evaluate`: a checkpoint's score over fixed seeds, as JSON, and one line on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iq_atari.evaluation import evaluate
from iq_atari.learners import load_learner
from runners import evaluate as evaluate_runner


def test_scores_a_checkpoint_as_the_evaluation_loop_does(cartpole_checkpoint, tmp_path, capsys):
    out = tmp_path / "score.json"
    argv = ["--checkpoint", str(cartpole_checkpoint), "--episodes", "3", "--seed", "5",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert evaluate_runner.main(argv) == 0
    result = json.loads(out.read_text())
    learner, _ = load_learner(cartpole_checkpoint)
    expected = evaluate(lambda obs: learner.act(obs, greedy=True), "CartPole-v1", 3, 5)
    assert result["returns"] == expected.tolist() and result["seeds"] == [5, 6, 7]
    assert result["mean"] == pytest.approx(float(np.mean(expected)))
    assert result["policy"] == "greedy" and result["demos"]["episodes"] == 1
    assert f"{result['mean']:+.2f}" in capsys.readouterr().out
    # The same seeds give the same games; sampling is another policy but still plays 3 games.
    again = tmp_path / "again.json"
    assert evaluate_runner.main([*argv[:-2], str(again), "--no-progress"]) == 0
    assert json.loads(again.read_text())["returns"] == result["returns"]
    sampled = tmp_path / "sampled.json"
    argv_sampled = [*argv[:-2], str(sampled), "--sample", "--no-progress"]
    assert evaluate_runner.main(argv_sampled) == 0
    assert json.loads(sampled.read_text())["policy"] == "sampled"
    assert len(json.loads(sampled.read_text())["returns"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give one of --run DIR or --checkpoint PATH"),
        (["--checkpoint", "missing.pt"], "missing.pt: no such checkpoint file"),
        (["--checkpoint", "x.pt", "--out", "score.txt"], "--out: expected a .json file name"),
        (["--checkpoint", "x.pt", "--episodes", "0"], "must be a positive integer"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = evaluate_runner.main(argv)
    except SystemExit as exit_:  # argparse's own errors exit from the parser
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
