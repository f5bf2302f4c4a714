"""An ENAS/Zoph-style recurrent controller trained by policy gradient (REINFORCE or PPO)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator

from nastk.core.errors import InvalidArchitectureError
from nastk.core.objective import Objective
from nastk.core.options import QuietDefaults
from nastk.core.result import Result
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy, draw_unseen

#: Controller settings of published methods, for ``preset``. ``nas_segm``: nas-segm's
#: (Nekrasov et al., ``rl/micro_controllers.py`` and ``gradient_estimators.py``) - a 2-layer LSTM
#: of 100 units whose next input is its previous output (actions are not fed back), logits not
#: squashed, PPO with clip 0.1, Adam 1e-4, baseline decay 0.95 on raw rewards, no entropy
#: bonus, gradient norm clipped to 2, one update per architecture.
RL_PRESETS: dict[str, dict[str, Any]] = {
    "nas_segm": {"algorithm": "ppo", "num_layers": 2, "hidden_size": 100, "input_feed": "output",
                 "tanh_constant": None, "ppo_clip": 0.1, "lr": 1e-4, "baseline_decay": 0.95,
                 "reward_transform": "none", "entropy_weight": 0.0, "grad_clip": 2.0,
                 "batch_size": 1, "init_range": 0.1},
}


class RLOptions(QuietDefaults):
    """Options of :class:`RLController`."""

    model_config = ConfigDict(extra="forbid")
    # added later: left out of the dump while unset, so that stored runs keep their identity
    quiet_defaults: ClassVar[tuple[str, ...]] = ("preset", "num_layers", "input_feed",
                                                 "grad_clip")

    preset: Literal["nas_segm"] | None = Field(
        default=None, description="start from a published method's controller settings "
                                  "(options given alongside override them): 'nas_segm' is "
                                  f"{RL_PRESETS['nas_segm']}")
    num_layers: int = Field(default=1, ge=1, le=8, description="stacked LSTM layers")
    input_feed: Literal["action", "output"] = Field(
        default="action", description="the next step's input: the embedding of the action "
                                      "just taken ('action', ENAS) or the LSTM's output "
                                      "('output', nas-segm)")
    grad_clip: float | None = Field(default=None, gt=0.0,
                                    description="clip the policy's gradient norm to this")

    algorithm: Literal["reinforce", "ppo"] = Field(
        default="reinforce", description="policy-gradient update: 'reinforce' or 'ppo'")
    hidden_size: int = Field(default=64, ge=1, description="LSTM hidden and embedding size")
    lr: float = Field(default=0.02, gt=0.0, description="Adam learning rate of the policy")
    batch_size: int = Field(default=8, ge=1,
                            description="successful results per policy update")
    baseline_decay: float = Field(default=0.9, ge=0.0, lt=1.0,
                                  description="decay of the exponential moving-average reward "
                                              "baseline")
    entropy_weight: float = Field(default=0.01, ge=0.0,
                                  description="weight of the entropy bonus that keeps the "
                                              "policy exploring")
    reward_transform: Literal["none", "normalize"] = Field(
        default="normalize",
        description="'normalize' divides advantages by a moving-average reward spread, so lr and "
                    "entropy_weight do not depend on the metric's scale; 'none' uses raw "
                    "reward - baseline")
    ppo_clip: float = Field(default=0.2, gt=0.0, lt=1.0,
                            description="PPO ratio clipping range")
    ppo_epochs: int = Field(default=4, ge=1, description="PPO passes over each batch")
    temperature: float = Field(default=1.0, gt=0.0,
                               description="logits are divided by this before sampling")
    tanh_constant: float | None = Field(
        default=2.5, gt=0.0,
        description="logits are squashed to tanh_constant * tanh(logits) (ENAS), which bounds "
                    "how certain the policy can get; None disables it")
    init_range: float = Field(default=0.1, gt=0.0,
                              description="parameters start uniform in [-init_range, init_range]")
    max_resample: int = Field(default=100, ge=1,
                              description="sampling rounds to find valid architectures not "
                                          "evaluated yet; then the rest are uniform draws of "
                                          "unseen ones (an error if no draw was valid)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in RL_PRESETS:
            data = {**RL_PRESETS[data["preset"]], **data}
        return data


class _Policy(nn.Module):
    """LSTM emitting one token per decision; the previous token's embedding is the next input."""

    def __init__(self, decisions: Sequence[int], hidden: int, num_layers: int = 1,
                 input_feed: str = "action") -> None:
        super().__init__()
        self.decisions = list(decisions)
        self.hidden = hidden
        self.input_feed = input_feed
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.lstm = nn.LSTMCell(hidden, hidden)
        if input_feed == "action":
            self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in self.decisions)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.decisions)
        if num_layers > 1:  # layers 2.. (only then, so one layer keeps its parameter order)
            self.upper = nn.ModuleList(nn.LSTMCell(hidden, hidden)
                                       for _ in range(num_layers - 1))
        self.cells: list[nn.LSTMCell] = [self.lstm, *getattr(self, "upper", [])]

    def forward(self, actions: torch.Tensor | None = None, batch: int = 1,
                generator: torch.Generator | None = None, temperature: float = 1.0,
                tanh_constant: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``batch`` sequences (``actions`` None) or score given ``actions`` [B, D].
        Returns actions [B, D], their total log-probability [B] and total entropy [B]."""
        b = batch if actions is None else actions.shape[0]
        x = self.start.expand(b, -1)
        state = [(x.new_zeros(b, self.hidden), x.new_zeros(b, self.hidden))
                 for _ in self.cells]
        logp = x.new_zeros(b)
        ent = x.new_zeros(b)
        taken = []
        for t in range(len(self.decisions)):
            h = x
            for k, cell in enumerate(self.cells):
                state[k] = cell(h, state[k])
                h = state[k][0]
            logits = self.heads[t](h) / temperature
            if tanh_constant is not None:
                logits = tanh_constant * torch.tanh(logits)
            log_probs = F.log_softmax(logits, dim=-1)
            if actions is None:
                a = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
            else:
                a = actions[:, t]
            taken.append(a)
            logp = logp + log_probs.gather(1, a[:, None]).squeeze(1)
            ent = ent - (log_probs.exp() * log_probs).sum(-1)
            x = self.embeddings[t](a) if self.input_feed == "action" else h
        return torch.stack(taken, dim=1), logp, ent


class RLController(Strategy):
    """Recurrent (LSTM) policy over the space's decisions, trained by REINFORCE or PPO.

    Works with any space: one softmax head per entry of ``space.decisions()``, the embedding of
    the previous action as the next input (a learned start embedding first). Rewards are
    ``objective.score``; failed results are left out of the updates. Every ``batch_size``
    successful results, the policy takes one REINFORCE step (advantage = reward - moving-average
    baseline) or ``ppo_epochs`` clipped PPO steps, with an entropy bonus. Decisions that decode to
    an invalid architecture are resampled. Results for architectures it did not propose are used
    with their log-probability under the current policy.

    It samples without replacement: a sampled architecture that is already in flight or in
    this batch is drawn again, and one already evaluated is drawn again too, its known reward
    going into the policy's next update as if it had been evaluated (so the policy still learns
    that it likes it, without spending a query). After ``max_resample`` rounds the remaining
    proposals are uniform draws of unseen architectures (a policy that has collapsed onto the
    few it knows explores again).
    """

    Options = RLOptions

    def __init__(self, space: SearchSpace, objective: Objective, seed: int = 0,
                 **options: Any) -> None:
        super().__init__(space, objective, seed, **options)
        o = self.options
        self.generator = torch.Generator()
        self.generator.manual_seed(int(np.random.SeedSequence([seed, 0x5EED]).generate_state(1)[0]))
        with torch.random.fork_rng(devices=[]):  # building modules must not touch global RNG
            self.policy = _Policy(space.decisions(), o.hidden_size, o.num_layers,
                                  o.input_feed)
        with torch.no_grad():
            for p in self.policy.parameters():
                p.uniform_(-o.init_range, o.init_range, generator=self.generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=o.lr)
        self.baseline: float | None = None
        self.reward_var: float | None = None
        self.updates = 0
        #: mean reward of the batch behind each update, oldest first
        self.history: list[float] = []
        # arch key -> (decisions, log-prob when sampled)
        self._pending: dict[str, tuple[list[int], float]] = {}
        # (decisions, reward, old log-prob) waiting for the next update
        self._buffer: list[tuple[list[int], float, float]] = []
        # arch key -> reward of every architecture told (None: it failed)
        self._known: dict[str, float | None] = {}
        #: samples answered from known rewards instead of being proposed
        self.known_samples = 0

    # -- sampling -----------------------------------------------------------------------------
    def _forward(self, actions: torch.Tensor | None = None, batch: int = 1
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.policy(actions, batch, self.generator, self.options.temperature,
                           self.options.tanh_constant)

    def ask(self, n: int = 1) -> list[Architecture]:
        out: list[Architecture] = []
        taken: set[str] = set(self._pending)
        valid_rows = 0
        for _ in range(self.options.max_resample):
            need = n - len(out)
            if need <= 0:
                break
            with torch.no_grad():
                actions, logp, _ = self._forward(batch=need)
            for row, lp in zip(actions.tolist(), logp.tolist(), strict=True):
                try:
                    arch = self.space.validate(self.space.from_decisions(row))
                except InvalidArchitectureError:
                    continue
                valid_rows += 1
                if arch.key in self._known:  # learn from it again, do not spend a query
                    reward = self._known[arch.key]
                    if reward is not None:
                        self.known_samples += 1
                        self._buffer.append((row, reward, float(lp)))
                    continue
                if arch.key in taken:
                    continue
                taken.add(arch.key)
                self._pending[arch.key] = (row, float(lp))
                out.append(arch)
            if len(self._buffer) >= self.options.batch_size:
                self._update()
        if len(out) < n and valid_rows == 0:
            raise RuntimeError(
                f"RLController: none of the sampled architectures was valid in "
                f"{self.options.max_resample} rounds (search space {self.space.name!r}); raise "
                "max_resample or check the space's constraints")
        seen = set(self._known) | taken
        while len(out) < n:
            arch = draw_unseen(self.space, self.rng, seen)
            self._pending[arch.key] = (self.space.to_decisions(arch), self.log_prob(arch))
            out.append(arch)
        return out

    def log_prob(self, arch: Architecture) -> float:
        """Log-probability of ``arch``'s decisions under the current policy."""
        actions = torch.tensor([self.space.to_decisions(arch)], dtype=torch.long)
        with torch.no_grad():
            _, logp, _ = self._forward(actions)
        return float(logp[0])

    # -- learning -----------------------------------------------------------------------------
    def tell(self, arch: Architecture, result: Result) -> None:
        entry = self._pending.pop(arch.key, None)
        score = self.objective.score(result)
        self._known[arch.key] = None if score is None else float(score)
        if score is None:  # failed: no reward at all, never a silent 0
            return
        if entry is None:
            entry = (self.space.to_decisions(arch), self.log_prob(arch))
        self._buffer.append((list(entry[0]), float(score), float(entry[1])))
        if len(self._buffer) >= self.options.batch_size:
            self._update()

    def _advantages(self, rewards: list[float]) -> torch.Tensor:
        o = self.options
        if self.baseline is None:  # first batch: its own mean and spread
            self.baseline = float(np.mean(rewards))
            self.reward_var = float(np.var(rewards))
            adv = [r - self.baseline for r in rewards]
        else:
            adv = [r - self.baseline for r in rewards]
            for r in rewards:
                self.reward_var = (o.baseline_decay * self.reward_var
                                   + (1 - o.baseline_decay) * (r - self.baseline) ** 2)
                self.baseline = o.baseline_decay * self.baseline + (1 - o.baseline_decay) * r
        if o.reward_transform == "normalize":
            scale = math.sqrt(self.reward_var) if self.reward_var else 0.0
            adv = [a / scale if scale > 1e-12 else 0.0 for a in adv]
        return torch.tensor(adv, dtype=torch.float32)

    def _update(self) -> None:
        o = self.options
        batch, self._buffer = self._buffer, []
        actions = torch.tensor([d for d, _, _ in batch], dtype=torch.long)
        rewards = [r for _, r, _ in batch]
        old_logp = torch.tensor([lp for _, _, lp in batch], dtype=torch.float32)
        adv = self._advantages(rewards)
        self.history.append(float(np.mean(rewards)))
        self.updates += 1
        epochs = o.ppo_epochs if o.algorithm == "ppo" else 1
        for _ in range(epochs):
            _, logp, ent = self._forward(actions)
            if o.algorithm == "ppo":
                ratio = torch.exp(logp - old_logp)
                clipped = torch.clamp(ratio, 1 - o.ppo_clip, 1 + o.ppo_clip)
                pg = -torch.minimum(ratio * adv, clipped * adv).mean()
            else:
                pg = -(adv * logp).mean()
            loss = pg - o.entropy_weight * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            if o.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.policy.parameters(), o.grad_clip)
            self.optimizer.step()

    def curves(self) -> dict[str, list[float]]:
        """``mean reward per update``: the mean reward of each batch the policy learned from."""
        return {"mean reward per update": list(self.history)}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "baseline": self.baseline,
                "reward_var": self.reward_var,
                "updates": self.updates,
                "history": list(self.history),
                "pending": [(k, list(d), lp) for k, (d, lp) in self._pending.items()],
                "buffer": [(list(d), r, lp) for d, r, lp in self._buffer],
                "known": [[k, v] for k, v in self._known.items()],
                "known_samples": self.known_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.reward_var = None if state["reward_var"] is None else float(state["reward_var"])
        self.updates = int(state["updates"])
        self.history = [float(v) for v in state["history"]]
        self._pending = {Architecture.from_json(k).key: ([int(i) for i in d], float(lp))
                         for k, d, lp in state["pending"]}
        self._buffer = [([int(i) for i in d], float(r), float(lp))
                        for d, r, lp in state["buffer"]]
        self._known = {k: None if v is None else float(v) for k, v in state.get("known", [])}
        self.known_samples = int(state.get("known_samples", 0))
