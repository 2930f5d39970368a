"""IQ-Learn vs behavioural cloning on the same demos: a grid of demo counts x seeds.

For every demo count N and seed, IQ-Learn (offline, and online with --online) and BC are trained
by `iq_atari.train.train` (what `make train` runs) on the first N episodes of one demo file, and
evaluated on the same seeded episodes. Writes to --out:

  compare.csv   one row per run: game, method, demos, seed, mean/std return, normalised score,
                updates, env steps, wall time, reward correlation (IQ)
  compare.md    mean +- std over seeds per method and demo count, expert and random scores,
                normalised score (x - random) / (expert - random), each seed's normalised
                score, the best periodic evaluation (normalised), IQ - BC per demo count
  compare.png   return vs demo count per method (error bars: std over seeds), expert and random
                lines; learning curves per method
  reward_correlation.png   recovered vs true returns of one IQ run (the most demos, first seed)
  runs/<method>_d<N>_s<seed>/   the runs themselves (eval.json, metrics.csv, checkpoints, ...)

A grid that was interrupted resumes: finished runs are read back, unfinished ones continue from
their last checkpoint.

Examples:
  python -m runners.compare --game CartPole
  python -m runners.compare --game Acrobot --num-demos 1,3,10 --seeds 3 --steps 5000 --online
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iq_atari.config import TrainConfig, passed_to_train, resolve_config, train_field
from iq_atari.utils import atomic_path, atomic_write_text
from runners.common import arg, run_cli

METHODS = {"iq-offline": ("iq", "offline"), "iq-online": ("iq", "online"), "bc": ("bc", "offline")}
CSV_COLUMNS = [
    "game",
    "method",
    "demos",
    "seed",
    "mean_return",
    "std_return",
    "normalised",
    "updates",
    "env_steps",
    "wall_time_s",
    "best_mean_return",
    "reward_pearson",
    "reward_spearman",
    "run_dir",
]


@dataclass
class Config:
    """The grid; the `train_field`s are TrainConfig's own, passed to every run of the grid."""

    game: str = train_field("game")
    num_demos: str = arg("1,3,10", "comma-separated demo counts (first N episodes of the demos)")
    seeds: int = arg(3, "seeds per cell (0 .. N-1)", positive=True)
    steps: int | None = train_field("steps")
    out: str | None = arg(None, "output directory (default runs/compare/<game>)")
    online: bool = arg(False, "also train online IQ-Learn (agent transitions from the env)")
    subsample: int = train_field("subsample")
    demos: str | None = train_field("demos")
    eval_episodes: int = train_field(
        "eval_episodes", "evaluation episodes per run (and for the expert / random)"
    )
    eval_interval: int | None = train_field("eval_interval")
    reward_check_episodes: int = train_field("reward_check_episodes")
    absorbing: bool = train_field("absorbing")
    draw_demos: bool = arg(
        False,
        "seed S trains every method on N demo episodes drawn with seed S (default: the first N "
        "for every seed); with more episodes in the file than N, the spread over seeds then "
        "includes the choice of demos",
    )
    threads: int | None = train_field("threads")
    progress: bool = arg(True, "show a progress bar over the grid")


def parse_counts(text: str) -> list[int]:
    from iq_atari.errors import InputError

    try:
        counts = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        raise InputError(f"--num-demos: expected comma-separated positive counts, got {text!r}")
    return counts


def train_config(config: Config, method: str, demos: int, seed: int, run_dir: Path) -> TrainConfig:
    """The `TrainConfig` of one grid cell."""
    algo, mode = METHODS[method]
    passed = passed_to_train(config)
    passed["absorbing"] = config.absorbing and algo == "iq"  # an IQ option: BC cells go without
    return TrainConfig(
        **passed,
        algo=algo,
        mode=mode,
        num_demos=demos,
        seed=seed,
        run_dir=str(run_dir),
        tensorboard=False,
        progress=False,
        demo_draw=seed if config.draw_demos else None,
    )


def is_finished(train_cfg: TrainConfig) -> bool:
    """Whether the cell's run directory holds an eval.json of at least the steps asked for."""
    done = Path(train_cfg.run_dir) / "eval.json"
    if not done.is_file():
        return False
    return json.loads(done.read_text())["updates"] >= resolve_config(train_cfg).steps


