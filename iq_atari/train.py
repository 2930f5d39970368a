"""The training loop: IQ-Learn (or BC) from demos, offline or online, with evaluation, checkpoints
(`checkpoints/{last,best}.pt`, written atomically), resume, CSV/TensorBoard metrics and a tqdm bar.

The loop is generic over a `Learner` (`update`, `act`, `state_dict`, `load_state_dict`); IQ-Learn
is `iq.IQLearner`, behavioural cloning comes from `iq_atari.bc.make_learner`.
Online mode follows the paper's recipe (section 5.1): every update mixes an expert batch with an
equal batch of the agent's own transitions, collected with the softmax policy in a vector env.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from iq_atari.agent import SoftQAgent
from iq_atari.buffers import Batch, FrameBuffer, expert_buffer
from iq_atari.envs import (
    AtariSettings,
    OverlappedAtariVecEnv,
    make_env,
    make_vec_env,
    resolve_game,
)
from iq_atari.errors import InputError, NumericalError
from iq_atari.evaluation import evaluate, reward_check
from iq_atari.iq import (
    Divergence,
    IQLearner,
    IQLearnerConfig,
    IQLossConfig,
    RegularizeOver,
    ValueTerm,
)
from iq_atari.logger import Logger, plot_curve
from iq_atari.networks import Activation, make_q_network
from iq_atari.utils import atomic_path, atomic_write_text, resolve_device, seed_everything

CHECKPOINT_FORMAT = 1
REPLAY_FILE = "replay.npz"  # checkpoints/replay.npz: an online run's replay buffer, with last.pt


class Learner(Protocol):
    """What the loop trains. Metric values are anything `float()` accepts."""

    def update(self, expert_batch: Batch, agent_batch: Batch | None) -> dict[str, Any]: ...
    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A documented field; the same metadata as runners.common.arg, so it doubles as a CLI flag."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """Everything a training run needs. None means the preset of the game's family (PRESETS)."""

    game: str = _opt("CartPole", "game: short Atari name (Pong), gymnasium id (CartPole-v1)")
    algo: Literal["iq", "bc"] = _opt("iq", "iq: IQ-Learn; bc: behavioural cloning")
    mode: Literal["offline", "online"] = _opt(
        "offline", "offline: expert data only; online: also the agent's own transitions"
    )
    demos: str | None = _opt(None, "demo file (.npz); default: expert_demos/, recorded if missing")
    num_demos: int | None = _opt(
        None, "use the first N episodes of the demos (default all)", positive=True
    )
    subsample: int = _opt(
        1,
        "use every k-th transition of each demo episode (official expert.subsample_freq)",
        positive=True,
    )
    steps: int | None = _opt(None, "gradient updates (Atari 50000, classic 10000)", positive=True)
    seed: int = _opt(0, "seed of networks, sampling and envs")
    run_dir: str | None = _opt(None, "run directory (default runs/<game>/<algo>-<seed>-<time>)")
    resume: bool = _opt(False, "continue the run in --run-dir from checkpoints/last.pt")
    device: str = _opt("auto", "auto, cpu or cuda")
    batch_size: int | None = _opt(
        None,
        "expert batch size; online adds as many agent samples (Atari 64, classic 64)",
        positive=True,
    )
    lr: float | None = _opt(None, "Adam learning rate (Atari 1e-4, classic 3e-4)")
    gamma: float = _opt(0.99, "discount")
    alpha: float | None = _opt(None, "soft-Q temperature (Atari 1e-3, classic 1e-2)")
    learn_alpha: bool = _opt(False, "learn alpha towards a target entropy")
    value_term: ValueTerm | None = _opt(None, "second loss term (offline value_expert, online v0)")
    divergence: Divergence = _opt("chi2", "f-divergence of the expert term")
    chi2_alpha: float = _opt(0.5, "chi2 regulariser weight 1/(4 chi2_alpha)")
    regularize_over: RegularizeOver | None = _opt(
        None,
        "chi2 regulariser over expert, all, or expert + agent states with policy actions "
        "(offline expert, online policy)",
    )
    next_v: Literal["online", "target"] = _opt("online", "V(s') from the online or a target net")
    tau: float = _opt(1.0, "target update rate (1 = hard copy)")
    target_interval: int = _opt(1000, "updates between target updates", positive=True)
    grad_penalty: float = _opt(0.0, "gradient penalty weight (online only; 0 = off)")
    hidden: str = _opt("64,64", "MLP hidden widths for vector observations")
    activation: Activation = _opt("elu", "MLP activation")
    bf16: bool = _opt(False, "bfloat16 autocast on the CNN body (faster on CPUs with bf16)")
    eval_interval: int | None = _opt(
        None, "updates between evaluations (Atari 5000, classic 1000)", positive=True
    )
    eval_episodes: int = _opt(10, "greedy evaluation episodes", positive=True)
    log_interval: int = _opt(100, "updates between train/ and perf/ log rows", positive=True)
    replay_size: int | None = _opt(
        None, "online replay capacity in frames (Atari 100000, classic 50000)", positive=True
    )
    learning_starts: int | None = _opt(
        None, "online: env steps before the first update (Atari 5000, classic 1000)"
    )
    n_envs: int | None = _opt(
        None, "online: envs stepped together (Atari 4, classic 1)", positive=True
    )
    env_steps_per_update: float = _opt(1.0, "online: env steps collected per update")
    demo_episodes: int | None = _opt(
        None, "episodes to record when no demos exist (Atari 20, classic 10)", positive=True
    )
    threads: int | None = _opt(
        None,
        "torch CPU threads (Atari: torch's default, 0; classic 1: small MLPs run fastest on "
        "one thread, and far faster than two on a busy CPU)",
    )
    runs_root: str = _opt("runs", "parent of the default run directories")
    tensorboard: bool = _opt(True, "write TensorBoard events")
    progress: bool = _opt(True, "show progress bars")
    reward_check_episodes: int = _opt(
        3, "IQ: episodes per policy of the recovered-vs-true reward check after training (0: off)"
    )
    video_every: int = _opt(
        0, "record a greedy episode to videos/update-N.mp4 every N evaluations (0: off)"
    )
    video_max_steps: int = _opt(2_000, "agent steps at most in a training video", positive=True)


