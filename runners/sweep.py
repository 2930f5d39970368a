"""Run a compare/train grid as Ray Tune trials: the same training function as `make train`.

A grid file (TOML) names games, methods, demo counts, seeds, steps and the resources of one
trial; each (game, method, demos, seed) becomes one trial that calls `runners.compare.run_cell`,
i.e. `iq_atari.train.train`, exactly as `make compare` does locally. Ray runs the trials on a
local instance (`ray.init(num_cpus=...)`) or on an existing cluster (`--address`).

Results land in the compare layout, one directory per game under the sweep's output directory:
`<out>/<Game>/runs/<method>_d<N>_s<seed>/` (eval.json, metrics.csv, checkpoints) and
`<out>/<Game>/compare.{csv,md,png}`, built by the compare runner's own writers. A re-run skips
finished trials (and resumes unfinished ones from their last checkpoint); failed trials are
listed with their error and make the command exit with status 1.

Grid file (examples/cartpole_sweep.toml):

    name = "cartpole"                # output directory: runs/sweeps/<name> unless `out` is set
    games = ["CartPole"]
    methods = ["iq-offline", "bc"]   # iq-offline | iq-online | bc
    num_demos = [1]
    seeds = [0, 1]
    steps = 300                      # gradient updates per trial
    [resources]                      # per trial
    cpus = 1
    gpus = "auto"                    # a GPU fraction; "auto": 0.25 where CUDA exists, else 0
    [train]                          # any other field of iq_atari.config.TrainConfig, every trial
    eval_episodes = 5

Examples:
  python -m runners.sweep --grid examples/cartpole_sweep.toml
  python -m runners.sweep --grid grid.toml --address ray://head-node:10001
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iq_atari.config import TrainConfig, resolve_config
from iq_atari.errors import InputError
from runners import compare
from runners.common import arg, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

AUTO_GPU_FRACTION = 0.25
GRID_KEYS = {"name", "out", "games", "methods", "num_demos", "seeds", "steps", "resources", "train"}


@dataclass
class Config:
    grid: str = arg("examples/cartpole_sweep.toml", "grid file (TOML), see the module docstring")
    address: str | None = arg(None, "Ray cluster address (ray://host:10001 or auto); default local")
    num_cpus: int | None = arg(None, "CPUs of the local Ray instance (default: all)", positive=True)
    out: str | None = arg(None, "output directory (default: the grid's `out`, or runs/sweeps/NAME)")
    progress: bool = arg(True, "Ray Tune's progress output")


@dataclass(frozen=True)
class Grid:
    """A parsed grid file."""

    name: str
    out: Path
    games: list[str]
    methods: list[str]
    num_demos: list[int]
    seeds: list[int]
    steps: int | None
    cpus: float
    gpus: float
    train: dict[str, Any]


def load_grid(path: str | Path, out: str | None = None) -> Grid:
    """Read and check a grid file; every problem names the file and the key."""
    from iq_atari.envs import resolve_game

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such grid file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a TOML text file (not UTF-8: {err.reason})") from err
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from err
    unknown = set(data) - GRID_KEYS
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}; expected {sorted(GRID_KEYS)}")

    def listed(key: str, kind: type, default: list | None = None) -> list:
        value = data.get(key, default)
        if not isinstance(value, list) or not value or not all(_is(v, kind) for v in value):
            raise InputError(f"{path}: {key}: expected a non-empty list of {kind.__name__}")
        return value

    for key in ("name", "out"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"{path}: {key}: expected a string, got {data[key]!r}")
    for key in ("resources", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise InputError(f"{path}: {key}: expected a table ([{key}]), got {data[key]!r}")
    games = listed("games", str)
    for game in games:
        try:
            resolve_game(game)
        except InputError as err:
            raise InputError(f"{path}: games: {err}") from err

    methods = listed("methods", str, ["iq-offline", "bc"])
    bad = [m for m in methods if m not in compare.METHODS]
    if bad:
        raise InputError(f"{path}: methods: unknown {bad}; expected {list(compare.METHODS)}")
    counts = listed("num_demos", int, [1])
    seeds = listed("seeds", int, [0])
    if min(counts) < 1 or min(seeds) < 0:
        raise InputError(f"{path}: num_demos must be >= 1 and seeds >= 0")
    steps = data.get("steps")
    if steps is not None and (not _is(steps, int) or steps < 1):
        raise InputError(f"{path}: steps: expected a positive integer, got {steps!r}")
    resources = data.get("resources", {})
    cpus = resources.get("cpus", 1)
    gpus = resources.get("gpus", "auto")
    if gpus == "auto":
        gpus = AUTO_GPU_FRACTION if _cuda_available() else 0.0
    unknown = set(resources) - {"cpus", "gpus"}
    if unknown or not _is(cpus, float) or cpus <= 0 or not _is(gpus, float) or gpus < 0:
        raise InputError(
            f"{path}: resources: expected cpus > 0 and gpus a number >= 0 or 'auto'"
            + (f"; unknown keys {sorted(unknown)}" if unknown else "")
        )
    train = data.get("train", {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    clash = set(train) & {"game", "algo", "mode", "num_demos", "seed", "run_dir", "steps"}
    if set(train) - fields or clash:
        raise InputError(
            f"{path}: train: unknown or grid-owned keys {sorted((set(train) - fields) | clash)}"
        )
    _check_train(path, train, games)
    name = str(data.get("name", path.stem))
    return Grid(
        name=name,
        out=Path(out or data.get("out") or Path("runs") / "sweeps" / name).absolute(),
        games=games,
        methods=methods,
        num_demos=counts,
        seeds=seeds,
        steps=steps,
        cpus=float(cpus),
        gpus=float(gpus),
        train=train,
    )


def _is(value: Any, kind: type) -> bool:
    """Whether a TOML value is of `kind`; TOML's booleans are not numbers, ints are floats."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _check_train(path: Path, train: dict[str, Any], games: list[str]) -> None:
    """Every `[train]` value of the type its TrainConfig field takes, and a valid config with
    each game, so a bad value is one line about the grid file rather than a failed trial."""
    hints = typing.get_type_hints(TrainConfig)
    for key, value in train.items():
        if not _accepts(hints[key], value):
            raise InputError(
                f"{path}: train: {key}: expected {_describe(hints[key])}, got {value!r}"
            )
    for game in games:
        try:
            resolve_config(TrainConfig(game=game, **train))
        except InputError as err:
            raise InputError(f"{path}: train: {err}") from err


