"""`python -m runners.bench --quick` (keys, memory targets) and the sample-efficiency summary."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from runners import efficiency
from runners.bench import NAIVE_TRANSITION_BYTES

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("env_ratio", "update_ratio", "replay_memory_ratio", "demo_disk_ratio")


@pytest.fixture(scope="module")
def quick_record(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    # A subprocess: the bench sets torch's thread count, which must not leak into other tests.
    # Random weights and no runs: the record must not depend on what lies in runs/.
    hermetic = ["--checkpoint", "none", "--compare-root", str(tmp), "--runs", str(tmp / "none")]
    subprocess.run(
        [sys.executable, "-m", "runners.bench", "--quick", "--out", str(out), *hermetic],
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


def test_env_figures_measure_the_real_collector_and_its_bound(quick_record):
    for key in ("env_ratio_collector_bf16", "env_ratio_alternating", "env_ratio_bound_bf16"):
        assert math.isfinite(quick_record[key]) and quick_record[key] > 0, key
    # E / (E + F) with measured, positive costs lies strictly between 0 and 1.
    assert 0 < quick_record["env_ratio_bound"] < 1
    assert quick_record["emulation_cpu_ms_per_step"] > 0
    assert 0.5 <= quick_record["bf16_greedy_agreement"] <= 1


def write_run(run_dir: Path, mode: str, algo: str, evals: dict[int, float], env_steps=None):
    run_dir.mkdir(parents=True)
    config = {"game": "CartPole", "mode": mode, "algo": algo, "num_demos": 1}
    (run_dir / "config.json").write_text(json.dumps(config))
    rows = ["step,tag,value,wall_time"]
    for step, value in evals.items():
        if env_steps is not None:
            rows.append(f"{step},train/env_steps,{env_steps * step},0")
        rows.append(f"{step},eval/mean_return,{value},0")
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_sample_efficiency_of_a_compare_grid(tmp_path):
    grid = tmp_path / "compare" / "CartPole"
    # Expert 500, random 20: 90% normalised is 20 + 0.9 * 480 = 452.
    baselines = {"expert": {"mean": 500.0}, "random": {"mean": 20.0}}
    (grid).mkdir(parents=True)
    (grid / "baselines.json").write_text(json.dumps(baselines))
    runs = {
        "iq-online_d1_s0": ("online", "iq", {100: 300.0, 200: 452.0, 300: 500.0}, 4),
        "iq-online_d1_s1": ("online", "iq", {100: 451.9, 200: 400.0, 300: 460.0}, 4),
        "bc_d1_s0": ("offline", "bc", {100: 100.0, 200: 200.0}, None),
    }
    lines = ["game,method,demos,seed,run_dir"]
    for name, (mode, algo, evals, env_steps) in runs.items():
        write_run(grid / "runs" / name, mode, algo, evals, env_steps)
        method = "bc" if algo == "bc" else f"iq-{mode}"
        lines.append(f"CartPole,{method},1,{name[-1]},{grid / 'runs' / name}")
    (grid / "compare.csv").write_text("\n".join(lines) + "\n")

    rows = {Path(r["run_dir"]).name: r for r in efficiency.compare_rows(tmp_path)}
    assert (
        rows["iq-online_d1_s0"]["updates_to_90"],
        rows["iq-online_d1_s0"]["env_steps_to_90"],
    ) == (
        200,
        800.0,
    )
    assert rows["iq-online_d1_s1"]["updates_to_90"] == 300  # 451.9 is just short of 452
    assert rows["bc_d1_s0"]["updates_to_90"] is None
    text = efficiency.summary(list(rows.values()))
    bc_line = next(line for line in text.splitlines() if line.startswith("compare/CartPole bc"))
    iq_line = next(line for line in text.splitlines() if "iq-online" in line)
    assert "not reached" in bc_line and "0/1" in bc_line
    assert iq_line.split()[-3:] == ["2/2", "250", "1000"]


def test_sample_efficiency_of_a_single_offline_run(tmp_path):
    run_dir = tmp_path / "Pong" / "iq-0"
    write_run(run_dir, "offline", "iq", {2000: -20.0, 4000: 17.0})
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "game": "Pong"}))
    (run_dir / "eval.json").write_text(json.dumps({"expert_mean_return": 21.0}))
    (row,), notes = efficiency.single_run_rows([run_dir, tmp_path / "missing"])
    # Pong: random -20.7, so 90% normalised is 16.83; offline runs use no env steps.
    assert (row["updates_to_90"], row["env_steps_to_90"]) == (4000, 0)
    assert notes == [f"{tmp_path / 'missing'}: no metrics.csv / config.json"]


def test_no_runs_is_said_not_faked(tmp_path):
    assert efficiency.compare_rows(tmp_path) == []
    assert "no compare grids or runs" in efficiency.summary([])