# Family presets: fields left None in TrainConfig take these. Beside each, the official code's
# value (conf/agent/softq.yaml, conf/env/{pong,cartpole}.yaml, scripts/run_{atari,offline}.sh):
#   atari:   batch 64 (64), lr 1e-4 (1e-4), alpha 1e-3 (init_temp 1e-3), eval every 5000 (5e3),
#            replay 100k frames (replay_mem 1e5, half of it online), learning_starts 5000
#            (initial_mem 5000), 20 demos (20), 1 env step per update (1)
#   classic: batch 64 (32), lr 3e-4 (1e-4), alpha 1e-2 (0.01; 1e-3 in run_offline.sh), 64-64 ELU
#            MLP (OfflineQNetwork), eval every 1000 (1e3), replay 50k (5e4), learning_starts 1000
#            (initial_mem 1280). lr 3e-4 / batch 64: CartPole from 1 demo reaches 500 in ~1-2k
#            updates instead of ~4k at 1e-4 / 32, on 10 of 10 seeds.
PRESETS: dict[str, dict[str, Any]] = {
    "atari": dict(
        steps=50_000,
        batch_size=64,
        lr=1e-4,
        alpha=1e-3,
        eval_interval=5_000,
        replay_size=100_000,
        learning_starts=5_000,
        n_envs=4,
        demo_episodes=20,
        threads=0,
    ),
    "classic": dict(
        steps=10_000,
        batch_size=64,
        lr=3e-4,
        alpha=1e-2,
        eval_interval=1_000,
        replay_size=50_000,
        learning_starts=1_000,
        n_envs=1,
        demo_episodes=10,
        threads=1,
    ),
}
MODE_DEFAULTS = {
    "offline": dict(value_term="value_expert", regularize_over="expert"),
    "online": dict(value_term="v0", regularize_over="policy"),
}


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill None fields from the family preset and the mode; check the combination."""
    spec = resolve_game(config.game)
    fill = {**PRESETS["atari" if spec.is_atari else "classic"], **MODE_DEFAULTS[config.mode]}
    values = {k: v for k, v in fill.items() if getattr(config, k) is None}
    config = dataclasses.replace(config, game=spec.name, **values)
    if config.algo == "bc" and config.mode == "online":
        raise InputError("--algo bc trains offline only; use --mode offline")
    if config.grad_penalty > 0 and config.mode == "offline":
        raise InputError("--grad-penalty needs agent samples; use --mode online")
    if config.resume and config.run_dir is None:
        raise InputError("--resume needs --run-dir (the run to continue)")
    for name in ("lr", "alpha", "tau", "env_steps_per_update", "gamma"):
        if not getattr(config, name) > 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {getattr(config, name)}")
    if config.gamma > 1 or config.tau > 1:
        raise InputError("--gamma and --tau must be at most 1")
    loss_config(config)  # raises on a bad option value
    return config


def loss_config(config: TrainConfig) -> IQLossConfig:
    """The IQ loss options of a resolved config."""
    return IQLossConfig(
        config.gamma,
        config.value_term,
        config.divergence,
        config.chi2_alpha,
        config.regularize_over,
    )


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise InputError(f"--hidden: expected comma-separated positive widths, got {text!r}")
    return widths


def make_learner(
    config: TrainConfig,
    obs_space: gym.Space,
    n_actions: int,
    device: torch.device,
    initial_obs: np.ndarray | None = None,
    expert: FrameBuffer | None = None,
) -> Learner:
    """The learner `config.algo` names, with fresh networks on `device`. BC holds a validation
    split out of the `expert` buffer (so the loop never samples it)."""
    if config.algo == "bc":
        try:
            from iq_atari import bc
        except ModuleNotFoundError as err:
            raise InputError("--algo bc is not available yet (iq_atari/bc.py is missing)") from err
        return bc.make_learner(config, obs_space, n_actions, device, expert)
    q_net = make_q_network(
        obs_space, n_actions, parse_hidden(config.hidden), config.activation, bf16=config.bf16
    )
    agent = SoftQAgent(
        q_net,
        n_actions,
        alpha=config.alpha,
        learn_alpha=config.learn_alpha,
        use_target=config.next_v == "target",
    ).to(device)
    learner_config = IQLearnerConfig(
        loss_config(config),
        config.lr,
        config.next_v,
        config.tau,
        config.target_interval,
        config.grad_penalty,
    )
    v0_obs = initial_obs if config.value_term == "v0" else None
    return IQLearner(agent, learner_config, v0_obs, seed=config.seed)


def load_learner(checkpoint: str | Path, device: str = "cpu") -> tuple[Learner, TrainConfig]:
    """A trained learner (e.g. for videos) and its config, from a checkpoint or a run directory."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = _read_checkpoint(path)
    config = config_from_dict(state["config"])
    space = _obs_space(state["obs_shape"], state["obs_dtype"])
    learner = make_learner(config, space, state["n_actions"], resolve_device(device))
    learner.load_state_dict(state["learner"])
    return learner, config


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a saved dict; keys this version does not know are ignored."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def _obs_space(shape: list[int], dtype: str) -> gym.Space:
    if dtype == "uint8":
        return gym.spaces.Box(0, 255, tuple(shape), np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, tuple(shape), np.float32)


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an iq_atari checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def find_or_record_demos(config: TrainConfig, say=print) -> Path:
    """The demo file to train from: --demos, else expert_demos/, else record it now (and say so)."""
    if config.demos is not None:
        return Path(config.demos)
    from iq_atari.demos import find_demos

    found = find_demos(config.game)
    if found is not None:
        return found
    from iq_atari.rollout import record_demos

    say(
        f"no demos for {config.game} in expert_demos/: recording {config.demo_episodes} episodes "
        f"with its default expert first"
    )
    path = record_demos(
        config.game, None, episodes=config.demo_episodes, seed=config.seed, progress=config.progress
    )
    say(f"recorded {path}")
    return path


