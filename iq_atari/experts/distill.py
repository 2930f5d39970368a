"""DAgger distillation of any expert into a pixel policy, and that policy as an expert.

An expert that can be asked about any state it did not choose (a RAM agent, a scripted expert:
both read the emulator through the env) is distilled into a Nature-CNN policy on our own
observations (Ross et al. 2011, DAgger):

  round 0   the teacher plays `episodes` games; every step is labelled with its action;
  round k   the student (greedy) plays `episodes` games; the teacher labels every state the
            student visits; the labels join the aggregate; the student is retrained on it.

After each round the student trains `updates` cross-entropy steps on the aggregate. The games of
round k >= 1 are the student's own, on seeds it has never seen, so their mean is its score; the
distillation stops when that score reaches `target` of the teacher's (normalised against random
play where the game has a random score and games are not capped, else the plain ratio) and keeps
the best-scoring student. A distilled student's
actions are a function of what an imitator sees, which a RAM agent's are only approximately.

With a `checkpoint_dir`, the whole state is written there after every round (`distill.pt`: the
student and its optimiser, the rounds so far, the best student, the random state;
`aggregate.npz`: the labelled frames), so an interrupted distillation resumes after its last
whole round, and a finished one can be continued with more rounds or a higher target. A resumed
run plays and learns exactly what the uninterrupted run would have.

`PixelPolicyExpert` plays a saved student (`distilled-<env id>.pt`) as an `Expert`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from iq_atari.bc import BCConfig, BCLearner
from iq_atari.buffers import Batch, FrameBuffer
from iq_atari.checkpoint import read_checkpoint, save_checkpoint
from iq_atari.collector import read_replay, save_replay
from iq_atari.envs import AtariSettings, make_env, resolve_game
from iq_atari.episodes import Episode, run_episode
from iq_atari.errors import InputError
from iq_atari.experts.base import DISTILLED_ALGO, Expert
from iq_atari.networks import DEFAULT_ENCODER, Encoder, make_q_network
from iq_atari.scores import RANDOM_SCORES, normalised
from iq_atari.utils import atomic_path

STUDENT_FORMAT = "iq_atari-distilled/1"
PROGRESS_FILE = "distill.pt"  # in the checkpoint directory, with AGGREGATE_FILE
AGGREGATE_FILE = "aggregate.npz"
# What a resumed distillation may change: how far it goes, not what it learns from.
RESUMABLE_FIELDS = ("rounds", "target")
# Fields a saved distillation's config may lack (written before they existed), with the value
# that run had.
ADDED_FIELDS: dict[str, Any] = {"encoder": DEFAULT_ENCODER, "bf16": False}
PROGRESS_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "what saved it"),
    "game": (str, "the env id"),
    "teacher": (dict, "the teacher's provenance"),
    "config": (dict, "the distillation's settings"),
    "round": (int, "the last round played"),
    "trained": (bool, "whether the student learnt that round's labels"),
    "learner": (dict, "the student and its optimiser"),
    "rng": (dict, "the random state"),
    "rounds": (list, "the rounds so far"),
    "teacher_score": (float, "the teacher's mean"),
}


@dataclass(frozen=True)
class DistillConfig:
    """DAgger rounds, data per round and the student's optimisation."""

    rounds: int = 8  # DAgger rounds after the teacher's round 0
    episodes: int = 4  # games per round
    updates: int = 2_500  # student gradient steps after each round
    batch_size: int = 64
    lr: float = 2.5e-4
    target: float = 0.95  # stop once the student reaches this share of the teacher's score
    capacity: int = 400_000  # frames of the aggregate (oldest dropped beyond it; ~7 KB each)
    max_steps: int | None = None  # agent steps per game at most (None: the env's frame cap)
    seed: int = 0
    encoder: Encoder = DEFAULT_ENCODER  # the student's conv layers (networks.CONV_LAYERS)
    bf16: bool = False  # bfloat16 autocast while it trains and plays its rounds; a saved student
    # acts in float32 (its weights are float32 either way)


@dataclass
class RoundResult:
    round: int
    player: str  # "teacher" or "student"
    scores: list[float]
    agreement: float  # share of steps where the player's action equals the teacher's
    transitions: int  # in the aggregate after this round
    seconds: float


