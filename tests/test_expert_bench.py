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
