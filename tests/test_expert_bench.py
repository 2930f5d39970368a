"""The expert learning benchmark's plumbing: a game below its bar is reported and fails."""

import json
import subprocess
import sys


def test_expert_bench_reports_a_game_below_its_bar(tmp_path):
    out = tmp_path / "experts.json"
    argv = ["--games", "Pong", "--expert", "random", "--episodes", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "runners.expert_bench", *argv, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "BELOW BAR" in done.stdout
    (row,) = json.loads(out.read_text())
    assert row["game"] == "Pong" and row["expert"] == "random" and not row["passed"]
    assert row["mean"] < 0


def _bench(*argv):
    return subprocess.run(
        [sys.executable, "-m", "runners.expert_bench", *argv, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_expert_bench_under_noise_reports_without_a_bar(tmp_path):
    out = tmp_path / "experts.json"
    done = _bench("--games", "Pong", "--expert", "random", "--episodes", "1", "--noise", "0.5",
                  "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no bar" in done.stdout and "BELOW BAR" not in done.stdout
    (row,) = json.loads(out.read_text())
    assert row["noise"] == 0.5 and row["passed"] is None


def test_expert_bench_rejects_a_bad_noise(tmp_path):
    done = _bench("--games", "Pong", "--noise", "1", "--out", str(tmp_path / "e.json"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--noise" in lines[0]
