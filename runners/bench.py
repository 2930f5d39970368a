"""Benchmarks against the machine's own limits, each figure a ratio measured in the same process.

1. env: agent steps/s of the acting loop (`train.Collector`: vector env + soft-Q policy forward on
   the Pong Nature-CNN + writing to the FrameBuffer) vs raw `AtariVectorEnv` with the same
   settings and random actions. Also a prototype that overlaps the policy forward with emulation
   (two half-size vector envs, async send/recv, ping-pong). Target >= 0.6.
2. update: IQ updates/s (`IQLearner.update`, Pong recipe online: 64 expert + 64 agent transitions
   sampled from FrameBuffers, V(s') through the online net, v0 term, policy regulariser) vs the
   same forward/backward/Adam on tensors already in memory. Target >= 0.85.
3. memory: bytes per Atari transition in the replay FrameBuffer (RAM) and in a compressed demo
   file (disk) vs the naive layout, obs + next_obs 4-stacks = 2*4*84*84 B. Targets <= 1/4, 1/20.
4. sample efficiency from runs/compare/*/compare.csv, if any exist.

Timed figures alternate the measured loop and its baseline in short chunks and report the median
of the per-repeat ratios, so a shared, busy CPU moves both sides alike.

Examples:
  python -m runners.bench                 # a few minutes on 2 cores, writes bench.json
  python -m runners.bench --quick --out /tmp/bench.json
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gymnasium.spaces import Box

from iq_atari.buffers import Batch, FrameBuffer, expert_buffer
from iq_atari.demos import DemoSet, load_demos, save_demos
from iq_atari.envs import AtariSettings, make_vec_env
from iq_atari.iq import IQLearner, iq_loss, to_tensor
from iq_atari.train import Collector, TrainConfig, make_learner, resolve_config
from iq_atari.utils import atomic_write_text
from runners.common import arg, run_cli

GAME = "Pong"
FRAME_BYTES = 84 * 84
NAIVE_TRANSITION_BYTES = 2 * 4 * FRAME_BYTES  # obs and next_obs as full 4-stacks
REFERENCE_DEMOS = Path("expert_demos/reference/Pong_planner_20ep.npz")
TARGETS = {
    "env_ratio": (">=", 0.6),
    "update_ratio": (">=", 0.85),
    "replay_memory_ratio": ("<=", 0.25),
    "demo_disk_ratio": ("<=", 0.05),
}


@dataclass
class Config:
    """Benchmark options."""

    quick: bool = arg(False, "a smoke run of a few seconds (tests); figures are noisy")
    out: str = arg("bench.json", "where to write the JSON record")
    n_envs: int | None = arg(
        None,
        "envs per vector env, raw and acting loop alike (default 8, quick 4)",
        positive=True,
    )
    repeats: int | None = arg(None, "alternating repeats per timed figure (default 5, quick 1)")
    chunk_s: float | None = arg(None, "seconds per timed chunk (default 3, quick 0.2)")
    demos: str | None = arg(
        None,
        "Pong demo file for the disk ratio and the expert buffer (default the reference file "
        "if present, else one random-policy episode recorded to a temp dir)",
    )
    compare_root: str = arg("runs/compare", "where compare runs live (sample-efficiency table)")
    seed: int = arg(0, "seed of envs, networks and sampling")
    bf16: bool = arg(False, "bfloat16 autocast on the CNN body (acting and updates alike)")
    threads: int = arg(
        1,
        "torch CPU threads (0: torch's default). On a shared 2-core CPU, 2 OpenMP threads spin at "
        "barriers while the other core is busy: a batch-8 forward took 180-260 ms instead of 5",
    )


def timed_ratio(
    measured: Callable[[], int], baseline: Callable[[], int], repeats: int, chunk_s: float
) -> dict:
    """Rates (units/s) of `measured` and `baseline`, alternated in chunks of ~`chunk_s` seconds.

    Each callable does one unit batch of work and returns how many units it did. The ratio is the
    median over repeats of measured/baseline rates taken back to back; the order alternates.
    """

    def rate(fn: Callable[[], int]) -> float:
        units, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < chunk_s or units == 0:
            units += fn()
        return units / elapsed

    measured(), baseline()  # warm-up: first calls allocate, spawn threads, JIT oneDNN kernels
    ratios, m_rates, b_rates = [], [], []
    for r in range(repeats):
        if r % 2 == 0:
            m, b = rate(measured), rate(baseline)
        else:
            b, m = rate(baseline), rate(measured)
        m_rates.append(m)
        b_rates.append(b)
        ratios.append(m / b)
    return {
        "ratio": statistics.median(ratios),
        "measured_per_s": statistics.median(m_rates),
        "baseline_per_s": statistics.median(b_rates),
        "ratios": ratios,
    }


# -- demos ---------------------------------------------------------------------------------------


def random_pong_demo(directory: Path, seed: int, max_steps: int) -> Path:
    """Record one random-policy Pong episode (cut at `max_steps`) as a demo file."""
    from iq_atari.envs import make_env
    from iq_atari.rollout import run_episode

    settings = AtariSettings(max_episode_frames=max_steps * AtariSettings().frame_skip)
    env = make_env(GAME, seed, settings=settings)
    rng = np.random.default_rng(seed)
    try:
        n_actions = int(env.action_space.n)
        episode = run_episode(env, lambda obs: rng.integers(n_actions), seed)
    finally:
        env.close()
    meta = {
        "env_id": "ALE/Pong-v5",
        "env_kwargs": settings.to_dict(),
        "n_actions": n_actions,
        "expert": {"name": "random"},
        "seed": seed,
    }
    return save_demos(directory / "Pong_random_1ep.npz", [episode.trajectory], meta)


def demo_figures(path: Path) -> tuple[dict, DemoSet]:
    """Disk bytes per transition of a demo file vs naive stacks, and its trajectories."""
    demos = load_demos(path)
    transitions = int(sum(len(t) for t in demos.trajectories))
    per_transition = path.stat().st_size / transitions
    return {
        "demo_file": str(path),
        "demo_transitions": transitions,
        "demo_file_bytes": path.stat().st_size,
        "demo_bytes_per_transition": per_transition,
        "demo_disk_ratio": per_transition / NAIVE_TRANSITION_BYTES,
    }, demos


# -- acting loop ---------------------------------------------------------------------------------


class OverlappedCollector:
    """Prototype: two half-size vector envs stepped in ping-pong with async send/recv, so one half
    emulates while the policy runs on the other's observations. One FrameBuffer per half."""

    def __init__(self, config: TrainConfig, settings: AtariSettings, learner: IQLearner):
        half = config.n_envs // 2
        self.learner = learner
        self.envs = [
            make_vec_env(GAME, half, config.seed + i * half, settings=settings, num_threads=1)
            for i in range(2)
        ]
        shape = self.envs[0].single_observation_space.shape
        self.buffers = [FrameBuffer(config.replay_size // 2, shape, n_envs=half) for _ in range(2)]
        self.autoreset = [np.zeros(half, dtype=bool) for _ in range(2)]
        self.actions = []
        for env, buffer in zip(self.envs, self.buffers, strict=True):
            obs, _ = env.reset()
            buffer.start(obs)
            self.actions.append(learner.act(obs, greedy=False))
            env.unwrapped.send(self.actions[-1])  # in flight from here on
        self.steps = 0

    def step(self) -> None:
        """Receive each half in turn, record it, choose its next actions and send them."""
        for i, env in enumerate(self.envs):
            obs, rewards, terminated, truncated, info = env.unwrapped.recv()
            # With batch_size == num_envs, recv waits for every env and answers in env order.
            if not np.array_equal(info["env_id"], np.arange(len(obs))):
                raise RuntimeError(f"recv answered envs {info['env_id']}, expected 0..n-1")
            self.buffers[i].add(
                self.actions[i], rewards, terminated, truncated, obs, self.autoreset[i]
            )
            self.autoreset[i] = terminated | truncated
            self.actions[i] = self.learner.act(obs, greedy=False)
            env.unwrapped.send(self.actions[i])
            self.steps += len(obs)

    def close(self) -> None:
        for env in self.envs:
            env.unwrapped.recv()  # drain the step in flight
            env.close()


def env_figures(
    config: Config, train_config: TrainConfig, learner: IQLearner, repeats: int, chunk_s: float
) -> tuple[dict, Collector]:
    """Acting loop and the overlapped prototype vs raw AtariVectorEnv, same settings."""
    settings = AtariSettings()
    n = config.n_envs
    raw = make_vec_env(GAME, n, seed=config.seed, settings=settings)
    raw.reset()
    n_actions = int(raw.single_action_space.n)
    rng = np.random.default_rng(config.seed)
    collector = Collector(train_config, settings, raw.single_observation_space)

    def raw_step() -> int:
        raw.step(rng.integers(n_actions, size=n))
        return n

    def collector_step() -> int:
        collector.step(learner)
        return n

    result = timed_ratio(collector_step, raw_step, repeats, chunk_s)
    out = {
        "env_ratio": result["ratio"],
        "env_raw_steps_per_s": result["baseline_per_s"],
        "env_collector_steps_per_s": result["measured_per_s"],
        "env_ratios": result["ratios"],
    }
    overlapped = OverlappedCollector(train_config, settings, learner)

    def overlapped_step() -> int:
        overlapped.step()
        return n

    try:
        result = timed_ratio(overlapped_step, raw_step, repeats, chunk_s)
    finally:
        overlapped.close()
        raw.close()
    out.update(
        env_overlap_ratio=result["ratio"],
        env_overlap_steps_per_s=result["measured_per_s"],
        env_overlap_raw_steps_per_s=result["baseline_per_s"],
        env_overlap_ratios=result["ratios"],
    )
    return out, collector


# -- updates -------------------------------------------------------------------------------------


def batch_tensors(learner: IQLearner, expert: Batch, agent: Batch) -> dict:
    """The tensors `IQLearner.update` builds from two batches, made once, ahead of time."""
    device = learner.device
    obs = to_tensor(np.concatenate([expert.obs, agent.obs]), device)
    next_obs = to_tensor(np.concatenate([expert.next_obs, agent.next_obs]), device)
    is_expert = torch.zeros(len(obs), dtype=torch.bool, device=device)
    is_expert[: len(expert)] = True
    return {
        "inputs": torch.cat([obs, next_obs, learner.initial_obs]),
        "n": len(obs),
        "actions": to_tensor(np.concatenate([expert.actions, agent.actions]), device),
        "terminated": to_tensor(np.concatenate([expert.terminated, agent.terminated]), device),
        "is_expert": is_expert,
    }


def pure_update(learner: IQLearner, t: dict) -> None:
    """The compute of one online IQ update (one forward over obs, next_obs and initial states,
    the loss, backward, Adam) on tensors already in memory."""
    agent, cfg, n = learner.agent, learner.config, t["n"]
    q_all = agent.q(t["inputs"]).float()
    q_obs = q_all[:n]
    next_v = agent.value(q_all[n : 2 * n])
    v_init = agent.value(q_all[2 * n :])
    q_sa = q_obs.gather(1, t["actions"].view(-1, 1)).squeeze(1)
    with torch.no_grad():
        probs = torch.softmax(q_obs.detach() / agent.alpha, dim=-1)
        sampled = torch.multinomial(probs, 1, generator=learner.generator)
    q_policy = q_obs.gather(1, sampled).squeeze(1)
    loss, _ = iq_loss(
        q_sa,
        agent.value(q_obs),
        next_v,
        t["terminated"],
        t["is_expert"],
        cfg.loss,
        v_init,
        q_policy,
    )
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()


def update_figures(
    learner: IQLearner,
    expert: FrameBuffer,
    replay: FrameBuffer,
    batch_size: int,
    seed: int,
    repeats: int,
    chunk_s: float,
) -> dict:
    """IQLearner.update with batches sampled from FrameBuffers vs the same compute on tensors."""
    cfg = learner.config
    if (cfg.next_v, cfg.loss.value_term, cfg.loss.regularize_over) != ("online", "v0", "policy"):
        raise ValueError(f"pure_update mirrors the online Pong recipe, not {cfg}")
    rng = np.random.default_rng(seed)
    tensors = batch_tensors(learner, expert.sample(batch_size, rng), replay.sample(batch_size, rng))

    def real() -> int:
        learner.update(expert.sample(batch_size, rng), replay.sample(batch_size, rng))
        return 1

    def pure() -> int:
        pure_update(learner, tensors)
        return 1

    result = timed_ratio(real, pure, repeats, chunk_s)
    return {
        "update_ratio": result["ratio"],
        "updates_per_s": result["measured_per_s"],
        "pure_updates_per_s": result["baseline_per_s"],
        "update_ratios": result["ratios"],
        "update_batch": f"{batch_size} expert + {batch_size} agent + "
        f"{len(learner.initial_obs)} initial states",
    }


# -- sample efficiency ---------------------------------------------------------------------------


def sample_efficiency(root: Path) -> list[dict]:
    """Per compare run: updates (and env steps) of the first eval reaching 90% of the expert's
    score (expert - 0.1 |expert|, so negative scores work too), from its metrics.csv."""
    rows = []
    for table in sorted(root.glob("*/compare.csv")):
        with open(table, newline="") as f:
            for row in csv.DictReader(f):
                run_dir = Path(row["run_dir"])
                eval_json, metrics = run_dir / "eval.json", run_dir / "metrics.csv"
                if not eval_json.exists() or not metrics.exists():
                    continue
                expert = json.loads(eval_json.read_text()).get("expert_mean_return")
                if expert is None:
                    continue
                threshold = expert - 0.1 * abs(expert)
                reached, env_steps = None, {}
                with open(metrics, newline="") as m:
                    for step, tag, value, _ in csv.reader(m):
                        if tag == "train/env_steps":
                            env_steps[int(step)] = float(value)
                        elif tag == "eval/mean_return" and reached is None:
                            reached = int(step) if float(value) >= threshold else None
                rows.append(
                    {
                        "compare": str(table.parent),
                        "game": row["game"],
                        "method": row["method"],
                        "demos": int(row["demos"]),
                        "seed": int(row["seed"]),
                        "expert": expert,
                        "updates_to_90": reached,
                        "env_steps_to_90": env_steps.get(reached) if reached else None,
                    }
                )
    return rows


def efficiency_table(rows: list[dict]) -> str:
    if not rows:
        return "sample efficiency: no compare runs (runs/compare/*/compare.csv) found"
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["game"], r["method"], r["demos"]), []).append(r)
    lines = [f"{'game':<12} {'method':<12} {'demos':>5} {'reached':>8} {'median updates':>15}"]
    for (game, method, demos), group in sorted(groups.items()):
        hit = [r["updates_to_90"] for r in group if r["updates_to_90"] is not None]
        med = f"{statistics.median(hit):.0f}" if hit else "-"
        lines.append(
            f"{game:<12} {method:<12} {demos:>5} {f'{len(hit)}/{len(group)}':>8} {med:>15}"
        )
    return "sample efficiency (updates to 90% of expert, median over seeds that reached it)\n" + (
        "\n".join(lines)
    )


