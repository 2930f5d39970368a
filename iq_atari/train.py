"""The training loop: IQ-Learn (or BC) from demos, offline or online, with evaluation, checkpoints
(`checkpoints/{last,best}.pt`, written atomically), resume, CSV/TensorBoard metrics and a tqdm bar.

The loop is generic over a `Learner` (`update`, `act`, `state_dict`, `load_state_dict`); IQ-Learn
is `iq.IQLearner`, behavioural cloning comes from `iq_atari.bc.make_learner`.
Online mode follows the paper's recipe (section 5.1): every update mixes an expert batch with an
equal batch of the agent's own transitions, collected with the softmax policy in a vector env.
The configuration and its presets live in `iq_atari.config`, the online collector in
`iq_atari.collector`; both are importable from here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from iq_atari.agent import SoftQAgent
from iq_atari.augment import shift_batch
from iq_atari.buffers import Batch, FrameBuffer, expert_buffer
from iq_atari.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, restore, save_checkpoint
from iq_atari.collector import REPLAY_FILE, Collector
from iq_atari.config import TrainConfig, config_from_dict, loss_config, parse_hidden, resolve_config
from iq_atari.envs import AtariSettings, make_env, resolve_game
from iq_atari.errors import InputError, NumericalError
from iq_atari.evaluation import evaluate, reward_check
from iq_atari.iq import IQLearner, IQLearnerConfig
from iq_atari.logger import Logger, plot_curve
from iq_atari.networks import make_q_network
from iq_atari.utils import (
    atomic_path,
    atomic_write_text,
    resolve_device,
    run_dir_lock,
    seed_everything,
)

# What a resumed run may change; every other flag given with --resume must match the run.
RESUME_CHANGEABLE = ("steps", "device", "threads", "progress", "run_dir", "resume")


class Learner(Protocol):
    """What the loop trains. Metric values are anything `float()` accepts."""

    def update(self, expert_batch: Batch, agent_batch: Batch | None) -> dict[str, Any]: ...
    def act(self, obs: np.ndarray, greedy: bool) -> np.ndarray: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


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
        absorbing=config.absorbing,
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


def demo_episodes(available: int, num: int | None, draw: int | None) -> list[int]:
    """Which episodes of a demo file a run trains on, in file order: the first `num` (all when
    None), or with `draw` a seed, `num` drawn at random without replacement."""
    num = available if num is None else min(num, available)
    if draw is None:
        return list(range(num))
    chosen = np.random.default_rng(draw).choice(available, size=num, replace=False)
    return sorted(int(i) for i in chosen)


def load_learner(checkpoint: str | Path, device: str = "cpu") -> tuple[Learner, TrainConfig]:
    """A trained learner (e.g. for videos) and its config, from a checkpoint or a run directory."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = read_checkpoint(path)
    config = _saved_config(state, path)
    space = _obs_space(state["obs_shape"], state["obs_dtype"])
    learner = make_learner(config, space, state["n_actions"], resolve_device(device))
    restore(path, f"its {config.algo} learner", lambda: learner.load_state_dict(state["learner"]))
    return learner, config


def _saved_config(state: dict, path: Path) -> TrainConfig:
    """The resolved TrainConfig a checkpoint was trained with, checked as a new one would be."""
    try:
        config = config_from_dict(state["config"])
        parse_hidden(config.hidden)
        return resolve_config(config)
    except (InputError, TypeError, ValueError) as err:
        raise InputError(f"{path}: config: {err}") from err


def _obs_space(shape: list[int], dtype: str) -> gym.Space:
    if dtype == "uint8":
        return gym.spaces.Box(0, 255, tuple(shape), np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, tuple(shape), np.float32)


def find_or_record_demos(config: TrainConfig, say=print) -> Path:
    """The demo file to train from: --demos, else expert_demos/, else record it now (and say so)."""
    if config.demos is not None:
        return Path(config.demos)
    from iq_atari.demo_library import find_demos

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


@dataclass
class LoopState:
    """Counters saved in checkpoints."""

    updates: int = 0
    env_steps: int = 0
    best_return: float = -math.inf
    best_update: int = 0
    wall_time_s: float = 0.0
    last_eval: dict | None = None


def train(config: TrainConfig, given: Collection[str] = ()) -> dict:
    """Train, evaluate and checkpoint as `config` says; returns the eval.json record.

    With `config.resume` the run continues with its saved settings; `given` names the fields
    the user set (the command line's flags), and any of them that differs from the run's own
    value, other than those in RESUME_CHANGEABLE, is an InputError rather than ignored.
    One process at a time trains in a run directory (a lock there; a second one is refused).
    """
    last = None
    if config.resume:
        if config.run_dir is None:
            raise InputError("--resume needs --run-dir (the run to continue)")
        last = Path(config.run_dir) / "checkpoints" / "last.pt"
        if not last.is_file():
            raise InputError(f"--resume: {last}: no such checkpoint (nothing to resume)")
        config = resumed_config(config, read_checkpoint(last), last, given)
    config = resolve_config(config)
    run_dir = Path(config.run_dir) if config.run_dir else _default_run_dir(config)
    config = dataclasses.replace(config, run_dir=str(run_dir))
    with run_dir_lock(run_dir):
        # Read again under the lock: the run may have moved on since the check above.
        saved = read_checkpoint(last) if last is not None else None
        return _train_locked(config, saved)