@dataclass
class DistillResult:
    teacher_score: float
    student_score: float  # best round's mean
    share: float  # of the teacher's (normalised) score
    reached: bool
    rounds: list[RoundResult] = field(default_factory=list)


def _share(score: float, teacher: float, random: float | None) -> float:
    if random is not None and teacher > random:
        return normalised(score, teacher, random)
    return score / teacher if teacher else float("nan")


def _play(
    env: gym.Env,
    teacher: Expert,
    student: Callable[[np.ndarray], int] | None,
    seed: int,
    max_steps: int | None,
) -> tuple[Episode, float]:
    """One game: the student acts (the teacher when None); the trajectory holds teacher labels."""
    played = {"same": 0, "steps": 0}
    labels: list[int] = []

    def policy(obs: np.ndarray) -> int:
        label = int(teacher.act(obs, env))
        labels.append(label)
        action = label if student is None else int(student(obs))
        played["same"] += action == label
        played["steps"] += 1
        return action

    limited = env if max_steps is None else gym.wrappers.TimeLimit(env, max_steps)
    episode = run_episode(limited, policy, seed, on_reset=lambda: teacher.reset(env))
    episode.trajectory.actions[:] = labels  # run_episode recorded the executed actions
    return episode, played["same"] / max(played["steps"], 1)


def _greedy(net: torch.nn.Module) -> Callable[[np.ndarray], int]:
    @torch.no_grad()
    def act(obs: np.ndarray) -> int:
        return int(net(torch.as_tensor(obs[None])).argmax(dim=-1)[0])

    return act


def _batch(buffer: FrameBuffer, batch_size: int, rng: np.random.Generator) -> Batch:
    """Observations and labels only: a student needs no next observations."""
    slots = np.flatnonzero(buffer.has_next[0])
    pick = rng.choice(slots, size=batch_size)
    empty = np.zeros(batch_size, dtype=bool)
    return Batch(
        buffer.observations(pick), buffer.actions[0, pick], buffer.rewards[0, pick], None, empty,
        empty,
    )  # fmt: skip