# -- the run -------------------------------------------------------------------------------------


def machine() -> dict:
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "load_avg_start": os.getloadavg()[0],
    }


def run(config: Config) -> dict:
    repeats = config.repeats or (1 if config.quick else 5)
    chunk_s = config.chunk_s or (0.2 if config.quick else 3.0)
    config = dataclasses.replace(config, n_envs=config.n_envs or (4 if config.quick else 8))
    if config.threads:
        torch.set_num_threads(config.threads)
    record: dict = {"command": "python -m runners.bench", **dataclasses.asdict(config)}
    record.update(machine())
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if config.demos is not None:
            demo_path = Path(config.demos)
        elif REFERENCE_DEMOS.exists() and not config.quick:
            demo_path = REFERENCE_DEMOS
        else:
            demo_path = random_pong_demo(Path(tmp), config.seed, max_steps=150)
        demo, demos = demo_figures(demo_path)
    record.update(demo)
    expert = expert_buffer(demos.trajectories, demos.frame_stack)

    train_config = resolve_config(
        TrainConfig(
            game=GAME,
            mode="online",
            n_envs=config.n_envs,
            seed=config.seed,
            progress=False,
            bf16=config.bf16,
            replay_size=2_000 if config.quick else 100_000,
        )
    )
    obs_space = Box(0, 255, (demos.frame_stack, 84, 84), np.uint8)
    n_actions = int(demos.meta["n_actions"])
    torch.manual_seed(config.seed)
    learner = make_learner(
        train_config, obs_space, n_actions, torch.device("cpu"), expert.initial_obs(), expert
    )
    env, collector = env_figures(config, train_config, learner, repeats, chunk_s)
    record.update(env)
    replay = collector.buffer
    record["replay_bytes_per_transition"] = replay.nbytes / (replay.n_envs * replay.slots)
    record["replay_memory_ratio"] = record["replay_bytes_per_transition"] / NAIVE_TRANSITION_BYTES
    record.update(
        update_figures(
            learner,
            expert,
            replay,
            train_config.batch_size,
            config.seed,
            repeats,
            chunk_s,
        )
    )
    collector.close()
    record["sample_efficiency"] = sample_efficiency(Path(config.compare_root))
    record["load_avg_end"] = os.getloadavg()[0]
    record["wall_time_s"] = round(time.time() - started, 1)
    print(table(record))
    print(efficiency_table(record["sample_efficiency"]))
    atomic_write_text(config.out, json.dumps(_plain(record), indent=2) + "\n")
    print(f"wrote {config.out}")
    return record