def _options(hint: Any) -> list[Any]:
    """The alternatives of a type hint: its Union members, Literal values, or itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [o for a in typing.get_args(hint) for o in _options(a) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    return [hint]


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a TOML value fits a TrainConfig field's type hint."""
    return any(
        _is(value, option) if isinstance(option, type) else value == option
        for option in _options(hint)
    )


def _describe(hint: Any) -> str:
    return " or ".join(o.__name__ if isinstance(o, type) else repr(o) for o in _options(hint))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# The [train] keys that go into each game's compare config (its writers read them: the demo file,
# the evaluation budget); the other [train] keys go straight into every trial's TrainConfig.
COMPARE_KEYS = ("subsample", "demos", "eval_episodes", "eval_interval", "reward_check_episodes")


def compare_config(grid: Grid, game: str) -> compare.Config:
    """The compare runner's config for one game of the grid (its output dir, demos, budgets)."""
    from iq_atari.envs import resolve_game

    name = resolve_game(game).name
    return compare.Config(
        game=name,
        num_demos=",".join(map(str, grid.num_demos)),
        seeds=max(grid.seeds) + 1,
        steps=grid.steps,
        out=str(grid.out / name),
        online="iq-online" in grid.methods,
        threads=max(1, int(grid.cpus)),
        progress=False,
        **{key: grid.train[key] for key in COMPARE_KEYS if key in grid.train},
    )


def trial_configs(grid: Grid) -> list[tuple[compare.Config, str, int, int, Any]]:
    """Every (compare config, method, demos, seed, TrainConfig) of the grid, demos recorded."""
    trials = []
    for game in grid.games:
        config = compare_config(grid, game)
        demos = compare.demo_file(config, max(grid.num_demos))  # once, before any trial starts
        # Absolute: Ray Tune runs each trial in a working directory of its own.
        config = dataclasses.replace(config, demos=str(Path(demos).absolute()))
        for method, count, seed in itertools.product(grid.methods, grid.num_demos, grid.seeds):
            run_dir = Path(config.out) / "runs" / f"{method}_d{count}_s{seed}"
            train_cfg = compare.train_config(config, method, count, seed, run_dir)
            extra = {k: v for k, v in grid.train.items() if k not in ("demos", "subsample")}
            train_cfg = dataclasses.replace(train_cfg, **extra)
            trials.append((config, method, count, seed, train_cfg))
    return trials


def run_trial(tune_config: dict) -> dict:
    """One Ray Tune trial: train (or resume) one grid cell, as `make compare` does."""
    return compare.run_cell(TrainConfig(**tune_config["spec"]["train_config"]))


def run(config: Config) -> Path:
    """Expand the grid, run the unfinished trials on Ray, write each game's compare outputs."""
    grid = load_grid(config.grid, config.out)
    trials = trial_configs(grid)
    todo = [t for t in trials if not compare.is_finished(t[4])]
    print(f"sweep {grid.name}: {len(trials)} trials, {len(trials) - len(todo)} already finished")
    failures = _run_on_ray(grid, config, todo) if todo else {}
    for trial, error in failures.items():
        print(f"FAILED {trial}: {error}", file=sys.stderr)
    for game in dict.fromkeys(t[0].game for t in trials):
        finished = [t for t in trials if t[0].game == game and compare.is_finished(t[4])]
        if finished:
            cells = [(m, n, s, compare.run_cell(cfg)) for _, m, n, s, cfg in finished]
            compare.write_outputs(finished[0][0], cells)
    if failures:
        raise SystemExit(1)
    return grid.out


def _run_on_ray(grid: Grid, config: Config, todo: list) -> dict[str, str]:
    """Run `todo` as Ray Tune trials; returns {trial name: error} of the failed ones."""
    try:
        import ray
        from ray import tune
    except ModuleNotFoundError as err:
        raise InputError("the sweep needs Ray: pip install -e '.[sweep]'") from err

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if config.address:
        ray.init(address=config.address, log_to_driver=False)
    else:
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        names = [f"{c.game}/{m}_d{n}_s{s}" for c, m, n, s, _ in todo]
        specs = [
            {"name": name, "train_config": dataclasses.asdict(t[4])}
            for name, t in zip(names, todo, strict=True)
        ]
        resources = {"cpu": grid.cpus, "gpu": grid.gpus}
        tuner = tune.Tuner(
            tune.with_resources(run_trial, resources),
            param_space={"spec": tune.grid_search(specs)},
            run_config=tune.RunConfig(
                name=grid.name,
                storage_path=str(grid.out / "_tune"),
                verbose=1 if config.progress else 0,
            ),
        )
        results = tuner.fit()
        return {
            result.config["spec"]["name"]: str(result.error).strip().splitlines()[-1]
            for result in results
            if result.error is not None
        }
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