def run_cell(train_cfg: TrainConfig) -> dict:
    """Train one cell, or read it back if finished, or resume it from its last checkpoint."""
    from iq_atari.train import train

    run_dir = Path(train_cfg.run_dir)
    if is_finished(train_cfg):
        return json.loads((run_dir / "eval.json").read_text())
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return train(dataclasses.replace(train_cfg, resume=True))
    shutil.rmtree(run_dir, ignore_errors=True)  # a start that never checkpointed: begin afresh
    return train(train_cfg)


def baseline_scores(config: Config, demos_path: Path, out: Path) -> dict:
    """Expert and random mean / std return over eval_episodes x seeds fresh episodes (cached)."""
    from iq_atari.demo_sources import load_demo_source
    from iq_atari.envs import resolve_game
    from iq_atari.errors import InputError
    from iq_atari.evaluation import eval_settings
    from iq_atari.experts import get_expert
    from iq_atari.experts.random import RandomExpert
    from iq_atari.rollout import expert_episodes

    cache = out / "baselines.json"
    episodes = config.eval_episodes * config.seeds
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("episodes") == episodes and cached.get("demos") == str(demos_path):
            return cached
    demos = load_demo_source(demos_path, game=config.game)
    settings = None
    if resolve_game(config.game).is_atari:
        from iq_atari.envs import AtariSettings

        settings = eval_settings(AtariSettings(**demos.meta["env_kwargs"]))
    scores = {"episodes": episodes, "demos": str(demos_path)}
    try:
        expert = get_expert(config.game, demos.meta["expert"].get("name"))
    except InputError:
        expert = None
    players = {"expert": expert, "random": RandomExpert(seed=10_000)}
    for name, player in players.items():
        if player is None:  # no expert to replay: its demos' returns stand in
            returns, source = demos.returns, f"demo file ({len(demos)} episodes)"
        else:
            played = expert_episodes(config.game, player, episodes, 10_000, settings, False)
            returns, source = np.array([e.score for e in played]), f"{player.name}, fresh episodes"
        scores[name] = {
            "mean": float(returns.mean()),
            "std": float(returns.std()),
            "source": source,
        }
    atomic_write_text(cache, json.dumps(scores, indent=2))
    return scores


def normalised(value: float, baselines: dict) -> float:
    """(value - random) / (expert - random)."""
    span = baselines["expert"]["mean"] - baselines["random"]["mean"]
    return (value - baselines["random"]["mean"]) / span if span else float("nan")


def csv_row(game: str, method: str, demos: int, seed: int, record: dict, baselines: dict) -> dict:
    corr = record.get("reward_correlation") or {}
    return {
        "game": game,
        "method": method,
        "demos": demos,
        "seed": seed,
        "mean_return": record["mean_return"],
        "std_return": record["std_return"],
        "normalised": round(normalised(record["mean_return"], baselines), 4),
        "updates": record["updates"],
        "env_steps": record["env_steps"],
        "wall_time_s": record["wall_time_s"],
        "best_mean_return": record.get("best_mean_return", ""),
        "reward_pearson": corr.get("pearson", ""),
        "reward_spearman": corr.get("spearman", ""),
        "run_dir": record["run_dir"],
    }


def _best_normalised(rows: list[dict], baselines: dict) -> list[float]:
    """Normalised best periodic evaluation of each row (rows without one are skipped)."""
    return [
        normalised(float(r["best_mean_return"]), baselines)
        for r in rows
        if r["best_mean_return"] != ""
    ]


def _per_seed(values: list[float]) -> str:
    """Values in seed order, space-separated, two decimals."""
    return " ".join(f"{float(v):.2f}" for v in values)


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v != ""]
    if not values:
        return "-"
    return f"{np.mean(values):.3g} ± {_std(values):.2g}"


