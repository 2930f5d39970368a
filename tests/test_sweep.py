"""Sweeps on a local Ray: trials run the same training function, re-runs skip finished trials,
failed trials are reported, and the compare table is built from the finished sweep."""

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from iq_atari.errors import InputError  # noqa: E402
from runners import sweep  # noqa: E402

GRID = """
name = "tiny"
games = ["CartPole"]
methods = ["iq-offline", "bc"]
num_demos = [1]
seeds = [0, 1]
steps = 40
[resources]
cpus = 1
gpus = "auto"
[train]
eval_episodes = 2
eval_interval = 20
reward_check_episodes = 0
{extra}
"""


def _grid(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID.format(extra=extra))
    return path


def test_four_trial_sweep_runs_skips_finished_and_aggregates(tmp_path, capsys):
    out = tmp_path / "out"
    config = sweep.Config(grid=str(_grid(tmp_path)), num_cpus=2, out=str(out), progress=False)
    assert sweep.run(config) == out
    game_dir = out / "CartPole"
    with open(game_dir / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {(r["method"], r["seed"]) for r in rows} == {
        ("iq-offline", "0"),
        ("iq-offline", "1"),
        ("bc", "0"),
        ("bc", "1"),
    }
    for row in rows:  # the same run-directory layout as `make train` / `make compare`
        record = json.loads((Path(row["run_dir"]) / "eval.json").read_text())
        assert record["updates"] == 40 and record["game"] == "CartPole"
    table = (game_dir / "compare.md").read_text()
    assert "| iq-offline | 1 |" in table and "| bc | 1 |" in table
    assert (game_dir / "compare.png").stat().st_size > 0
    stamps = {r["run_dir"]: Path(r["run_dir"], "eval.json").stat().st_mtime_ns for r in rows}

    capsys.readouterr()
    sweep.run(config)
    assert "4 trials, 4 already finished" in capsys.readouterr().out
    assert {d: Path(d, "eval.json").stat().st_mtime_ns for d in stamps} == stamps


def test_failed_trials_are_reported_with_their_error(tmp_path, capsys):
    grid = _grid(tmp_path, extra='hidden = "0"')  # every IQ trial fails building its network
    config = sweep.Config(grid=str(grid), num_cpus=2, out=str(tmp_path / "out"), progress=False)
    with pytest.raises(SystemExit) as exit_:
        sweep.run(config)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "FAILED CartPole/iq-offline_d1_s0" in err and "--hidden" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('games = ["CartPole"]\nmethods = ["gail"]', "methods: unknown"),
        ('games = ["CartPole"]\nseeds = []', "seeds: expected a non-empty list"),
        ('games = ["CartPole"]\nbatch = 3', "unknown keys"),
        ('games = ["CartPole"]\n[train]\nseed = 3', "grid-owned keys"),
        ("games = [", "not valid TOML"),
    ],
)
def test_bad_grid_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        sweep.load_grid(path)