def distill(
    game: str,
    teacher: Expert,
    out: Path,
    config: DistillConfig | None = None,
    *,
    settings: AtariSettings | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    command: str | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> DistillResult:
    """Distill `teacher` into a pixel student by DAgger; the best student so far is saved at
    `out` (.pt) after every student round, the whole state in `checkpoint_dir` after every round
    (`resume` continues from it; without `resume` an existing one is refused, not overwritten)."""
    from tqdm import tqdm

    config = config or DistillConfig()
    spec = resolve_game(game)
    if not spec.is_atari:
        raise InputError(f"--game: distilling into a pixel policy needs an Atari game, not {game}")
    if resume and checkpoint_dir is None:
        raise InputError("--resume: needs a checkpoint directory")
    saved = _read_progress(checkpoint_dir, spec.env_id, teacher, config) if resume else None
    if saved is None and checkpoint_dir is not None and (checkpoint_dir / PROGRESS_FILE).exists():
        raise InputError(
            f"{checkpoint_dir / PROGRESS_FILE}: a distillation is saved there; pass --resume to "
            "continue it, or another --checkpoint-dir"
        )
    settings = settings or AtariSettings()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0xDA])
    env = make_env(spec.env_id, config.seed, settings=settings)
    n_actions = int(env.action_space.n)
    net = make_q_network(env.observation_space, n_actions, bf16=config.bf16, encoder=config.encoder)
    learner = BCLearner(net, BCConfig(lr=config.lr, seed=config.seed))
    buffer = FrameBuffer(config.capacity, env.observation_space.shape, np.uint8)
    # Scores of capped games are not comparable with the random score of whole games.
    random = RANDOM_SCORES.get(spec.name) if config.max_steps is None else None
    rounds: list[RoundResult] = []
    best: tuple[float, dict] | None = None
    teacher_score = float("nan")
    # The round to play next, and whether the round before it still awaits its training.
    first, pending = 0, False
    if saved is not None:
        state, path = saved
        learner.load_state_dict(state["learner"])
        rng.bit_generator.state = state["rng"]
        where = checkpoint_dir / AGGREGATE_FILE
        fix = "the labels cannot be rebuilt; start afresh in another --checkpoint-dir"
        if not where.is_file():
            raise InputError(f"{where}: missing beside {path}; {fix}")
        saved_round, aggregate = read_replay(where, fix)
        if saved_round != state["round"]:
            raise InputError(
                f"{where}: from round {saved_round}, {path} from round {state['round']}; {fix}"
            )
        buffer.load_state_dict(aggregate, str(where))
        rounds = [RoundResult(**r) for r in state["rounds"]]
        teacher_score = float(state["teacher_score"])
        best = state["best"]
        first, pending = int(state["round"]) + 1, not state["trained"]
        say(f"resumed after round {state['round']} from {path}")

    def result() -> DistillResult:
        share = _share(best[0], teacher_score, random)
        return DistillResult(teacher_score, best[0], share, share >= config.target, list(rounds))

    def checkpoint(k: int, trained: bool) -> None:
        """After round k's games (labels, then distill.pt) and again after its training (distill.pt
        only: training leaves the labels as they were, stamped k)."""
        if checkpoint_dir is None:
            return
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if not trained:
            save_replay(checkpoint_dir / AGGREGATE_FILE, buffer, k, compressed=True)
        save_checkpoint(
            {
                "kind": "distill", "game": spec.env_id, "teacher": teacher.provenance,
                "config": asdict(config), "round": k, "trained": trained,
                "learner": learner.state_dict(), "rng": rng.bit_generator.state,
                "rounds": [asdict(r) for r in rounds], "best": best,
                "teacher_score": teacher_score,
            },
            checkpoint_dir / PROGRESS_FILE,
        )  # fmt: skip

    def bar(n: int, desc: str, unit: str) -> tqdm:
        return tqdm(range(n), desc=desc, unit=unit, disable=not progress, file=sys.stderr)

    def train(k: int) -> None:
        what = f"round {k}: student learns the {len(buffer)} labels"
        updates = bar(config.updates, what, "update")
        accuracy = []
        for _ in updates:
            metrics = learner.update(_batch(buffer, config.batch_size, rng), None)
            accuracy.append(float(metrics["accuracy"]))
        updates.close()
        if accuracy:
            recent = np.mean(accuracy[-100:])
            say(f"round {k}: training accuracy over the last 100 batches {recent:.2f}")

    try:
        if pending:  # the saved run stopped after playing round first-1, before training on it
            done = best is not None and result().reached
            if first > config.rounds or done:
                why = "target reached" if done else f"all {config.rounds} rounds played"
                say(f"nothing to do: {why}")
                first = config.rounds + 1
            else:
                train(first - 1)
                checkpoint(first - 1, trained=True)
        for k in range(first, config.rounds + 1):
            start = time.perf_counter()
            player = None if k == 0 else _greedy(net.eval())
            scores, agreements = [], []
            who = "teacher" if k == 0 else "student"
            games = bar(config.episodes, f"round {k}: {who} plays, teacher labels", "game")
            for i in games:
                seed = config.seed + 1000 * k + i
                episode, agreement = _play(env, teacher, player, seed, config.max_steps)
                if len(episode.trajectory) + 1 > buffer.slots:
                    raise InputError(
                        f"--capacity: a game of {len(episode.trajectory)} steps exceeds it"
                    )
                buffer.add_episode(episode.trajectory)
                scores.append(episode.score)
                agreements.append(agreement)
                games.set_postfix(score=f"{episode.score:g}", agree=f"{agreement:.2f}")
            mean = float(np.mean(scores))
            if k == 0:
                teacher_score = mean
            elif best is None or mean > best[0]:
                best = (mean, copy.deepcopy(net.state_dict()))
            share = _share(mean, teacher_score, random)
            reached = k > 0 and share >= config.target
            rounds.append(
                RoundResult(
                    k, who, scores, float(np.mean(agreements)),
                    len(buffer), time.perf_counter() - start,
                )
            )  # fmt: skip
            say(
                f"round {k}: {rounds[-1].player} {mean:+.1f} over {len(scores)} games"
                + ("" if k == 0 else f" = {share:.0%} of the teacher's {teacher_score:+.1f}")
                + f", agreement with the teacher {rounds[-1].agreement:.2f}"
            )
            if best is not None:  # after every student round: an interrupted run keeps its best
                save_student(out, best[1], env.observation_space.shape, n_actions, spec.env_id,
                             settings, teacher, config, result(), command)  # fmt: skip
            checkpoint(k, trained=False)  # the labels are kept before the slow part
            if reached or k == config.rounds:
                break
            train(k)
            rounds[-1].seconds = time.perf_counter() - start
            checkpoint(k, trained=True)
    finally:
        env.close()
    if best is None:
        raise InputError("--rounds: distillation needs at least one student round")
    return result()


