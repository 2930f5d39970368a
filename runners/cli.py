"""`iq-atari <command> [flags]`: the console script; each command is a module in runners/."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demos": "record expert demonstrations to a demo file",
    "train": "train IQ-Learn (or BC) from demos",
    "record": "record gameplay videos of an agent and/or an expert",
    "compare": "IQ-Learn vs behavioral cloning on the same demos",
    "expert": "train an expert with stable-baselines3",
    "bench": "throughput / memory benchmarks",
    "efficiency": "updates / env steps to 90% of the expert, from compare grids and runs",
    "sweep": "run a compare/train grid on Ray (local or a cluster)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: iq-atari <command> [flags]\n\ncommands:")
        for name, what in COMMANDS.items():
            print(f"  {name:<10} {what}")
        print("\n`iq-atari <command> --help` lists a command's flags.")
        return 0
    name = "record" if argv[0] == "video" else argv[0]
    if name not in COMMANDS:
        print(
            f"error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return importlib.import_module(f"runners.{name}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
