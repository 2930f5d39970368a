"""Evaluation: raw game scores of a policy over a fixed set of seeded episodes, and the check
that IQ-Learn's recovered reward tracks the true one (`reward_correlation`).

The reward check plays episodes of mixed skill (the expert taking uniformly random actions with
probability epsilon, for epsilon on a ladder from 0 to 1, plus the trained agent), sums the
recovered reward r(s, a) = Q(s, a) - gamma * (1 - terminated) * V(s') over each episode, and
correlates these sums with the true returns (Pearson and Spearman).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from iq_atari.envs import AtariSettings, make_env, make_vec_env, rebuild_stacks, resolve_game
from iq_atari.utils import atomic_path

if TYPE_CHECKING:
    from iq_atari.agent import SoftQAgent
    from iq_atari.demos import Trajectory
    from iq_atari.experts import Expert

PolicyFn = Callable[[np.ndarray], np.ndarray]


def eval_settings(settings: AtariSettings | None) -> AtariSettings:
    """Evaluation plays the whole game as published scores do: no life-loss ends, no fire reset."""
    return dataclasses.replace(
        settings or AtariSettings(), terminal_on_life_loss=False, fire_reset=False
    )


def evaluate(
    policy_fn: PolicyFn,
    game: str,
    episodes: int,
    seed: int,
    settings: AtariSettings | None = None,
    max_envs: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Raw (unclipped, whole-game) returns of `episodes` episodes of `policy_fn`, in env order.

    `policy_fn` maps a batch of observations to a batch of actions (e.g. greedy argmax Q). The
    episodes run in up to `max_envs` envs at once; env i plays a fixed quota of episodes, so the
    result does not depend on which episodes end first, and the same seed gives the same episodes.
    `progress` shows a bar over the episodes (whole Atari games of a good agent take minutes).
    """
    from tqdm import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n_envs = min(episodes, max_envs)
    quota = np.full(n_envs, episodes // n_envs)
    quota[: episodes % n_envs] += 1
    spec = resolve_game(game)
    envs = make_vec_env(
        game, n_envs, seed=seed, settings=eval_settings(settings) if spec.is_atari else None
    )
    returns: list[list[float]] = [[] for _ in range(n_envs)]
    bar = tqdm(
        total=episodes,
        desc=f"eval {spec.name} ({n_envs} envs, greedy)",
        unit="ep",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    try:
        obs, _ = envs.reset()
        while any(len(r) < q for r, q in zip(returns, quota, strict=True)):
            obs, _, _, _, infos = envs.step(np.asarray(policy_fn(obs)))
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    if len(returns[i]) < quota[i]:
                        returns[i].append(float(infos["episode"]["r"][i]))
                        bar.update()
    finally:
        bar.close()
        envs.close()
    return np.array([r for env_returns in returns for r in env_returns], dtype=np.float64)


EPSILONS = (0.0, 0.25, 0.5, 0.75, 1.0)
SLOW_EXPERTS = ("planner",)  # look-ahead experts: never the reward check's default


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `x`, ties sharing their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two samples; nan if either is constant or shorter than 2."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"samples of different lengths: {len(x)} and {len(y)}")
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks)."""
    return pearson(rankdata(x), rankdata(y))


@dataclass
class RewardCorrelation:
    """Per-episode true and recovered returns of the reward check, and their correlations.

    `pearson_per_step` correlates the returns divided by episode length: where episodes end at
    different lengths (Breakout's games over), a recovered reward that is negative on every step
    sums lowest over the longest episodes whatever it says about each step, and the two
    correlations then disagree.
    """

    sources: list[str]  # "expert eps=0.25", ..., "agent"
    true_returns: np.ndarray
    recovered_returns: np.ndarray
    lengths: np.ndarray
    pearson: float = field(init=False)
    spearman: float = field(init=False)
    pearson_per_step: float = field(init=False)

    def __post_init__(self) -> None:
        self.pearson = pearson(self.true_returns, self.recovered_returns)
        self.spearman = spearman(self.true_returns, self.recovered_returns)
        steps = np.maximum(np.asarray(self.lengths, dtype=np.float64), 1.0)
        self.pearson_per_step = pearson(self.true_returns / steps, self.recovered_returns / steps)

    def to_dict(self) -> dict:
        return {
            "pearson": self.pearson,
            "spearman": self.spearman,
            "pearson_per_step": self.pearson_per_step,
            "episodes": len(self.sources),
            "sources": self.sources,
            "true_returns": self.true_returns.tolist(),
            "recovered_returns": self.recovered_returns.tolist(),
            "lengths": self.lengths.tolist(),
        }


def action_agreement(
    policy_fn: PolicyFn,
    trajectories: Sequence[Trajectory],
    frame_stack: int,
    n_actions: int,
    chunk: int = 512,
) -> dict:
    """How a policy's actions on the demos' own observations agree with the expert's: overall
    accuracy, the accuracy of always answering the expert's most frequent action, and per action
    its share of the expert's steps and the policy's recall of it. With rare but decisive
    actions (an expert that mostly waits, as Pong's planner does), accuracy alone hides what is
    not learned."""
    expert, chosen = [], []
    for trajectory in trajectories:
        obs = np.asarray(trajectory.obs)
        if obs.ndim == 3:  # Atari: single frames -> stacks, as the env builds them
            obs = rebuild_stacks(obs, frame_stack)
        for start in range(0, len(trajectory.actions), chunk):
            end = min(start + chunk, len(trajectory.actions))
            chosen.append(np.asarray(policy_fn(obs[start:end])))
        expert.append(np.asarray(trajectory.actions))
    return _agreement(np.concatenate(expert), np.concatenate(chosen), n_actions)


def expert_agreement_on_agent_states(
    policy_fn: PolicyFn,
    expert: Expert,
    game: str,
    episodes: int,
    seed: int,
    settings: AtariSettings | None = None,
) -> dict:
    """`action_agreement` on the states the *policy* visits (the DAgger question): the policy
    plays `episodes` games (episode i from seed + i, evaluation settings), and on each step the
    expert is asked what it would do there. High agreement on the demos with low agreement here
    means the policy fails where its own mistakes take it, not on the expert's states. The expert
    must not change the game when asked (the Pong tracker and classic controllers do not; the
    Pong planner's look-ahead tracks its own committed actions, so it does not fit here).
    Adds the policy's raw `scores`."""
    from iq_atari.episodes import run_episode

    spec = resolve_game(game)
    env = make_env(game, seed, settings=eval_settings(settings) if spec.is_atari else None)
    expert_actions: list[int] = []
    actions: list[int] = []

    def play(obs: np.ndarray) -> int:
        action = int(np.asarray(policy_fn(np.asarray(obs)[None]))[0])
        expert_actions.append(int(expert.act(obs, env)))
        actions.append(action)
        return action

    try:
        n_actions = int(env.action_space.n)
        scores = [
            run_episode(env, play, seed + i, on_reset=lambda: expert.reset(env)).score
            for i in range(episodes)
        ]
    finally:
        env.close()
    result = _agreement(np.asarray(expert_actions), np.asarray(actions), n_actions)
    return {**result, "scores": scores}


def _agreement(expert_actions: np.ndarray, actions: np.ndarray, n_actions: int) -> dict:
    counts = np.bincount(expert_actions, minlength=n_actions)
    recall = [
        float(np.mean(actions[expert_actions == a] == a)) if counts[a] else None
        for a in range(n_actions)
    ]
    return {
        "steps": int(len(expert_actions)),
        "accuracy": float(np.mean(actions == expert_actions)),
        "majority_accuracy": float(counts.max() / counts.sum()),
        "expert_share": (counts / counts.sum()).tolist(),
        "recall": recall,
    }


def epsilon_policy(
    expert: Expert, env, n_actions: int, epsilon: float, rng: np.random.Generator
) -> Callable[[np.ndarray], int]:
    """The expert's action, replaced by a uniformly random one with probability `epsilon`.

    The expert is asked every step (scripted experts may track the game), even when overruled.
    """

    from iq_atari.rollout import random_action_noise

    noise = random_action_noise(epsilon, n_actions, rng)

    def act(obs: np.ndarray) -> int:
        return noise(expert.act(obs, env))

    return act


def recovered_return(
    agent: SoftQAgent, trajectory: Trajectory, gamma: float, frame_stack: int, chunk: int = 512
) -> float:
    """Sum over one episode of the agent's recovered reward r(s, a); the last step bootstraps
    unless the episode terminated (a time-limit end is not a terminal state)."""
    frames = trajectory.obs
    obs = frames if frames.ndim == 2 else rebuild_stacks(frames, frame_stack)
    n = len(trajectory.actions)
    terminated = np.zeros(n, dtype=bool)
    terminated[-1] = trajectory.terminated

    def as_tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), device=agent.device)

    total = 0.0
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        rewards = agent.recovered_reward(
            as_tensor(obs[start:end]),
            as_tensor(trajectory.actions[start:end]),
            as_tensor(obs[start + 1 : end + 1]),
            as_tensor(terminated[start:end]),
            gamma,
        )
        total += float(rewards.double().sum())
    return total


def reward_correlation(
    agent: SoftQAgent,
    game: str,
    gamma: float,
    expert: Expert,
    episodes: int = 3,
    seed: int = 20_000,
    epsilons: Sequence[float] = EPSILONS,
    settings: AtariSettings | None = None,
    progress: bool = False,
    max_steps: int | None = None,
) -> RewardCorrelation:
    """Correlate recovered and true returns over `episodes` episodes per epsilon of the
    epsilon-random `expert`, plus `episodes` greedy episodes of `agent` itself.

    Atari episodes are whole games (as in `evaluate`) unless `max_steps` cuts each episode at
    that many agent steps (a time-limit end: the recovered sum bootstraps from V there, and both
    sums cover the same steps). Episode j of each policy starts from seed + j, so every policy
    meets the same starts. `progress` shows a bar over the episodes, naming the policy playing.
    """
    from gymnasium.wrappers import TimeLimit
    from tqdm import tqdm

    from iq_atari.episodes import run_episode

    spec = resolve_game(game)
    settings = eval_settings(settings) if spec.is_atari else None
    frame_stack = (settings or AtariSettings()).frame_stack
    env = make_env(game, seed, settings=settings)
    if max_steps is not None:
        env = TimeLimit(env, max_episode_steps=max_steps)
    n_actions = int(env.action_space.n)
    rng = np.random.default_rng(seed)
    sources: list[str] = []
    true_returns, recovered, lengths = [], [], []

    def greedy(obs: np.ndarray) -> int:
        return int(agent.act(np.asarray(obs)[None], greedy=True)[0])

    cap = f", <= {max_steps} steps each" if max_steps is not None else ", whole episodes"
    bar = tqdm(
        total=episodes * (len(epsilons) + 1),
        desc=f"reward check {spec.name}",
        unit="ep",
        disable=not progress,
        dynamic_ncols=True,
    )
    # (source, what the bar says, epsilon or None for the agent), in the order they play
    players = [(f"expert eps={e:g}", f"{expert.name} expert, epsilon {e:g}", e) for e in epsilons]
    players.append(("agent", "the trained agent, greedy", None))
    try:
        for source, label, epsilon in players:
            bar.set_description(f"reward check {spec.name}: {label}{cap}")
            if epsilon is None:
                policy, reset = greedy, None
            else:
                policy = epsilon_policy(expert, env, n_actions, epsilon, rng)
                reset = lambda: expert.reset(env)  # noqa: E731
            for j in range(episodes):
                trajectory = run_episode(env, policy, seed + j, on_reset=reset).trajectory
                sources.append(source)
                true_returns.append(trajectory.ret)
                recovered.append(recovered_return(agent, trajectory, gamma, frame_stack))
                lengths.append(len(trajectory))
                bar.update()
    finally:
        bar.close()
        env.close()
    return RewardCorrelation(
        sources=sources,
        true_returns=np.array(true_returns),
        recovered_returns=np.array(recovered),
        lengths=np.array(lengths),
    )


def plot_reward_correlation(result: RewardCorrelation, path: str | Path, title: str) -> Path:
    """Scatter of recovered vs true episode returns, one colour per source, r in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for source in dict.fromkeys(result.sources):
        pick = np.array([s == source for s in result.sources])
        ax.scatter(result.true_returns[pick], result.recovered_returns[pick], label=source, s=25)
    ax.set_xlabel("true return")
    ax.set_ylabel("recovered return  sum r(s, a)")
    ax.set_title(
        f"{title}\nPearson {result.pearson:.3f}, Spearman {result.spearman:.3f}, "
        f"per step {result.pearson_per_step:.3f}"
    )
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def reward_check(
    agent: SoftQAgent,
    game: str,
    gamma: float,
    episodes: int,
    seed: int,
    out_png: str | Path,
    expert_name: str | None = None,
    settings: AtariSettings | None = None,
    progress: bool = False,
    max_steps: int | None = None,
) -> dict | None:
    """`reward_correlation` with the named expert (else the game's default: its RAM agent where
    one ships, fast; never a look-ahead planner unless named), episodes cut at `max_steps`, and
    its scatter plot at `out_png`; None (with a note on stderr) when the game has no expert."""
    import sys

    from iq_atari.errors import InputError
    from iq_atari.experts import available_experts, get_expert

    # The named expert, else the game's experts in their default order, skipping the slow ones
    # (look-ahead planners emulate the future at every step) and any that cannot load here.
    names = [n for n in available_experts(game) if n not in (*SLOW_EXPERTS, "random")]
    expert, why = None, f"{resolve_game(game).name} has no fast expert to play"
    for name in [expert_name, *names] if expert_name is not None else names:
        try:
            expert = get_expert(game, name)
            break
        except InputError as err:
            why = str(err)
    if expert is None:
        print(f"reward check skipped: {why}", file=sys.stderr)
        return None
    result = reward_correlation(
        agent,
        game,
        gamma,
        expert,
        episodes,
        seed,
        settings=settings,
        progress=progress,
        max_steps=max_steps,
    )
    plot_reward_correlation(result, out_png, f"recovered vs true return, {resolve_game(game).name}")
    return result.to_dict()