def _plain(value):
    """JSON-safe: numpy scalars -> Python floats/ints."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def table(r: dict) -> str:
    def verdict(key: str) -> str:
        op, target = TARGETS[key]
        ok = r[key] >= target if op == ">=" else r[key] <= target
        return f"{op} {target:g}  {'met' if ok else 'NOT met'}"

    lines = [
        f"CPU {r['cpu_model']} ({r['cpu_count']} cores, avx512_bf16={r['avx512_bf16']}), "
        f"torch {r['torch_version']} threads {r['torch_threads']}, "
        f"load avg {r['load_avg_start']:.1f} -> {r['load_avg_end']:.1f}, "
        f"{r['wall_time_s']:.0f} s",
        f"{'figure':<22} {'ratio':>8}  {'measured':>24} {'baseline':>22}  target",
        f"{'env_ratio':<22} {r['env_ratio']:>8.3f}  "
        f"{r['env_collector_steps_per_s']:>12.0f} agent st/s {r['env_raw_steps_per_s']:>10.0f} raw "
        f"st/s  {verdict('env_ratio')}",
        f"{'  overlap prototype':<22} {r['env_overlap_ratio']:>8.3f}  "
        f"{r['env_overlap_steps_per_s']:>12.0f} agent st/s "
        f"{r['env_overlap_raw_steps_per_s']:>10.0f} raw st/s",
        f"{'update_ratio':<22} {r['update_ratio']:>8.3f}  {r['updates_per_s']:>14.2f} upd/s     "
        f"{r['pure_updates_per_s']:>10.2f} pure upd/s  {verdict('update_ratio')}",
        f"{'replay_memory_ratio':<22} {r['replay_memory_ratio']:>8.4f}  "
        f"{r['replay_bytes_per_transition']:>14.0f} B/trans  {NAIVE_TRANSITION_BYTES:>10} B naive  "
        f"{verdict('replay_memory_ratio')}",
        f"{'demo_disk_ratio':<22} {r['demo_disk_ratio']:>8.4f}  "
        f"{r['demo_bytes_per_transition']:>14.0f} B/trans  {NAIVE_TRANSITION_BYTES:>10} B naive  "
        f"{verdict('demo_disk_ratio')}",
        f"  demo file {r['demo_file']} ({r['demo_transitions']} transitions)",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
