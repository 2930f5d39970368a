"""Smoke test of `python -m runners.bench --quick`: the record's keys and the memory targets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from runners.bench import NAIVE_TRANSITION_BYTES, efficiency_table, sample_efficiency

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("env_ratio", "update_ratio", "replay_memory_ratio", "demo_disk_ratio")


@pytest.fixture(scope="module")
def quick_record(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    # A subprocess: the bench sets torch's thread count, which must not leak into other tests.
    subprocess.run(
        [sys.executable, "-m", "runners.bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return json.loads(out.read_text())


def test_quick_writes_the_four_ratios(quick_record):
    for key in KEYS:
        value = quick_record[key]
        assert isinstance(value, float), key
        assert math.isfinite(value) and value > 0, (key, value)
    assert quick_record["torch_threads"] >= 1
    assert quick_record["cpu_model"]


def test_memory_ratios_meet_targets(quick_record):
    # One 84x84 frame + per-slot bookkeeping, vs two 4-stacks: deterministic.
    assert quick_record["replay_memory_ratio"] <= 1 / 4
    assert quick_record["replay_bytes_per_transition"] < 7_100
    assert quick_record["demo_disk_ratio"] <= 1 / 20
    assert NAIVE_TRANSITION_BYTES == 2 * 4 * 84 * 84


def test_no_compare_runs_is_said_not_faked(tmp_path):
    rows = sample_efficiency(tmp_path)
    assert rows == []
    assert "no compare runs" in efficiency_table(rows)


def test_sample_efficiency_reads_compare_runs(tmp_path):
    run_dir = tmp_path / "pong" / "runs" / "iq_d1_s0"
    run_dir.mkdir(parents=True)
    (run_dir / "eval.json").write_text(json.dumps({"expert_mean_return": 20.0}))
    (run_dir / "metrics.csv").write_text(
        "step,tag,value,wall_time\n"
        "100,train/env_steps,400.0,0\n100,eval/mean_return,10.0,0\n"
        "200,train/env_steps,800.0,0\n200,eval/mean_return,18.5,0\n"
        "300,eval/mean_return,21.0,0\n"
    )
    (tmp_path / "pong" / "compare.csv").write_text(
        f"game,method,demos,seed,run_dir\nPong,iq,1,0,{run_dir}\n"
    )
    (row,) = sample_efficiency(tmp_path)
    assert (row["updates_to_90"], row["env_steps_to_90"]) == (200, 800.0)
    assert "iq" in efficiency_table([row])