def resumed_config(
    config: TrainConfig, saved: dict, path: Path, given: Collection[str] = ()
) -> TrainConfig:
    """The saved run's config with only the RESUME_CHANGEABLE fields of `config` taken over;
    a `given` field that conflicts with the run raises one InputError listing them all."""
    previous = _saved_config(saved, path)
    conflicts = []
    for name in sorted(set(given) - set(RESUME_CHANGEABLE)):
        if not _same_setting(name, getattr(config, name), getattr(previous, name)):
            flag = "--" + name.replace("_", "-")
            conflicts.append(
                f"{flag} {getattr(config, name)} (the run has {getattr(previous, name)})"
            )
    if conflicts:
        raise InputError(
            f"--resume: {'; '.join(conflicts)}: the run in {config.run_dir} keeps its settings "
            f"(only --steps, --device, --threads and --progress may change); drop the flag, or "
            f"train a new run in another --run-dir"
        )
    keep = {k: v for k, v in dataclasses.asdict(previous).items() if k not in RESUME_CHANGEABLE}
    threads = config.threads if "threads" in given else previous.threads
    return dataclasses.replace(
        config, **keep, threads=threads, steps=config.steps or previous.steps
    )


def _same_setting(name: str, mine: Any, theirs: Any) -> bool:
    """Whether a flag's value and a saved run's value mean the same setting."""
    if mine is None or theirs is None:
        return mine is theirs
    if name == "game":
        return resolve_game(str(mine)).env_id == resolve_game(str(theirs)).env_id
    if name == "demos":
        return Path(mine).resolve() == Path(theirs).resolve()
    if name == "hidden":
        return parse_hidden(str(mine)) == parse_hidden(str(theirs))
    return mine == theirs


def _train_locked(config: TrainConfig, saved: dict | None) -> dict:
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
        last = Path(config.run_dir or "") / "checkpoints" / "last.pt"
        if saved is not None and (
            tuple(saved["obs_shape"]) != obs_space.shape or saved["n_actions"] != n_actions
        ):
            raise InputError(
                f"{last}: trained on observations {tuple(saved['obs_shape'])} with "
                f"{saved['n_actions']} actions; {config.game} with {demos.path} gives "
                f"{obs_space.shape} and {n_actions}"
            )
        self.demo_episodes = demo_episodes(len(demos), config.num_demos, config.demo_draw)
        trajectories = [demos.trajectories[i] for i in self.demo_episodes]
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
            learner = f"its {config.algo} learner"
            restore(last, learner, lambda: self.learner.load_state_dict(saved["learner"]))
            self.state = restore(last, "its loop counters", lambda: LoopState(**saved["loop"]))
            restore(last, "its RNG state", lambda: self._set_rng(saved["rng"], saved["torch_rng"]))
        self.collector = None
        self.warmup = config.learning_starts  # env steps collected before the first update here
        if config.mode == "online":  # before anything is written: a bad replay file stops here
            replay = self._saved_replay(self.state.updates) if saved is not None else None
            self.collector = Collector(config, self.settings, obs_space, replay)
            if self.collector.restored:
                self.warmup = 0
        self.checkpoint_info = {
            "obs_shape": list(obs_space.shape),
            "obs_dtype": str(obs_space.dtype),
            "n_actions": n_actions,
            "demos": str(demos.path),
            # The env settings the run trained and evaluated with (None for classic games), so
            # a checkpoint alone can replay its agent in the same game (runners/record.py).
            "env_kwargs": self.settings.to_dict() if self.settings is not None else None,
        }
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(dataclasses.asdict(config), indent=2)
            atomic_write_text(self.run_dir / "config.json", text)
            resume_step = self.state.updates if saved is not None else None
            self.logger = Logger(self.run_dir, config.tensorboard, resume_step=resume_step)
        except BaseException:
            if self.collector is not None:
                self.collector.close()
            raise
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

    def _set_rng(self, rng: dict, torch_rng: torch.Tensor) -> None:
        self.rng.bit_generator.state = rng
        torch.set_rng_state(torch_rng)

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
            if config.augment_shift:
                expert_batch = shift_batch(expert_batch, config.augment_shift, self.rng)
                if agent_batch is not None:
                    agent_batch = shift_batch(agent_batch, config.augment_shift, self.rng)
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
            progress=config.progress,
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
        """The replay saved with last.pt at `updates`, if it is there; None if there is none
        or it is from another update (a run killed between writing it and last.pt), saying so.
        A file that is not a whole replay buffer is an InputError: it was not written by a run."""
        path = self.run_dir / "checkpoints" / REPLAY_FILE
        if not path.is_file():
            return None
        fix = "delete it to resume with a fresh replay buffer"
        try:
            with np.load(path, allow_pickle=False) as npz:
                replay = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise InputError(
                f"{path}: not a readable replay buffer ({type(err).__name__}: "
                f"{' '.join(str(err).split())}); {fix}"
            ) from err
        saved_at = replay.pop("updates", None)
        if saved_at is None or np.shape(saved_at) != () or saved_at.dtype.kind not in "iu":
            raise InputError(f"{path}: updates: missing or not an integer; {fix}")
        if int(saved_at) != updates:
            why = f"it is from update {int(saved_at)}, last.pt from update {updates}"
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
        save_checkpoint(blob, self.run_dir / "checkpoints" / name)

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
            "demo_episodes": self.demo_episodes,
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
                progress=config.progress,
                max_steps=config.reward_check_max_steps,
            )
        atomic_write_text(self.run_dir / "eval.json", json.dumps(record, indent=2))
        return record


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.runs_root) / config.game / f"{config.algo}-{config.seed}-{stamp}"
