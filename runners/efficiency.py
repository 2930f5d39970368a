"""Sample efficiency of finished (or running) training runs: updates and env steps until the
greedy evaluation first reaches 90% of the expert's normalised score, IQ-Learn vs BC.

Normalised score = (return - random) / (expert - random), the compare runner's; the threshold is
a normalised 0.9. Compare grids (`compare.csv` + `baselines.json`, from `runners.compare`) bring
their own expert and random scores. A single run directory takes the expert's score from its
eval.json (or its demo file's returns) and the random score from RANDOM_SCORES.

Env steps are 0 for offline runs (they never step an env); for online runs they come from the
`train/env_steps` row logged at the evaluation's update.

`make bench` prints this table; alone: `python -m runners.efficiency [--compare-root runs]
[--runs "runs/Pong/*"]`.
"""

from __future__ import annotations

import csv
import glob
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iq_atari.scores import RANDOM_SCORES
from runners.common import arg, run_cli

TARGET = 0.9


def first_reaching(metrics: Path, threshold: float) -> tuple[int | None, dict[int, float]]:
    """Update of the first `eval/mean_return` >= threshold (None if never), and the logged
    `train/env_steps` by update, from a run's metrics.csv (step, tag, value, wall_time)."""
    reached, env_steps = None, {}
    with open(metrics, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("value"):  # the last line of a run still writing
                continue
            step, tag, value = int(row["step"]), row["tag"], float(row["value"])
            if tag == "train/env_steps":
                env_steps[step] = value
            elif tag == "eval/mean_return" and reached is None and value >= threshold:
                reached = step
    return reached, env_steps


def run_row(run_dir: Path, method: str, expert: float, random: float) -> dict:
    """One run's updates and env steps to TARGET of the expert's normalised score."""
    config = json.loads((run_dir / "config.json").read_text())
    threshold = random + TARGET * (expert - random)
    reached, env_steps = first_reaching(run_dir / "metrics.csv", threshold)
    steps = None
    if reached is not None:
        steps = 0 if config.get("mode") == "offline" else env_steps.get(reached)
    return {
        "run_dir": str(run_dir),
        "game": config["game"],
        "method": method,
        "expert": expert,
        "random": random,
        "threshold": threshold,
        "updates_to_90": reached,
        "env_steps_to_90": steps,
    }


def compare_rows(root: Path) -> list[dict]:
    """Rows for every run of every compare grid (`compare.csv` + `baselines.json`) under root."""
    rows = []
    for table in sorted(root.rglob("compare.csv")):
        baselines_path = table.parent / "baselines.json"
        if not baselines_path.is_file():
            continue
        baselines = json.loads(baselines_path.read_text())
        expert, random = baselines["expert"]["mean"], baselines["random"]["mean"]
        with open(table, newline="") as f:
            for row in csv.DictReader(f):
                run_dir = Path(row["run_dir"])
                if not (run_dir / "metrics.csv").is_file():
                    run_dir = table.parent / "runs" / run_dir.name  # a moved grid
                if (run_dir / "metrics.csv").is_file() and (run_dir / "config.json").is_file():
                    found = run_row(run_dir, row["method"], expert, random)
                    grid = table.parent.relative_to(root).as_posix()
                    rows.append({**found, "grid": grid, "demos": int(row["demos"])})
    return rows


def expert_score(run_dir: Path) -> float | None:
    """The expert's mean return for a run: eval.json, else the returns in its demo file's meta."""
    eval_json = run_dir / "eval.json"
    if eval_json.is_file():
        return json.loads(eval_json.read_text()).get("expert_mean_return")
    from iq_atari.demos import read_meta

    demos = json.loads((run_dir / "config.json").read_text()).get("demos")
    if demos and Path(demos).is_file():
        returns = read_meta(demos).get("returns")
        return float(np.mean(returns)) if returns else None
    return None


def single_run_rows(run_dirs: list[Path]) -> tuple[list[dict], list[str]]:
    """Rows for individual run directories, and a note per directory that could not be read."""
    rows, notes = [], []
    for run_dir in run_dirs:
        if not (run_dir / "metrics.csv").is_file() or not (run_dir / "config.json").is_file():
            notes.append(f"{run_dir}: no metrics.csv / config.json")
            continue
        config = json.loads((run_dir / "config.json").read_text())
        expert, random = expert_score(run_dir), RANDOM_SCORES.get(config["game"])
        if expert is None or random is None:
            notes.append(f"{run_dir}: no expert score or no random score for {config['game']}")
            continue
        method = config["algo"] if config["algo"] == "bc" else f"iq-{config['mode']}"
        rows.append({**run_row(run_dir, method, expert, random), "demos": config.get("num_demos")})
    return rows, notes


def summary(rows: list[dict], notes: Sequence[str] = ()) -> str:
    """A table per (grid or game, method, demos): runs reaching 90%, median updates and env
    steps. Compare grids are named by their folder under the root, so that grids of the same
    game with different settings (e.g. subsampled demos) stay apart."""
    if not rows:
        return "\n".join(
            ["sample efficiency: no compare grids or runs with evaluations found", *notes]
        )
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        source = r.get("grid") or r["game"]
        groups.setdefault((source, r["method"], str(r["demos"] or "all")), []).append(r)
    width = max(12, *(len(source) for source, _, _ in groups))
    lines = [
        f"sample efficiency: first evaluation >= {TARGET:.0%} of the expert's normalised score "
        "(median over the runs that reached it)",
        f"{'grid / game':<{width}} {'method':<12} {'demos':>5} {'reached':>8} {'updates':>11} "
        f"{'env steps':>10}",
    ]
    for (source, method, demos), group in sorted(groups.items()):
        hit = [r for r in group if r["updates_to_90"] is not None]
        updates, steps = "not reached", ""
        if hit:
            updates = f"{statistics.median([r['updates_to_90'] for r in hit]):.0f}"
            known = [r["env_steps_to_90"] for r in hit if r["env_steps_to_90"] is not None]
            steps = f"{statistics.median(known):.0f}" if known else "?"
        reached = f"{len(hit)}/{len(group)}"
        lines.append(
            f"{source:<{width}} {method:<12} {demos:>5} {reached:>8} {updates:>11} {steps:>10}"
        )
    return "\n".join([*lines, *notes])


def collect(compare_root: str | Path, runs: str) -> dict:
    """Rows of the compare grids under `compare_root` and of the run directories matching the
    comma-separated globs `runs`, with a note for each directory that could not be read."""
    rows = compare_rows(Path(compare_root))
    patterns = [pattern.strip() for pattern in runs.split(",") if pattern.strip()]
    run_dirs = sorted({Path(p) for pattern in patterns for p in glob.glob(pattern)})
    single, notes = single_run_rows([p for p in run_dirs if p.is_dir()])
    return {"rows": rows + single, "notes": notes}


@dataclass
class Config:
    compare_root: str = arg("runs", "searched for compare grids (compare.csv + baselines.json)")
    runs: str = arg("runs/Pong/*", "comma-separated globs of single run directories to summarise")


def run(config: Config) -> dict:
    found = collect(config.compare_root, config.runs)
    print(summary(found["rows"], found["notes"]))
    return found


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
