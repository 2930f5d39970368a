"""Benchmarks against the machine's own limits, each figure a ratio measured in the same process.

1. env: agent steps/s of the acting loop (`Collector`: vector env + soft-Q policy forward on the
   Pong Nature-CNN + writing to the FrameBuffer, the policy overlapped with emulation) vs raw
   `AtariVectorEnv` with the same settings and random actions; the same with a bf16 policy, and
   an alternating act-then-step loop (no overlap). Target >= 0.6. Beside it the
   bound the cores allow, E / (E + F): emulation costs E CPU-seconds per agent step, the policy
   and replay write F, and raw emulation already keeps the cores busy.
2. update: IQ updates/s (`IQLearner.update`, Pong recipe online: 64 expert + 64 agent transitions
   sampled from FrameBuffers, V(s') through the online net, policy regulariser) vs the
   same forward/backward/Adam on tensors already in memory. Target >= 0.85.
3. memory: bytes per Atari transition in the replay FrameBuffer (RAM) and in a compressed demo
   file (disk) vs the naive layout, obs + next_obs 4-stacks = 2*4*84*84 B. Targets <= 1/4, 1/20.
4. sample efficiency (runners.efficiency): updates and env steps to 90% of the expert's
   normalised score, IQ vs BC, from compare grids under runs/ and the runs/Pong/* run dirs.

Timed figures alternate the measured loop and its baseline in short chunks and report the median
of the per-repeat ratios, so a shared, busy CPU moves both sides alike.

Examples:
  python -m runners.bench                 # writes bench.json
  python -m runners.bench --quick --out /tmp/bench.json
"""

from __future__ import annotations

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

from iq_atari.buffers import FrameBuffer, expert_buffer
from iq_atari.collector import Collector
from iq_atari.config import TrainConfig, resolve_config
from iq_atari.demos import DemoSet, load_demos, save_demos
from iq_atari.envs import AtariSettings, make_vec_env
from iq_atari.errors import InputError
from iq_atari.iq_learner import IQLearner
from iq_atari.learners import load_learner, make_learner
from iq_atari.networks import DEFAULT_ENCODER
from iq_atari.utils import atomic_write_text, cpu_facts
from runners import efficiency
from runners.common import arg, run_cli

