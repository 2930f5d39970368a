"""CLI plumbing: the console script, `--help` of every runner, one-line errors for bad input."""

import dataclasses
import importlib.util
import subprocess
import sys
from typing import Literal

import pytest

from iq_atari.errors import InputError
from runners.cli import COMMANDS, main
from runners.common import arg, run_cli

EXISTING = [name for name in COMMANDS if importlib.util.find_spec(f"runners.{name}") is not None]


@pytest.mark.parametrize("name", EXISTING)
def test_every_runner_has_help(name):
    out = subprocess.run(
        [sys.executable, "-m", f"runners.{name}", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--" in out.stdout and "usage" in out.stdout


def test_console_script_lists_commands(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


def test_unknown_command_is_one_line_error(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'trian'") and err.count("\n") == 1


@dataclasses.dataclass
class _Config:
    steps: int = arg(10, "number of steps", positive=True)
    loss: Literal["value", "v0"] = arg("value", "loss variant")
    fail: bool = arg(False, "raise an InputError")


def _run(config: _Config) -> None:
    if config.fail:
        raise InputError(f"demo.npz: actions: expected int64, got float32 (steps={config.steps})")


def test_run_cli_parses_dataclass_flags():
    seen = []
    assert run_cli(_Config, seen.append, ["--steps", "3", "--loss", "v0"], "test") == 0
    assert seen == [_Config(steps=3, loss="v0", fail=False)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--steps", "-5"], "--steps must be a positive integer"),
        (["--loss", "kl"], "invalid choice: 'kl'"),
        (["--fail"], "demo.npz: actions: expected int64"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    try:
        code = run_cli(_Config, _run, argv, "test")
    except SystemExit as exit_:  # argparse's own errors exit from inside parse_args
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
