"""Shared CLI plumbing: dataclass configs as kebab-case flags, and one-line errors for bad input.

A runner defines a `@dataclass` config whose fields carry `help` metadata, and calls
`run_cli(Config, run, argv, description)`. Bad input (InputError, argparse's own errors, a path
that does not exist or cannot be written) exits with status 2 and one line on stderr starting
with `error:`; a diverged run or a failed write (full disk) with status 1 and one such line;
`--debug` shows tracebacks. `find_or_record_demos` is the runners' step before training: the
library trains from demos and never records them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from iq_atari.errors import InputError, NumericalError

if TYPE_CHECKING:
    from iq_atari.config import TrainConfig

C = TypeVar("C")


def arg(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with CLI help text (`choices`, `short` can be passed in kwargs)."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults in the help, and the runner's docstring kept as written (its examples).
    A help text that states its own defaults (the presets of a field left None) keeps them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default: " in action.help:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


def _positive_int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        return value

    return parse


def build_parser(config_cls: type, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one `--kebab-case` flag per field of `config_cls`."""
    parser = _Parser(description=description, formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        meta = dict(field.metadata)
        kwargs: dict[str, Any] = {"help": meta.get("help", ""), "dest": field.name}
        default = field.default
        origin = typing.get_origin(hint)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            hint, origin = args[0], typing.get_origin(args[0])
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
            kwargs["type"] = type(kwargs["choices"][0])
        elif hint is int and meta.get("positive", False):
            kwargs["type"] = _positive_int(flag)
        elif hint in (int, float, str):
            kwargs["type"] = hint
        else:
            kwargs["type"] = str
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        kwargs["default"] = default
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def given_fields(config_cls: type, argv: Sequence[str] | None) -> set[str]:
    """Names of the `config_cls` fields that `argv` sets explicitly (even to their default)."""
    unset = object()  # not a string, so argparse does not run it through the flag's type
    parser = build_parser(config_cls, "")
    parser.set_defaults(**{f.name: unset for f in dataclasses.fields(config_cls)})
    values = vars(parser.parse_args(sys.argv[1:] if argv is None else argv))
    return {name for name, value in values.items() if value is not unset and name != "debug"}


def run_cli(
    config_cls: type[C],
    run: Callable[[C], Any],
    argv: Sequence[str] | None,
    description: str,
) -> int:
    """Parse argv into `config_cls`, call `run(config)`; bad input -> `error: ...`, exit 2."""
    parser = build_parser(config_cls, description)
    ns = vars(parser.parse_args(argv))
    debug = ns.pop("debug")
    try:
        config = config_cls(**ns)
        run(config)
    except (
        InputError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    ) as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (NumericalError, OSError) as err:  # a diverged run; a full disk, an I/O error
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _one_line(err: BaseException) -> str:
    text = (
        str(err)
        if not isinstance(err, OSError) or not err.filename
        else (f"{err.filename}: {err.strerror}")
    )
    return " ".join(text.split())


def find_or_record_demos(config: TrainConfig, say: Callable[[str], Any] = print) -> Path:
    """The demo file a resolved `config` trains from: --demos, else expert_demos/, else one
    recorded now with the game's default expert (and said so)."""
    if config.demos is not None:
        return Path(config.demos)
    from iq_atari import demo_library, rollout

    found = demo_library.find_demos(config.game)
    if found is not None:
        return found
    say(
        f"no demos for {config.game} in expert_demos/: recording {config.demo_episodes} episodes "
        f"with its default expert first"
    )
    path = rollout.record_demos(
        config.game, None, episodes=config.demo_episodes, seed=config.seed, progress=config.progress
    )
    say(f"recorded {path}")
    return path


def score_agent(
    agent: Any,
    game: str,
    episodes: int,
    seed: int,
    *,
    settings: Any = None,
    greedy: bool = True,
    max_envs: int = 8,
    progress: bool = False,
    label: str = "",
) -> list[float]:
    """Whole-game returns of `agent` (a learner) over `episodes` games from seed, seed + 1, ...;
    says its mean, spread and time on stderr."""
    import time

    import numpy as np

    from iq_atari.evaluation import evaluate

    start = time.perf_counter()
    returns = evaluate(
        lambda obs: agent.act(obs, greedy=greedy),
        game,
        episodes,
        seed,
        settings=settings,
        max_envs=max_envs,
        progress=progress,
    )
    how = "greedy" if greedy else "sampled"
    print(
        f"{label + ': ' if label else ''}{np.mean(returns):+.2f} ± {np.std(returns):.2f} over "
        f"{episodes} {how} games ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    return [float(r) for r in returns]


def demos_record(state: dict, train_config: TrainConfig) -> dict:
    """What a checkpoint's demo file says about the demos it learned from: the file, the number of
    episodes, the expert's name and score (its own greedy score where its file recorded one, else
    its demos' mean); just the file when the demo file is no longer there."""
    import numpy as np

    from iq_atari.demos import read_meta
    from iq_atari.shipped import repo_relative

    path = state.get("demos")
    record: dict[str, Any] = {"file": repo_relative(path)}
    if not path or not Path(path).is_file():
        return record
    meta = read_meta(path)
    expert = meta.get("expert", {})
    score = expert.get("score")
    recorded = score.get("mean_return") if isinstance(score, dict) else None
    demo_mean = float(np.mean(meta["returns"])) if meta.get("returns") else None
    record.update(
        episodes=train_config.num_demos or len(meta.get("returns", [])),
        expert=expert.get("name"),
        expert_score=demo_mean if recorded is None else recorded,
        demo_returns_mean=demo_mean,
    )
    return record


def load_trained(
    run: str | None, checkpoint: str | None
) -> tuple[Path, dict, Any, TrainConfig, Any]:
    """The agent of `--checkpoint`, else of `--run`'s checkpoints/best.pt: (its file, the
    checkpoint's state, the learner, its TrainConfig, the Atari settings it trained with or
    None)."""
    from iq_atari.checkpoint import read_checkpoint
    from iq_atari.envs import AtariSettings
    from iq_atari.learners import load_learner

    if (run is None) == (checkpoint is None):
        raise InputError("give one of --run DIR or --checkpoint PATH")
    source = Path(checkpoint or Path(str(run), "checkpoints", "best.pt"))
    state = read_checkpoint(source)
    learner, train_config = load_learner(source)
    kwargs = state.get("env_kwargs")
    return source, state, learner, train_config, AtariSettings(**kwargs) if kwargs else None


def normalised_record(game: str, mean: float, expert_score: float | None) -> dict:
    """{"normalised", "random_score"} of a mean score against the demos' expert, for a game
    with a published random score and a known expert score; else {}."""
    from iq_atari.scores import RANDOM_SCORES, normalised

    if game not in RANDOM_SCORES or expert_score is None:
        return {}
    random = RANDOM_SCORES[game]
    return {"normalised": normalised(mean, expert_score, random), "random_score": random}


def check_json_out(out: str | None) -> None:
    """Reject an `--out` that is not a .json file name, before any work is done."""
    if out is not None and not out.endswith(".json"):
        raise InputError(f"--out: expected a .json file name, got {out!r}")


def write_json_out(out: str | None, result: dict) -> None:
    """Write a runner's result to its `--out` .json atomically (no-op without --out)."""
    import json

    from iq_atari.utils import atomic_write_text

    if out is None:
        return
    atomic_write_text(Path(out), json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out}")
