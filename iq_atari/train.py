"""The training loop: IQ-Learn (or BC) from demos, offline or online, with evaluation, checkpoints
(`checkpoints/{last,best}.pt`), resume, CSV/TensorBoard metrics and a tqdm bar.

The loop is generic over a `learners.Learner`; IQ-Learn and BC share it. Online mode follows the
paper's recipe (section 5.1): every update mixes an expert batch with an equal batch of the
agent's own transitions, collected with the softmax policy in a vector env (`collector`).
The demos come from `expert_data`, the learner from `learners`, the resume rules from `run_dir`,
what a checkpoint holds (the loop counters `LoopState` among it) from `checkpoint`. From
`average_from` on, what is evaluated, kept and shipped is the mean of the weights snapshotted at
each evaluation (`averaging`); the updates go on from the last weights.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from iq_atari.augment import shift_batch
from iq_atari.averaging import WeightAverage
from iq_atari.checkpoint import (
    LoopState,
    built_for,
    check_built_for,
    read_checkpoint,
    restore,
    resume_loop,
    run_state,
    save_checkpoint,
)
from iq_atari.collector import REPLAY_FILE, Collector, load_replay, save_replay
from iq_atari.config import TrainConfig
from iq_atari.errors import check_finite
from iq_atari.evaluation import action_agreement, evaluate, reward_check
from iq_atari.expert_data import load_expert_data, load_held_out
from iq_atari.interrupt import StopRequest, catch_sigint
from iq_atari.learners import AVERAGE, Learner, make_learner
from iq_atari.logger import Logger, plot_curve
from iq_atari.run_dir import prepare_run, write_config
from iq_atari.utils import (
    atomic_write_text,
    resolve_device,
    run_dir_lock,
    seed_everything,
    torch_threads,
)


def train(config: TrainConfig, given: Collection[str] = ()) -> dict:
    """Train, evaluate and checkpoint as `config` says; returns the eval.json record.

    With `config.resume` the run continues with its saved settings; `given` names the fields
    the user set (the command line's flags), and any of them that differs from the run's own
    value, other than those in RESUME_CHANGEABLE, is an InputError rather than ignored.
    One process at a time trains in a run directory (a lock there; a second one is refused).
    """
    config, last = prepare_run(config, given)
    with run_dir_lock(config.run_dir), torch_threads(config.threads):
        # Read again under the lock: the run may have moved on since the check above.
        saved = read_checkpoint(last) if last is not None else None
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


def lr_scale(updates: int, config: TrainConfig) -> float:
    """The learning rate's factor for the update after `updates`: 1 until `lr_decay_from`, then
    falling linearly, so the last of `steps` updates takes 1 / (steps - lr_decay_from)."""
    if not config.lr_decay_from or updates < config.lr_decay_from:
        return 1.0
    return max(0.0, (config.steps - updates) / (config.steps - config.lr_decay_from))


class TrainingRun:
    """One run's learner, buffers, envs, logger and counters; `loop` trains until `steps`."""

    def __init__(self, config: TrainConfig, saved: dict | None = None):
        self.rng = seed_everything(config.seed)
        self.data = data = load_expert_data(config)
        self.settings, self.expert = data.settings, data.buffer
        self.run_dir = Path(config.run_dir)
        # The demos as found: a resume reads the same.
        self.config = config = dataclasses.replace(config, demos=data.path, resume=False)
        obs_space, n_actions = data.obs_space, data.n_actions
        self.held_out = load_held_out(config.val_demos, config.game, self.settings)
        last = self.run_dir / "checkpoints" / "last.pt"
        if saved is not None:
            check_built_for(saved, last, obs_space, n_actions, f"{config.game} with {data.path}")
        self.device = device = resolve_device(config.device)
        self.learner = make_learner(
            config, obs_space, n_actions, device, self.expert.initial_obs(), self.expert
        )
        self.state = LoopState()
        self.average = WeightAverage()
        self._averaged: Learner | None = None  # acts with the average; built when first needed
        if saved is not None:
            learner = f"its {config.algo} learner"
            restore(last, learner, lambda: self.learner.load_state_dict(saved["learner"]))
            if AVERAGE in saved:
                average = lambda: self.average.load_state_dict(saved[AVERAGE])  # noqa: E731
                restore(last, "its weight average", average)
            self.state = resume_loop(saved, last, self.rng)
        self.collector = None
        self.warmup = config.learning_starts  # env steps collected before the first update here
        if config.mode == "online":  # before anything is written: a bad replay file stops here
            replay_path = self.run_dir / "checkpoints" / REPLAY_FILE
            replay = load_replay(replay_path, self.state.updates) if saved is not None else None
            self.collector = Collector(config, self.settings, obs_space, replay)
            if self.collector.restored:
                self.warmup = 0
        self.checkpoint_info = built_for(obs_space, n_actions, data.path, self.settings)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, config)
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
        self.stop = StopRequest()

    def loop(self) -> None:
        """Update, log, evaluate and checkpoint until `config.steps` updates are done; Ctrl-C
        stops cleanly after the current update."""
        with catch_sigint(self.stop):
            self._loop()

    def _loop(self) -> None:
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
            if config.augment_shift and state.updates >= config.augment_from:
                expert_batch = shift_batch(expert_batch, config.augment_shift, self.rng)
                if agent_batch is not None:
                    agent_batch = shift_batch(agent_batch, config.augment_shift, self.rng)
            if config.lr_decay_from and state.updates >= config.lr_decay_from:
                self.learner.set_lr_scale(lr_scale(state.updates, config))
            metrics = self.learner.update(expert_batch, agent_batch)
            state.updates += 1
            self.bar.update(1)
            log_due = state.updates % config.log_interval == 0
            eval_due = state.updates % config.eval_interval == 0 or state.updates == config.steps
            if log_due or eval_due or self.stop.requested:
                # Checked here (not every update, which would sync a GPU each step), so no
                # metric row or checkpoint ever holds a diverged learner.
                check_finite(metrics, state.updates, self.run_dir / "checkpoints" / "last.pt")
            if self.stop.requested:
                raise KeyboardInterrupt
            if log_due:
                self._log_train(metrics, tick)
                tick = (time.time(), state.updates, state.env_steps)
            if eval_due:
                if config.average_from and state.updates >= config.average_from:
                    self.average.add(self.learner.policy_state())
                result = self.evaluate()
                self.save("last.pt")
                self.bar.set_postfix(
                    eval=f"{result['mean_return']:.1f}", best=f"{state.best_return:.1f}"
                )
                tick = (time.time(), state.updates, state.env_steps)  # perf/ excludes evaluation

    def _log_train(self, metrics: dict[str, Any], tick: tuple[float, int, int]) -> None:
        elapsed = time.time() - tick[0]
        scalars = {f"train/{k}": v for k, v in metrics.items()}
        scalars["perf/updates_per_s"] = (self.state.updates - tick[1]) / elapsed
        if self.config.lr_decay_from:  # the rate the last update took
            scalars["train/lr"] = self.config.lr * lr_scale(self.state.updates - 1, self.config)
        if self.collector is not None:
            scalars["perf/env_steps_per_s"] = (self.state.env_steps - tick[2]) / elapsed
            scalars["train/env_steps"] = self.state.env_steps
            if self.collector.episode_returns:
                scalars["train/episode_return"] = np.mean(self.collector.episode_returns)
                self.collector.episode_returns.clear()
        self.logger.log(self.state.updates, scalars)

    def policy(self) -> Learner:
        """The learner that is evaluated, kept and shipped: one acting with the weight average
        once that holds a snapshot, else the learner being trained."""
        if not self.average.count:
            return self.learner
        if self._averaged is None:
            # Its initial weights are overwritten; the run's torch RNG stays where it was.
            with torch.random.fork_rng(devices=[]):
                data = self.data
                self._averaged = make_learner(
                    self.config, data.obs_space, data.n_actions, self.device
                )
        self._averaged.load_policy_state(self.average.weights)
        return self._averaged

    def evaluate(self) -> dict:
        """Greedy evaluation of `policy()` on fixed seeds; logs it and keeps the best
        checkpoint."""
        config, state = self.config, self.state
        start = time.time()
        policy = self.policy()
        act, seed = lambda obs: policy.act(obs, greedy=True), 10_000 + config.seed
        returns = evaluate(
            act, config.game, config.eval_episodes, seed, self.settings, progress=config.progress
        )
        result = {
            "updates": state.updates,
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "returns": returns.tolist(),
            "averaged_snapshots": self.average.count,
        }
        scalars = {
            "eval/mean_return": result["mean_return"],
            "eval/std_return": result["std_return"],
        }
        if self.held_out is not None:
            held_out = self.held_out
            agreement = action_agreement(
                act, held_out.trajectories, held_out.frame_stack, self.data.n_actions
            )
            result["val_agreement"] = scalars["eval/val_agreement"] = agreement["accuracy"]
        scalars["perf/eval_time_s"] = time.time() - start
        self.logger.log(state.updates, scalars)
        state.last_eval = result
        evaluations = state.updates // config.eval_interval
        if config.video_every > 0 and evaluations % config.video_every == 0:
            from iq_atari.video import record_policy_video  # av and cv2, only when asked for

            path = self.run_dir / "videos" / f"update-{state.updates:07d}.mp4"
            recording = record_policy_video(
                act,
                config.game,
                path,
                seed,
                settings=self.settings,
                max_steps=config.video_max_steps,
            )
            self.logger.log_image("eval/video_last_frame", recording.last_frame, state.updates)
        if result["mean_return"] > state.best_return:
            state.best_return, state.best_update = result["mean_return"], state.updates
            self.save("best.pt")
        return result

    def save(self, name: str) -> None:
        """Write checkpoints/<name> atomically: learner, counters, config, RNG states; with
        last.pt an online run also writes its replay buffer (checkpoints/replay.npz) first."""
        if name == "last.pt" and self.collector is not None:
            replay = self.run_dir / "checkpoints" / REPLAY_FILE
            save_replay(replay, self.collector.buffer, self.state.updates)
        self.state.wall_time_s = time.time() - self._started
        progress = run_state(self.config, self.learner.state_dict(), self.state, self.rng)
        progress[AVERAGE] = self.average.state_dict()
        save_checkpoint({**progress, **self.checkpoint_info}, self.run_dir / "checkpoints" / name)

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
            self.run_dir, f"{config.algo} {config.mode} on {config.game}", self.data.expert_return
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
            "averaged_snapshots": self.average.count,
            "expert_mean_return": self.data.expert_return,
            "num_demos": len(self.data.episodes),
            "demo_episodes": self.data.episodes,
            "run_dir": str(self.run_dir),
        }
        if "val_agreement" in last:
            record["val_agreement"] = last["val_agreement"]
        if config.algo == "iq" and config.reward_check_episodes > 0:
            record["reward_correlation"] = reward_check(
                self.policy().agent,
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
