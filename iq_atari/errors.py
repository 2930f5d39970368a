"""The errors runners print as one `error:` line: bad input (exit 2) and a training run that
diverged (exit 1), with `check_finite`, the check the loop makes before it logs or saves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """A user-supplied file, flag or name is wrong; the message names it and what was expected."""


class DemoError(InputError):
    """A demo file (or trajectory) is malformed or does not fit the env: "<file>: <field>: ..."."""


class NumericalError(ArithmeticError):
    """Training produced a non-finite loss or Q value; runners print one `error:` line, exit 1."""


def check_finite(metrics: Mapping[str, Any], update: int, last: Path) -> None:
    """Raise NumericalError, naming the metric, if the loss or a Q/V value of `update` is NaN or
    inf; `last` is the run's last checkpoint, which the message says is kept (or missing)."""
    for key, value in metrics.items():
        if not math.isfinite(float(value)):
            kept = f"{last} keeps the last good state" if last.is_file() else "no checkpoint"
            raise NumericalError(
                f"train/{key} is {float(value)} at update {update}: training "
                f"diverged and stopped ({kept}); try a lower --lr or a larger --alpha"
            )