class Collector:
    """Steps `n_envs` envs with the agent's sampling policy and streams transitions to a buffer.

    Atari with n_envs >= 2 overlaps the policy forward with emulation (`OverlappedAtariVecEnv`):
    each half's next actions are chosen as soon as its step arrives, and the steps stay in flight
    while the learner updates. Actions are chosen by the current learner either way (in the
    overlapped loop, before the updates that run between two `step` calls). Classic games and a
    single env use a plain vector env.
    """

    def __init__(
        self,
        config: TrainConfig,
        settings: AtariSettings | None,
        obs_space: gym.Space,
        replay: dict[str, np.ndarray] | None = None,
    ):
        """`replay`: a saved `FrameBuffer.state_dict()` to continue from (a resumed run); the
        envs still start new episodes, so the transitions saved stay whole and none crosses."""
        if settings is not None and settings.terminal_on_life_loss:
            raise InputError("online mode cannot use terminal_on_life_loss demos (vector envs)")
        self.overlapped = resolve_game(config.game).is_atari and config.n_envs >= 2
        if self.overlapped:
            self.envs = OverlappedAtariVecEnv(
                config.game, config.n_envs, seed=config.seed, settings=settings
            )
        else:
            self.envs = make_vec_env(
                config.game, config.n_envs, seed=config.seed, settings=settings
            )
        self.buffer = FrameBuffer(
            config.replay_size, obs_space.shape, obs_space.dtype, n_envs=config.n_envs
        )
        self.restored = False  # whether `replay` was restored
        if replay is not None:
            try:
                self.buffer.load_state_dict(replay, f"checkpoints/{REPLAY_FILE}")
                self.restored = True
            except InputError as err:  # checked before any array is copied
                print(f"{err}; collecting the replay afresh", file=sys.stderr)
        self.obs, _ = self.envs.reset()
        self.buffer.start(self.obs)
        self.autoreset = np.zeros(config.n_envs, dtype=bool)
        self.steps = 0  # transitions collected by this collector
        self.episode_returns: list[float] = []

    def step(self, learner: Learner) -> None:
        """One step of every env, recorded in the buffer (autoreset rows hold no transition)."""
        if self.overlapped:

            def policy(obs: np.ndarray) -> np.ndarray:
                return learner.act(obs, greedy=False)

            actions, obs, rewards, terminated, truncated, infos = self.envs.step(policy)
        else:
            actions = learner.act(self.obs, greedy=False)
            obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.buffer.add(actions, rewards, terminated, truncated, obs, self.autoreset)
        self.steps += int((~self.autoreset).sum())
        self.autoreset = terminated | truncated
        self.obs = obs
        if "episode" in infos:
            self.episode_returns += [float(r) for r in infos["episode"]["r"][infos["_episode"]]]

    def close(self) -> None:
        self.envs.close()


