"""How well a pixel network fits an expert's action labels: train a fresh soft-Q network as a
classifier on a distillation's aggregate (`runners.distill` saves it as
`<checkpoint-dir>/aggregate.npz`) and report its accuracy, every quarter of the updates, on the
last games of the aggregate (held out) and on training states, with per-action recall.

  PYTHONPATH=. python examples/fit_labels.py runs/distill/Pong-ppo-ram2-s0/aggregate.npz \
      --encoder fine --updates 8000 --n-actions 6 --out fit-fine.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from iq_atari.buffers import FrameBuffer
from iq_atari.collector import read_replay
from iq_atari.networks import CONV_LAYERS, NatureCNN
from iq_atari.utils import atomic_path


def load_aggregate(path: str) -> FrameBuffer:
    """The distillation's aggregate as `runners.distill` reads it when it resumes."""
    _, state = read_replay(Path(path), "give the aggregate.npz of a runners.distill run")
    frames = np.asarray(state["frames"])
    buffer = FrameBuffer(frames.shape[0] * frames.shape[1], (4, *frames.shape[2:]), np.uint8)
    buffer.load_state_dict(state, path)
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("aggregate")
    parser.add_argument("--encoder", choices=list(CONV_LAYERS), default="nature")
    parser.add_argument("--updates", type=int, default=8000)
    parser.add_argument("--held-games", type=int, default=4, help="last games held out")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-actions", type=int, help="network outputs (default: the largest label + 1)"
    )
    parser.add_argument("--out", help="JSON of the evaluations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    buffer = load_aggregate(args.aggregate)
    valid = np.flatnonzero(buffer.has_next[0, : buffer.count])
    starts = np.flatnonzero(buffer.t[0, : buffer.count] == 0)  # one stream, oldest first
    held_from = starts[-args.held_games]
    train, held = valid[valid < held_from], valid[valid >= held_from][::2]
    train_eval = rng.choice(train, min(8000, len(train)), replace=False)
    labels = buffer.actions[0]
    n_actions = args.n_actions or int(labels[valid].max()) + 1
    net = NatureCNN((4, *buffer.frames.shape[2:]), n_actions, encoder=args.encoder)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    print(f"{args.encoder}: {len(train)} training states, {len(held)} held out", flush=True)

    @torch.no_grad()
    def accuracy(slots: np.ndarray) -> tuple[float, dict[int, float]]:
        predicted = np.concatenate(
            [
                net(torch.as_tensor(buffer.observations(slots[i : i + 512]))).argmax(-1).numpy()
                for i in range(0, len(slots), 512)
            ]
        )
        truth = labels[slots]
        recall = {int(a): float((predicted[truth == a] == a).mean()) for a in np.unique(truth)}
        return float((predicted == truth).mean()), recall

    rows, start = [], time.time()
    for update in range(1, args.updates + 1):
        pick = rng.choice(train, args.batch_size)
        logits = net(torch.as_tensor(buffer.observations(pick)))
        loss = nn.functional.cross_entropy(logits, torch.as_tensor(labels[pick]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update % max(1, args.updates // 4) == 0:
            train_acc, _ = accuracy(train_eval)
            held_acc, recall = accuracy(held)
            rows.append(
                dict(
                    updates=update,
                    train_acc=train_acc,
                    held_acc=held_acc,
                    held_recall=recall,
                    wall_s=round(time.time() - start, 1),
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
