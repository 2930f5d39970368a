"""The IQ-vs-BC comparison runner on a tiny grid: outputs, their rows and columns, resume."""

import csv
import json

import pytest

import iq_atari.train
from iq_atari.rollout import record_demos
from runners import compare


@pytest.fixture(scope="module")
def cartpole_demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "CartPole_controller_3ep.npz"
    return record_demos("CartPole", None, episodes=3, seed=0, out=path, progress=False)


def _config(demos, out, **kwargs) -> compare.Config:
    values = dict(
        game="cartpole",
        num_demos="1",
        seeds=1,
        steps=40,
        eval_interval=20,
        eval_episodes=2,
        reward_check_episodes=1,
        demos=str(demos),
        out=str(out),
        progress=False,
    )
    return compare.Config(**{**values, **kwargs})


def _rows(out):
    with open(out / "compare.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_grid_writes_csv_table_and_plots(cartpole_demos, tmp_path):
    out = tmp_path / "cmp"
    compare.run(_config(cartpole_demos, out, num_demos="2,1"))
    rows = _rows(out)
    assert list(rows[0]) == compare.CSV_COLUMNS
    cells = {(r["method"], int(r["demos"]), int(r["seed"])) for r in rows}
    assert cells == {(m, n, 0) for m in ("iq-offline", "bc") for n in (1, 2)}
    for row in rows:
        assert row["game"] == "CartPole" and int(row["updates"]) == 40
        assert 8 <= float(row["mean_return"]) <= 500 and float(row["wall_time_s"]) > 0
        baselines = json.loads((out / "baselines.json").read_text())
        assert float(row["normalised"]) == pytest.approx(
            compare.normalised(float(row["mean_return"]), baselines), abs=1e-4
        )
        is_iq = row["method"] == "iq-offline"
        assert (row["reward_pearson"] != "") == is_iq  # the reward check runs for IQ only
    assert baselines["expert"]["mean"] == 500 and baselines["random"]["mean"] < 50

    table = (out / "compare.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| iq-offline | ")]
    assert len(lines) == 4  # two result rows and two IQ - BC rows
    assert "| bc | 1 |" in table and "| bc | 2 |" in table
    assert "Expert 500.0" in table and "random" in table
    assert "| per seed | best eval |" in table
    for m, n in (("iq-offline", 1), ("bc", 2)):
        (row,) = [r for r in rows if r["method"] == m and int(r["demos"]) == n]
        (line,) = [x for x in table.splitlines() if x.startswith(f"| {m} | {n} | ")][:1]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4] == f"{float(row['normalised']):.2f}"  # one seed: its own score
        best = compare.normalised(float(row["best_mean_return"]), baselines)
        assert cells[5] == f"{best:.3g} ± 0"
    for name in ("compare.png", "reward_correlation.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_resumes_finished_and_interrupted_runs(cartpole_demos, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    compare.run(_config(cartpole_demos, out))
    first = {r["method"]: r for r in _rows(out)}
    # Interrupted after its last checkpoint: BC has no eval.json any more.
    (out / "runs" / "bc_d1_s0" / "eval.json").unlink()
    calls = []
    real_train = iq_atari.train.train

    def spy(config):
        calls.append((config.algo, config.resume))
        return real_train(config)

    monkeypatch.setattr(iq_atari.train, "train", spy)
    compare.run(_config(cartpole_demos, out))
    assert calls == [("bc", True)]  # IQ was read back, BC continued from its checkpoint
    again = {r["method"]: r for r in _rows(out)}
    assert again["iq-offline"] == first["iq-offline"]
    assert again["bc"]["mean_return"] == first["bc"]["mean_return"]
    # More updates asked for: both continue from their checkpoints.
    calls.clear()
    compare.run(_config(cartpole_demos, out, steps=60))
    assert sorted(calls) == [("bc", True), ("iq", True)]
    assert {int(r["updates"]) for r in _rows(out)} == {60}


def test_bad_demo_list_is_an_input_error(capsys):
    assert compare.main(["--num-demos", "0,2", "--no-progress"]) == 2
    assert "--num-demos" in capsys.readouterr().err


def test_every_method_gets_the_same_demo_subset(tmp_path):
    config = compare.Config(game="CartPole", subsample=20, demos="demos.npz", eval_episodes=4)
    cells = {m: compare.train_config(config, m, 3, 1, tmp_path / m) for m in compare.METHODS}
    assert {(c.algo, c.mode) for c in cells.values()} == set(compare.METHODS.values())
    for c in cells.values():
        assert (c.demos, c.num_demos, c.subsample, c.seed, c.eval_episodes) == (
            "demos.npz",
            3,
            20,
            1,
            4,
        )
    assert compare.train_config(compare.Config(), "bc", 1, 0, tmp_path).subsample == 1
    # --draw-demos: seed S draws with seed S, the same for every method; IQ-only options stay IQ.
    drawn = compare.Config(draw_demos=True, absorbing=True)
    cells = [compare.train_config(drawn, m, 3, 2, tmp_path / m) for m in compare.METHODS]
    assert [c.demo_draw for c in cells] == [2, 2, 2]
    assert [c.absorbing for c in cells] == [True, True, False]  # iq-offline, iq-online, bc
    assert compare.train_config(compare.Config(), "bc", 1, 0, tmp_path).demo_draw is None