GAME = "Pong"
FRAME_BYTES = 84 * 84
NAIVE_TRANSITION_BYTES = 2 * 4 * FRAME_BYTES  # obs and next_obs as full 4-stacks
REFERENCE_DEMOS = Path("expert_demos/reference/Pong_ppo-ram_20ep.npz")
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
    compare_root: str = arg("runs", "searched for compare grids (compare.csv + baselines.json)")
    runs: str = arg("runs/Pong/*", "comma-separated globs of single run directories to summarise")
    checkpoint: str | None = arg(
        None,
        "Pong checkpoint (.pt or run dir) for the acting weights and the bf16 agreement "
        "(default: the newest runs/Pong/*/checkpoints/best.pt; 'none': random init)",
    )
    seed: int = arg(0, "seed of envs, networks and sampling")
    bf16: bool = arg(False, "bfloat16 autocast on the CNN body in the update figure")
    threads: int = arg(
        1,
        "torch CPU threads (0: torch's default); on a busy CPU, OpenMP threads spin at barriers "
        "while the other cores work, so one is the steady choice",
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


def cpu_per_call(fn: Callable[[], object], min_s: float) -> float:
    """CPU seconds of this process (all its threads) per call of `fn`, over >= `min_s` of wall."""
    fn()
    calls, cpu, start = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - start < min_s or calls < 3:
        fn()
        calls += 1
    return (time.process_time() - cpu) / calls


def acting_costs(learners: dict[str, IQLearner], obs: np.ndarray, min_s: float) -> dict:
    """CPU seconds per agent step of the policy (softmax sampling, the overlapped collector's
    batch of n_envs / 2 and the whole n_envs) and of a replay write, with one torch thread."""
    out = {}
    half = obs[: len(obs) // 2]
    for name, learner in learners.items():
        for batch in (half, obs):
            cost = cpu_per_call(lambda b=batch, lr=learner: lr.act(b, greedy=False), min_s)
            out[f"act_{name}_b{len(batch)}_cpu_ms_per_step"] = 1e3 * cost / len(batch)
    buffer = FrameBuffer(10 * len(obs), obs.shape[1:], n_envs=len(obs))
    buffer.start(obs)
    actions, zeros = np.zeros(len(obs), np.int64), np.zeros(len(obs), bool)
    cost = cpu_per_call(lambda: buffer.add(actions, zeros, zeros, zeros, obs, zeros), min_s)
    out["replay_add_cpu_ms_per_step"] = 1e3 * cost / len(obs)
    return out


def greedy_agreement(fp32: IQLearner, bf16: IQLearner, obs: np.ndarray) -> float:
    """Fraction of observations on which bf16 and fp32 networks (same weights) agree on argmax Q."""
    return float(np.mean(fp32.act(obs, greedy=True) == bf16.act(obs, greedy=True)))


def env_figures(
    config: Config,
    train_config: TrainConfig,
    learners: dict[str, IQLearner],
    obs: np.ndarray,
    repeats: int,
    chunk_s: float,
) -> tuple[dict, Collector]:
    """collector.Collector (overlapped; fp32 and bf16 policy) and an alternating act-then-step
    loop vs raw AtariVectorEnv with the same settings; and the bound the cores allow.

    Bound: raw emulation costs E CPU-seconds per agent step and keeps every core busy; the acting
    loop must also spend F (policy + replay write) per step, so even perfectly overlapped it
    reaches at most E / (E + F) of the raw rate.
    """
    settings, n = AtariSettings(), config.n_envs
    raw_threads = min(n, os.cpu_count() or 1)
    raw = make_vec_env(GAME, n, seed=config.seed, settings=settings, num_threads=raw_threads)
    raw.reset()
    n_actions = int(raw.single_action_space.n)
    rng = np.random.default_rng(config.seed)

    def raw_step() -> int:
        raw.step(rng.integers(n_actions, size=n))
        return n

    out: dict = {"env_raw_threads": raw_threads}
    emulation = cpu_per_call(raw_step, 2 * chunk_s) / n
    out["emulation_cpu_ms_per_step"] = 1e3 * emulation
    out.update(acting_costs(learners, obs, chunk_s))
    for name in learners:
        acting = out[f"act_{name}_b{n // 2}_cpu_ms_per_step"] + out["replay_add_cpu_ms_per_step"]
        out[f"env_ratio_bound_{name}"] = emulation / (emulation + 1e-3 * acting)
    out["env_ratio_bound"] = out["env_ratio_bound_fp32"]

    # The same work without the overlap: act, then step, one after the other (what it gains).
    plain = make_vec_env(GAME, n, seed=config.seed, settings=settings, num_threads=raw_threads)
    plain_obs, _ = plain.reset()
    plain_buffer = FrameBuffer(train_config.replay_size, plain_obs.shape[1:], n_envs=n)
    plain_buffer.start(plain_obs)
    plain_autoreset = np.zeros(n, dtype=bool)

    def alternating_step() -> int:
        nonlocal plain_obs, plain_autoreset
        actions = learners["fp32"].act(plain_obs, greedy=False)
        plain_obs, rewards, terminated, truncated, _ = plain.step(actions)
        plain_buffer.add(actions, rewards, terminated, truncated, plain_obs, plain_autoreset)
        plain_autoreset = terminated | truncated
        return n

    collectors = {
        name: Collector(train_config, settings, raw.single_observation_space) for name in learners
    }
    figures = {"alternating": alternating_step}
    for name, collector in collectors.items():
        figures[f"collector_{name}"] = collector_step(collector, learners[name], n)
    try:
        for label, step in figures.items():
            result = timed_ratio(step, raw_step, repeats, chunk_s)
            out[f"env_ratio_{label}"] = result["ratio"]
            out[f"env_{label}_steps_per_s"] = result["measured_per_s"]
            out[f"env_{label}_raw_steps_per_s"] = result["baseline_per_s"]
            out[f"env_{label}_ratios"] = result["ratios"]
    except BaseException:
        for collector in collectors.values():
            collector.close()
        raise
    finally:
        raw.close()
        plain.close()
    kept = collectors.pop("fp32")  # its buffer is the replay of the update figure
    for collector in collectors.values():
        collector.close()
    out["env_ratio"] = out["env_ratio_collector_fp32"]
    # The bound's premise (raw emulation keeps the cores busy), and what the collector really
    # spends per step: more than E + F when the policy and emulation slow each other down.
    out["env_raw_cores_busy"] = emulation * out["env_collector_fp32_raw_steps_per_s"]
    collector_cpu = cpu_per_call(collector_step(kept, learners["fp32"], n), chunk_s) / n
    out["collector_fp32_cpu_ms_per_step"] = 1e3 * collector_cpu
    return out, kept


def collector_step(collector: Collector, learner: IQLearner, n_envs: int) -> Callable[[], int]:
    def step() -> int:
        collector.step(learner)
        return n_envs

    return step


# -- updates -------------------------------------------------------------------------------------


def update_figures(
    learner: IQLearner,
    expert: FrameBuffer,
    replay: FrameBuffer,
    batch_size: int,
    seed: int,
    repeats: int,
    chunk_s: float,
) -> dict:
    """`IQLearner.update` on batches sampled from FrameBuffers vs its own `update_on` on the same
    update's tensors made once ahead of time: the cost of sampling and moving the batch."""
    rng = np.random.default_rng(seed)
    tensors = learner.tensors(expert.sample(batch_size, rng), replay.sample(batch_size, rng))

    def real() -> int:
        learner.update(expert.sample(batch_size, rng), replay.sample(batch_size, rng))
        return 1

    def pure() -> int:
        learner.update_on(tensors)
        return 1

    result = timed_ratio(real, pure, repeats, chunk_s)
    return {
        "update_ratio": result["ratio"],
        "updates_per_s": result["measured_per_s"],
        "pure_updates_per_s": result["baseline_per_s"],
        "update_ratios": result["ratios"],
        "update_batch": f"{batch_size} expert + {batch_size} agent"
        + (
            f" + {len(learner.initial_obs)} initial states"
            if learner.config.loss.value_term == "v0"
            else ""
        ),
    }


# -- the run -------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = cpu_facts()
    return {
        "cpu_model": cpu["cpu_model"],
        "cpu_count": cpu["cpu_count"],
        "avx512_bf16": cpu["avx512_bf16"],
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "load_avg_start": os.getloadavg()[0],
    }


def acting_weights(config: Config) -> tuple[str, dict | None, str]:
    """The IQ Pong checkpoint whose weights the acting figures use (newest best.pt of an IQ run
    under runs/Pong unless --checkpoint says), or random initial weights when there is none; and
    the encoder those weights need (random weights: the Nature CNN the figures were first
    measured with)."""
    if config.checkpoint == "none":
        return "random init", None, DEFAULT_ENCODER
    if config.checkpoint:
        path = Path(config.checkpoint)
    else:
        found = [
            p
            for p in Path("runs/Pong").glob("*/checkpoints/best.pt")
            if (p.parents[1] / "config.json").is_file()
            and json.loads((p.parents[1] / "config.json").read_text()).get("algo") == "iq"
        ]
        if not found:
            return (
                "random init (no IQ run with runs/Pong/*/checkpoints/best.pt)",
                None,
                DEFAULT_ENCODER,
            )
        path = max(found, key=os.path.getmtime)
    learner, loaded = load_learner(path)
    if loaded.algo != "iq" or loaded.game != GAME:
        raise InputError(f"--checkpoint {path}: an IQ {GAME} checkpoint is needed")
    return str(path), learner.agent.state_dict(), loaded.encoder


def run(config: Config) -> dict:
    repeats = config.repeats or (1 if config.quick else 5)
    chunk_s = config.chunk_s or (0.2 if config.quick else 3.0)
    config = dataclasses.replace(config, n_envs=config.n_envs or (4 if config.quick else 8))
    if config.n_envs < 2:
        raise InputError("--n-envs must be at least 2 (the overlapped collector has two halves)")
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

    record["acting_weights"], weights, encoder = acting_weights(config)
    train_config = resolve_config(
        TrainConfig(
            game=GAME,
            mode="online",
            n_envs=config.n_envs,
            seed=config.seed,
            progress=False,
            replay_size=2_000 if config.quick else 100_000,
            encoder=encoder,
            bf16=False,
        )
    )
    obs_space = Box(0, 255, (demos.frame_stack, 84, 84), np.uint8)
    n_actions = int(demos.meta["n_actions"])
    torch.manual_seed(config.seed)
    learners = {}
    for name in ("fp32", "bf16"):
        learners[name] = make_learner(
            dataclasses.replace(train_config, bf16=name == "bf16"),
            obs_space,
            n_actions,
            torch.device("cpu"),
            expert.initial_obs(),
            expert,
        )
        if weights is not None:
            learners[name].agent.load_state_dict(weights)
        elif name == "bf16":  # the same weights as fp32
            learners[name].agent.load_state_dict(learners["fp32"].agent.state_dict())
    frames = expert.sample(256 if config.quick else 2048, np.random.default_rng(config.seed)).obs
    env, collector = env_figures(
        config, train_config, learners, frames[: config.n_envs], repeats, chunk_s
    )
    env["bf16_greedy_agreement"] = greedy_agreement(learners["fp32"], learners["bf16"], frames)
    record.update(env)
    replay = collector.buffer
    record["replay_bytes_per_transition"] = replay.nbytes / (replay.n_envs * replay.slots)
    record["replay_memory_ratio"] = record["replay_bytes_per_transition"] / NAIVE_TRANSITION_BYTES
    record.update(
        update_figures(
            learners["bf16" if config.bf16 else "fp32"],
            expert,
            replay,
            train_config.batch_size,
            config.seed,
            repeats,
            chunk_s,
        )
    )
    collector.close()
    record["sample_efficiency"] = efficiency.collect(config.compare_root, config.runs)
    record["load_avg_end"] = os.getloadavg()[0]
    record["wall_time_s"] = round(time.time() - started, 1)
    print(table(record))
    print(
        efficiency.summary(
            record["sample_efficiency"]["rows"], record["sample_efficiency"]["notes"]
        )
    )
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

    def env_row(label: str, key: str) -> str:
        return (
            f"{label:<26} {r['env_ratio_' + key]:>6.3f}  {r[f'env_{key}_steps_per_s']:>8.0f} "
            f"agent st/s  {r[f'env_{key}_raw_steps_per_s']:>8.0f} raw st/s"
        )

    def act(precision: str, batch: int) -> float:
        return r[f"act_{precision}_b{batch}_cpu_ms_per_step"]

    n = r["n_envs"]
    lines = [
        f"CPU {r['cpu_model']} ({r['cpu_count']} cores, avx512_bf16={r['avx512_bf16']}), "
        f"torch {r['torch_version']} threads {r['torch_threads']}, "
        f"load avg {r['load_avg_start']:.1f} -> {r['load_avg_end']:.1f}, "
        f"{r['wall_time_s']:.0f} s, {n} envs (raw: {r['env_raw_threads']} ALE threads)",
        f"CPU ms per agent step: emulation {r['emulation_cpu_ms_per_step']:.3f}; policy fp32 "
        f"{act('fp32', n // 2):.3f} (batch {n // 2}) / {act('fp32', n):.3f} (batch {n}); policy "
        f"bf16 {act('bf16', n // 2):.3f} / {act('bf16', n):.3f}; replay write "
        f"{r['replay_add_cpu_ms_per_step']:.3f}",
        f"raw emulation keeps {r['env_raw_cores_busy']:.2f} cores busy; the fp32 collector "
        f"spends {r['collector_fp32_cpu_ms_per_step']:.3f} CPU ms per agent step",
        f"env_ratio_bound E/(E+F): fp32 {r['env_ratio_bound_fp32']:.3f}, bf16 "
        f"{r['env_ratio_bound_bf16']:.3f}; bf16 vs fp32 greedy actions agree on "
        f"{r['bf16_greedy_agreement']:.1%} of Pong frames ({r['acting_weights']})",
        f"{'figure':<26} {'ratio':>6}  {'measured':>20}  {'baseline':>17}  target",
        f"{env_row('env_ratio (Collector fp32)', 'collector_fp32')}  {verdict('env_ratio')}",
        env_row("  Collector, bf16 policy", "collector_bf16"),
        env_row("  act, then step", "alternating"),
        f"{'update_ratio':<26} {r['update_ratio']:>6.3f}  {r['updates_per_s']:>10.2f} upd/s  "
        f"{r['pure_updates_per_s']:>8.2f} pure upd/s  {verdict('update_ratio')}",
        f"{'replay_memory_ratio':<26} {r['replay_memory_ratio']:>6.4f}  "
        f"{r['replay_bytes_per_transition']:>8.0f} B/trans  {NAIVE_TRANSITION_BYTES:>12} B naive  "
        f"{verdict('replay_memory_ratio')}",
        f"{'demo_disk_ratio':<26} {r['demo_disk_ratio']:>6.4f}  "
        f"{r['demo_bytes_per_transition']:>8.0f} B/trans  {NAIVE_TRANSITION_BYTES:>12} B naive  "
        f"{verdict('demo_disk_ratio')}",
        f"  demo file {r['demo_file']} ({r['demo_transitions']} transitions)",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_cli(Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