@dataclass
class LoopState:
    """Counters saved in checkpoints."""

    updates: int = 0
    env_steps: int = 0
    best_return: float = -math.inf
    best_update: int = 0
    wall_time_s: float = 0.0
    last_eval: dict | None = None


def train(config: TrainConfig) -> dict:
    """Train, evaluate and checkpoint as `config` says; returns the eval.json record."""
    saved = None
    if config.resume:
        if config.run_dir is None:
            raise InputError("--resume needs --run-dir (the run to continue)")
        saved = _read_checkpoint(Path(config.run_dir) / "checkpoints" / "last.pt")
        previous = dataclasses.asdict(config_from_dict(saved["config"]))
        # A resumed run keeps its settings; only --steps (to extend it), the device and the
        # progress bar may change.
        changeable = ("steps", "device", "progress", "run_dir", "resume")
        keep = {k: v for k, v in previous.items() if k not in changeable}
        config = dataclasses.replace(config, **keep, steps=config.steps or previous["steps"])
    config = resolve_config(config)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        run = TrainingRun(config, saved)
        try:
            run.loop()
        except KeyboardInterrupt:
            run.save("last.pt")
            print(
                f"interrupted after {run.state.updates} updates; saved checkpoints/last.pt. "
                f"Resume with: python -m runners.train --resume --run-dir {run.run_dir}",
                file=sys.stderr,
            )
            raise
        finally:
            run.close()
        return run.finish()
    finally:
        torch.set_num_threads(threads)