def write_table(rows: list[dict], config: Config, baselines: dict, path: Path) -> None:
    """compare.md: per method and demo count, mean ± std over seeds; then IQ - BC."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    counts = sorted({r["demos"] for r in rows})
    cell = {
        (m, n): [r for r in rows if r["method"] == m and r["demos"] == n]
        for m in methods
        for n in counts
    }
    expert, rand = baselines["expert"], baselines["random"]
    lines = [
        f"# IQ-Learn vs behavioural cloning on {rows[0]['game']}",
        "",
        f"{config.seeds} seeds per cell, {rows[0]['updates']} updates per run, "
        f"{config.eval_episodes} greedy evaluation episodes per run"
        + (f", every {config.subsample}th demo transition" if config.subsample > 1 else "")
        + (", demo episodes drawn per seed" if config.draw_demos else "")
        + (", IQ with an absorbing state" if config.absorbing else "")
        + ".",
        f"Expert {expert['mean']:.1f} ± {expert['std']:.1f} ({expert['source']}); "
        f"random {rand['mean']:.1f} ± {rand['std']:.1f}. "
        "Normalised = (return - random) / (expert - random); per seed: each seed's normalised "
        "final score; best eval: the best periodic evaluation during training, normalised (what "
        "the official code reports; optimistic, a maximum over evaluations).",
        "",
        "| method | demos | return | normalised | per seed | best eval "
        "| reward Pearson | reward Spearman | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for n in counts:
            if not cell[m, n]:
                continue
            group = cell[m, n]
            lines.append(
                f"| {m} | {n} | {_mean_std([r['mean_return'] for r in group])} "
                f"| {_mean_std([r['normalised'] for r in group])} "
                f"| {_per_seed([r['normalised'] for r in group])} "
                f"| {_mean_std(_best_normalised(group, baselines))} "
                f"| {_mean_std([r['reward_pearson'] for r in group])} "
                f"| {_mean_std([r['reward_spearman'] for r in group])} "
                f"| {np.mean([r['wall_time_s'] for r in group]):.0f} |"
            )
    iq_methods = [m for m in methods if m.startswith("iq")]
    if "bc" in methods and iq_methods:
        lines += [
            "",
            "Normalised IQ - BC per demo count (difference of the means over seeds; noise: the "
            "standard error of that difference).",
            "",
            "| method | demos | IQ - BC | noise |",
            "|---|---|---|---|",
        ]
        for m in iq_methods:
            for n in counts:
                iq = [r["normalised"] for r in cell[m, n]]
                bc = [r["normalised"] for r in cell["bc", n]]
                if iq and bc:
                    noise = np.sqrt(_std(iq) ** 2 / len(iq) + _std(bc) ** 2 / len(bc))
                    lines.append(f"| {m} | {n} | {np.mean(iq) - np.mean(bc):+.3f} | {noise:.3f} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_plot(rows: list[dict], baselines: dict, path: Path) -> None:
    """compare.png: return vs demo count per method; learning curves (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from iq_atari.logger import CSV_NAME, read_scalars

    methods = list(dict.fromkeys(r["method"] for r in rows))
    counts = sorted({r["demos"] for r in rows})
    fig, axes = plt.subplots(1, 1 + len(methods), figsize=(5 * (1 + len(methods)), 4))
    ax = axes[0]
    for m in methods:
        xs, means, stds = [], [], []
        for n in counts:
            values = [r["mean_return"] for r in rows if r["method"] == m and r["demos"] == n]
            if values:
                xs.append(n)
                means.append(np.mean(values))
                stds.append(_std(values))
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=m)
    for name, style in (("expert", "--"), ("random", ":")):
        ax.axhline(baselines[name]["mean"], color="k", linestyle=style, label=name)
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("expert demos (episodes)")
    ax.set_ylabel("eval return (mean ± std over seeds)")
    ax.set_title(f"{rows[0]['game']}: return vs demos")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for ax, m in zip(axes[1:], methods, strict=True):
        for n in counts:
            curves = []
            for r in rows:
                if r["method"] == m and r["demos"] == n:
                    curves.append(read_scalars(Path(r["run_dir"]) / CSV_NAME, "eval/mean_return"))
            if not curves:
                continue
            length = min(len(steps) for steps, _ in curves)
            steps = curves[0][0][:length]
            values = np.array([v[:length] for _, v in curves])
            (line,) = ax.plot(steps, values.mean(axis=0), marker=".", label=f"{n} demos")
            ax.fill_between(
                steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15
            )
        ax.axhline(baselines["expert"]["mean"], color="k", linestyle="--")
        ax.axhline(baselines["random"]["mean"], color="k", linestyle=":")
        ax.set_xlabel("gradient updates")
        ax.set_title(f"{m}: learning curves (mean, min-max over seeds)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _std(values: list[float]) -> float:
    """Sample standard deviation over seeds (0 for a single seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def demo_file(config: Config, most: int) -> Path:
    """The demo file of the grid, holding at least `most` episodes (recorded if needed)."""
    from iq_atari.demo_sources import load_demo_source
    from iq_atari.rollout import record_demos
    from runners.common import find_or_record_demos

    base = resolve_config(TrainConfig(game=config.game, demos=config.demos, demo_episodes=most))
    path = find_or_record_demos(base)
    if len(load_demo_source(path, game=config.game)) >= most or config.demos is not None:
        return path  # too few episodes in a given --demos file: the first run says so
    print(f"{path} has fewer than {most} episodes: recording {most} with the default expert")
    return record_demos(config.game, None, episodes=most, seed=0, progress=config.progress)


def output_dir(config: Config) -> Path:
    from iq_atari.envs import resolve_game

    return (
        Path(config.out)
        if config.out
        else Path("runs") / "compare" / resolve_game(config.game).name
    )


def write_outputs(config: Config, cells: list[tuple[str, int, int, dict]]) -> Path:
    """compare.csv, compare.md, compare.png and reward_correlation.png from finished cells
    (method, demos, seed, eval.json record); `config.demos` names the grid's demo file."""
    from iq_atari.envs import resolve_game
    from iq_atari.evaluation import RewardCorrelation, plot_reward_correlation

    game = resolve_game(config.game).name
    out = output_dir(config)
    baselines = baseline_scores(config, Path(config.demos), out)
    rows = [csv_row(game, m, n, s, record, baselines) for m, n, s, record in cells]
    write_csv(rows, out / "compare.csv")
    write_table(rows, config, baselines, out / "compare.md")
    write_plot(rows, baselines, out / "compare.png")
    checked = [c for c in cells if c[0] == "iq-offline" and c[3].get("reward_correlation")]
    if checked:  # the IQ run with the most demos (first seed) stands for the grid
        method, demos, seed, record = max(checked, key=lambda c: (c[1], -c[2]))
        corr = record["reward_correlation"]
        result = RewardCorrelation(
            corr["sources"],
            np.array(corr["true_returns"]),
            np.array(corr["recovered_returns"]),
            np.array(corr["lengths"]),
        )
        title = f"IQ offline, {game}, {demos} demos, seed {seed}"
        plot_reward_correlation(result, out / "reward_correlation.png", title)
    return out


def run(config: Config) -> Path:
    """Run (or resume) the grid and write the CSV, table and plots; returns the output dir."""
    from tqdm import tqdm

    from iq_atari.envs import resolve_game

    game = resolve_game(config.game).name
    config = dataclasses.replace(config, game=game)
    counts = parse_counts(config.num_demos)
    out = output_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config, demos=str(demo_file(config, max(counts))))
    atomic_write_text(out / "compare.json", json.dumps(dataclasses.asdict(config), indent=2))
    baselines = baseline_scores(config, Path(config.demos), out)
    methods = ["iq-offline", *(["iq-online"] if config.online else []), "bc"]
    grid = [(m, n, s) for n in counts for s in range(config.seeds) for m in methods]
    cells = []
    bar = tqdm(grid, desc=f"compare {game}", unit="run", disable=not config.progress)
    for method, demos, seed in bar:
        bar.set_postfix(run=f"{method} {demos} demos seed {seed}")
        run_dir = out / "runs" / f"{method}_d{demos}_s{seed}"
        cells.append(
            (method, demos, seed, run_cell(train_config(config, method, demos, seed, run_dir)))
        )
        rows = [csv_row(game, *cell, baselines) for cell in cells]
        write_csv(rows, out / "compare.csv")  # partial results are readable while it runs
    write_outputs(config, cells)
    print((out / "compare.md").read_text())
    print(f"wrote {out}/compare.csv, compare.md, compare.png")
    return out


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