def _read_progress(
    checkpoint_dir: Path, env_id: str, teacher: Expert, config: DistillConfig
) -> tuple[dict, Path]:
    """The saved distillation in `checkpoint_dir`, checked against this game, teacher and
    settings (only RESUMABLE_FIELDS may differ); InputError naming what does not match."""
    path = checkpoint_dir / PROGRESS_FILE
    if not path.is_file():
        raise InputError(f"--resume: no distillation saved at {path}")
    state = read_checkpoint(path, PROGRESS_FIELDS)
    if state["kind"] != "distill":
        raise InputError(f"{path}: not a distillation checkpoint")
    if state["game"] != env_id:
        raise InputError(f"{path}: a distillation of {state['game']}, not {env_id}")
    if state["teacher"] != teacher.provenance:
        other = state["teacher"].get("file") or state["teacher"]
        raise InputError(f"{path}: distilled from another teacher ({other})")
    mine = asdict(config)
    for name, value in {**ADDED_FIELDS, **state["config"]}.items():
        if name not in RESUMABLE_FIELDS and mine.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag}: {mine.get(name)!r} differs from the saved run's {value!r}")
    return state, path


def save_student(
    path: Path,
    weights: dict,
    obs_shape: tuple[int, ...],
    n_actions: int,
    env_id: str,
    settings: AtariSettings,
    teacher: Expert,
    config: DistillConfig,
    result: DistillResult,
    command: str | None = None,
) -> None:
    """The student's weights and what made it (.pt), and a readable .json beside it."""
    info = {
        "game": env_id,
        "algo": DISTILLED_ALGO,
        "observes": "pixels (our 84x84 grayscale frame stacks)",
        "teacher": teacher.provenance,
        "teacher_name": teacher.name,
        "settings": settings.to_dict(),
        "config": asdict(config),
        "teacher_score": result.teacher_score,
        "mean_return": result.student_score,
        "share_of_teacher": result.share,
        "reached_target": result.reached,
        "rounds": [asdict(r) for r in result.rounds],
        "train_time_s": round(sum(r.seconds for r in result.rounds)),
        "command": command,
    }
    state = {
        "format": STUDENT_FORMAT,
        "obs_shape": list(obs_shape),
        "n_actions": n_actions,
        "encoder": config.encoder,
        "net": weights,
        "info": info,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


class PixelPolicyExpert:
    """A distilled student acting greedily on our observations (it never reads the emulator)."""

    def __init__(self, path: Path, game: str) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"--expert: no such file {str(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a file that is not its own
            raise InputError(f"{path}: not a distilled student ({type(err).__name__})") from err
        if not isinstance(state, dict) or state.get("format") != STUDENT_FORMAT:
            raise InputError(f"{path}: not a distilled student (format {STUDENT_FORMAT})")
        spec = resolve_game(game)
        info = state["info"]
        if info.get("game") != spec.env_id:
            raise InputError(f"{path}: distilled for {info.get('game')}, not {spec.env_id}")
        space = gym.spaces.Box(0, 255, tuple(state["obs_shape"]), np.uint8)
        encoder = state.get("encoder", DEFAULT_ENCODER)  # saved before the option: nature
        self.net = make_q_network(space, int(state["n_actions"]), encoder=encoder)
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self._act = _greedy(self.net)
        self.name = DISTILLED_ALGO
        self.provenance: dict[str, Any] = {
            "kind": "rl",
            "algo": DISTILLED_ALGO,
            "observes": info["observes"],
            "teacher": info.get("teacher"),
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "score": {k: info[k] for k in ("mean_return", "teacher_score", "share_of_teacher")},
        }

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, obs: np.ndarray, env: gym.Env) -> int:
        return self._act(np.asarray(obs))