class TrainingRun:
    """One run's learner, buffers, envs, logger and counters; `loop` trains until `steps`."""

    def __init__(self, config: TrainConfig, saved: dict | None = None):
        from iq_atari.demos import check_env_match, load_demos

        spec = resolve_game(config.game)
        self.rng = seed_everything(config.seed)
        demos = load_demos(find_or_record_demos(config), game=config.game)
        config = dataclasses.replace(config, demos=str(demos.path))  # a resume reads the same
        self.settings = None
        if spec.is_atari:  # train and evaluate with the settings the demos were recorded with
            try:
                self.settings = AtariSettings(**demos.meta["env_kwargs"])
            except TypeError as err:
                raise InputError(f"{demos.path}: meta.env_kwargs: {err}") from err
        if config.num_demos is not None and config.num_demos > len(demos):
            raise InputError(
                f"--num-demos {config.num_demos}: {demos.path} has {len(demos)} episodes"
            )
        env = make_env(config.game, settings=self.settings)
        obs_space, n_actions = env.observation_space, int(env.action_space.n)
        check_env_match(demos, env)
        env.close()
        trajectories = demos.trajectories[: config.num_demos]
        self.num_demos = len(trajectories)
        self.expert_return = float(np.mean([t.ret for t in trajectories]))
        self.expert = expert_buffer(
            trajectories, demos.frame_stack, config.subsample, np.random.default_rng(config.seed)
        )
        device = resolve_device(config.device)
        self.learner = make_learner(
            config, obs_space, n_actions, device, self.expert.initial_obs(), self.expert
        )

        self.run_dir = Path(config.run_dir) if config.run_dir else _default_run_dir(config)
        self.config = config = dataclasses.replace(config, run_dir=str(self.run_dir), resume=False)
        self.state = LoopState()
        if saved is not None:
            self.learner.load_state_dict(saved["learner"])
            self.state = LoopState(**saved["loop"])
            self.rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(dataclasses.asdict(config), indent=2)
        atomic_write_text(self.run_dir / "config.json", text)
        self.checkpoint_info = {
            "obs_shape": list(obs_space.shape),
            "obs_dtype": str(obs_space.dtype),
            "n_actions": n_actions,
            "demos": str(demos.path),
            # The env settings the run trained and evaluated with (None for classic games), so
            # a checkpoint alone can replay its agent in the same game (runners/record.py).
            "env_kwargs": self.settings.to_dict() if self.settings is not None else None,
        }
        resume_step = self.state.updates if saved is not None else None
        self.logger = Logger(self.run_dir, config.tensorboard, resume_step=resume_step)
        self.collector = None
        self.warmup = config.learning_starts  # env steps collected before the first update here
        if config.mode == "online":
            replay = self._saved_replay(saved["loop"]["updates"]) if saved is not None else None
            self.collector = Collector(config, self.settings, obs_space, replay)
            if self.collector.restored:
                self.warmup = 0
        self.bar = tqdm(
            total=config.steps,
            initial=self.state.updates,
            unit="upd",
            desc=f"{config.algo} {config.game}",
            disable=not config.progress,
            dynamic_ncols=True,
        )
        self._started = time.time() - self.state.wall_time_s
        self._stop_requested = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: stop after the current update (the loop raises KeyboardInterrupt then);
        a second one interrupts at once."""
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def loop(self) -> None:
        """Train until `config.steps` updates; Ctrl-C stops cleanly after the current update."""
        if threading.current_thread() is not threading.main_thread():
            return self._loop()
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            self._loop()
        finally:
            signal.signal(signal.SIGINT, previous)

    def _loop(self) -> None:
        """Update, log, evaluate and checkpoint until `config.steps` updates are done."""
        config, state = self.config, self.state
        tick = (time.time(), state.updates, state.env_steps)
        first_update, env_steps_before = state.updates, state.env_steps
        while state.updates < config.steps:
            agent_batch = None
            if self.collector is not None:
                # A fresh replay buffer first gets `learning_starts` steps (a resumed run too,
                # unless its saved replay was restored).
                updates_here = state.updates + 1 - first_update
                due = self.warmup + updates_here * config.env_steps_per_update
                while self.collector.steps < due:
                    self.collector.step(self.learner)
                state.env_steps = env_steps_before + self.collector.steps
                agent_batch = self.collector.buffer.sample(config.batch_size, self.rng)
            expert_batch = self.expert.sample(config.batch_size, self.rng)
            metrics = self.learner.update(expert_batch, agent_batch)
            state.updates += 1
            self.bar.update(1)
            log_due = state.updates % config.log_interval == 0
            eval_due = state.updates % config.eval_interval == 0 or state.updates == config.steps
            if log_due or eval_due or self._stop_requested:
                # Checked here (not every update, which would sync a GPU each step), so no
                # metric row or checkpoint ever holds a diverged learner.
                self._check_finite(metrics)
            if self._stop_requested:
                raise KeyboardInterrupt
            if log_due:
                self._log_train(metrics, tick)
                tick = (time.time(), state.updates, state.env_steps)
            if eval_due:
                result = self.evaluate()
                self.save("last.pt")
                self.bar.set_postfix(
                    eval=f"{result['mean_return']:.1f}", best=f"{state.best_return:.1f}"
                )
                tick = (time.time(), state.updates, state.env_steps)  # perf/ excludes evaluation

    def _check_finite(self, metrics: dict[str, Any]) -> None:
        """Raise NumericalError, naming the metric, if the loss or a Q/V value is NaN or inf."""
        for key, value in metrics.items():
            if not math.isfinite(float(value)):
                last = self.run_dir / "checkpoints" / "last.pt"
                kept = f"{last} keeps the last good state" if last.is_file() else "no checkpoint"
                raise NumericalError(
                    f"train/{key} is {float(value)} at update {self.state.updates}: training "
                    f"diverged and stopped ({kept}); try a lower --lr or a larger --alpha"
                )

    def _log_train(self, metrics: dict[str, Any], tick: tuple[float, int, int]) -> None:
        elapsed = time.time() - tick[0]
        scalars = {f"train/{k}": v for k, v in metrics.items()}
        scalars["perf/updates_per_s"] = (self.state.updates - tick[1]) / elapsed
        if self.collector is not None:
            scalars["perf/env_steps_per_s"] = (self.state.env_steps - tick[2]) / elapsed
            scalars["train/env_steps"] = self.state.env_steps
            if self.collector.episode_returns:
                scalars["train/episode_return"] = np.mean(self.collector.episode_returns)
                self.collector.episode_returns.clear()
        self.logger.log(self.state.updates, scalars)

    def evaluate(self) -> dict:
        """Greedy evaluation on fixed seeds; logs it and keeps the best checkpoint."""
        config, state = self.config, self.state
        start = time.time()
        returns = evaluate(
            lambda obs: self.learner.act(obs, greedy=True),
            config.game,
            config.eval_episodes,
            seed=10_000 + config.seed,
            settings=self.settings,
        )
        result = {
            "updates": state.updates,
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "returns": returns.tolist(),
        }
        self.logger.log(
            state.updates,
            {
                "eval/mean_return": result["mean_return"],
                "eval/std_return": result["std_return"],
                "perf/eval_time_s": time.time() - start,
            },
        )
        state.last_eval = result
        evaluations = state.updates // config.eval_interval
        if config.video_every > 0 and evaluations % config.video_every == 0:
            self.record_video()
        if result["mean_return"] > state.best_return:
            state.best_return, state.best_update = result["mean_return"], state.updates
            self.save("best.pt")
        return result

    def record_video(self) -> None:
        """An mp4 of one greedy episode in videos/; its last frame goes to TensorBoard."""
        from iq_atari.video import record_policy_video

        updates = self.state.updates
        recording = record_policy_video(
            lambda obs: self.learner.act(obs, greedy=True),
            self.config.game,
            self.run_dir / "videos" / f"update-{updates:07d}.mp4",
            seed=10_000 + self.config.seed,
            settings=self.settings,
            max_steps=self.config.video_max_steps,
        )
        self.logger.log_image("eval/video_last_frame", recording.last_frame, updates)

    def _saved_replay(self, updates: int) -> dict[str, np.ndarray] | None:
        """The replay saved with last.pt at `updates`, if it is there, readable and of the same
        update; otherwise None (and the run says why and collects afresh)."""
        path = self.run_dir / "checkpoints" / REPLAY_FILE
        if not path.is_file():
            return None
        why = None
        try:
            with np.load(path, allow_pickle=False) as npz:
                replay = {k: npz[k] for k in npz.files}
            saved_at = int(replay.pop("updates", -1))
            if saved_at != updates:
                why = f"it is from update {saved_at}, last.pt from update {updates}"
        except Exception as err:  # a damaged or foreign file must not stop the resume
            why = f"{type(err).__name__}: {err}"
        if why is not None:
            print(f"{path}: not restored ({why}); collecting the replay afresh", file=sys.stderr)
            return None
        return replay

    def save(self, name: str) -> None:
        """Write checkpoints/<name> atomically: learner, counters, config, RNG states; with
        last.pt an online run also writes its replay buffer (checkpoints/replay.npz) first."""
        if name == "last.pt" and self.collector is not None:
            with atomic_path(self.run_dir / "checkpoints" / REPLAY_FILE, suffix=".npz") as tmp:
                buffer = self.collector.buffer.state_dict()
                np.savez(tmp, updates=np.int64(self.state.updates), **buffer)
        self.state.wall_time_s = time.time() - self._started
        blob = {
            "format": CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(self.config),
            "learner": self.learner.state_dict(),
            "loop": dataclasses.asdict(self.state),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            **self.checkpoint_info,
        }
        with atomic_path(self.run_dir / "checkpoints" / name) as tmp:
            torch.save(blob, tmp)

    def close(self) -> None:
        self.bar.close()
        self.logger.close()
        if self.collector is not None:
            self.collector.close()

    def finish(self) -> dict:
        """Final evaluation (if the last one is stale), last checkpoint, curve.png, eval.json."""
        config, state = self.config, self.state
        if state.last_eval is None or state.last_eval["updates"] != state.updates:
            with Logger(self.run_dir, config.tensorboard) as self.logger:
                self.evaluate()
        self.save("last.pt")
        plot_curve(
            self.run_dir, f"{config.algo} {config.mode} on {config.game}", self.expert_return
        )
        last = state.last_eval
        record = {
            "game": config.game,
            "algo": config.algo,
            "mode": config.mode,
            "mean_return": last["mean_return"],
            "std_return": last["std_return"],
            "returns": last["returns"],
            "episodes": len(last["returns"]),
            "updates": state.updates,
            "env_steps": state.env_steps,
            "wall_time_s": round(state.wall_time_s, 2),
            "best_mean_return": state.best_return,
            "best_update": state.best_update,
            "expert_mean_return": self.expert_return,
            "num_demos": self.num_demos,
            "run_dir": str(self.run_dir),
        }
        if config.algo == "iq" and config.reward_check_episodes > 0:
            record["reward_correlation"] = reward_check(
                self.learner.agent,
                config.game,
                config.gamma,
                config.reward_check_episodes,
                seed=20_000 + config.seed,
                out_png=self.run_dir / "reward_correlation.png",
                settings=self.settings,
            )
        atomic_write_text(self.run_dir / "eval.json", json.dumps(record, indent=2))
        return record


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.runs_root) / config.game / f"{config.algo}-{config.seed}-{stamp}"
