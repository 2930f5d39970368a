"""Weight-average the checkpoints of one run, as the training loop does from `--average-from` on
(`iq_atari.averaging`): the checkpoint written is the last one given, with the uniform mean of
the policies of all of them as its average (so `load_learner`, `runners.ship` and
`runners.record` act with it) and `average_from` set to the first one's update. For runs made
before the loop averaged, from checkpoints copied at their evaluations, in order:

  python examples/average_checkpoints.py OUT.pt RUN/keep/update40000.pt RUN/keep/update45000.pt \
      RUN/keep/update50000.pt
"""

from __future__ import annotations

import sys

from iq_atari.averaging import WeightAverage
from iq_atari.checkpoint import read_checkpoint, save_checkpoint
from iq_atari.errors import InputError
from iq_atari.learners import AVERAGE, load_learner


def main(out: str, checkpoints: list[str]) -> None:
    average = WeightAverage()
    updates = []
    for path in checkpoints:
        state = read_checkpoint(path)
        if state.get(AVERAGE, {}).get("count"):
            raise InputError(f"{path}: already holds an average; give the run's plain checkpoints")
        average.add(load_learner(path)[0].policy_state())
        updates.append(int(state["loop"]["updates"]))
    if updates != sorted(set(updates)):
        raise InputError(f"checkpoints out of order or repeated: updates {updates}")
    state["config"]["average_from"] = updates[0]
    state[AVERAGE] = average.state_dict()
    save_checkpoint(state, out)
    print(f"wrote {out}: the mean of {average.count} policies, updates {updates}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1], sys.argv[2:])
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
