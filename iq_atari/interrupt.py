"""Ctrl-C during training: the first one asks the loop to stop after its current update (so the
checkpoint it then writes holds a whole update), a second one interrupts at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopRequest:
    """Set by the first SIGINT while `catch_sigint` is active; the loop polls `requested`."""

    def __init__(self) -> None:
        self.requested = False

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def catch_sigint(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT to `stop` for the body, then restore the previous handler. Off the main
    thread (where signal handlers cannot be set) the body runs with Python's own handling."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, stop.on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
