"""A multi-layer perceptron regressor in torch, plus the small torch helpers the path filter
shares (a seeded, thread-limited training context and the network builder)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.cpus import THREADS_HELP, ThreadCount, Threads
from nastk.prediction.base import Predictor
from nastk.training.threads import torch_threads


@contextlib.contextmanager
def torch_context(seed: int, num_threads: ThreadCount) -> Iterator[None]:
    """Run a block with torch's global RNG seeded to ``seed`` and ``num_threads`` CPU threads,
    restoring both afterwards (so fitting a predictor never disturbs the caller's RNG)."""
    with torch.random.fork_rng(devices=[]), torch_threads(num_threads):
        torch.manual_seed(seed)
        yield


def build_mlp(n_in: int, hidden: Sequence[int], n_out: int = 1) -> nn.Sequential:
    """``Linear -> ReLU`` for every hidden width, then a linear output layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class MLPOptions(BaseModel):
    """Options of :class:`MLPPredictor`."""

    model_config = ConfigDict(extra="forbid")

    hidden: tuple[int, ...] = Field((128, 128), description="hidden layer widths")
    epochs: int = Field(60, ge=1, description="passes over the training set (at least "
                                               "min_steps optimizer steps are taken)")
    min_steps: int = Field(300, ge=0, description="lower bound on optimizer steps, so tiny "
                                                  "training sets still train")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0, description="Adam peak learning rate (cosine-annealed)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    num_threads: Threads = Field(1, description="torch CPU threads while fitting and "
                                 "predicting (one: these MLPs are too small to share out); "
                                 + THREADS_HELP)


class MLPPredictor(Predictor):
    """A torch MLP regressor (ReLU, AdamW, cosine schedule, MSE on standardized scores)."""

    Options = MLPOptions

    def _fit(self, X: np.ndarray, z: np.ndarray) -> None:
        o = self.options
        n = X.shape[0]
        batch = min(o.batch_size, n)
        per_epoch = -(-n // batch)
        steps = max(o.epochs * per_epoch, o.min_steps)
        gen = np.random.default_rng(self.seed)
        with torch_context(self.seed, o.num_threads):
            self.net = build_mlp(X.shape[1], o.hidden)
            opt = torch.optim.AdamW(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            xt = torch.from_numpy(X)
            yt = torch.from_numpy(z.astype(np.float32))
            order = np.zeros(0, dtype=np.int64)
            pos = 0
            self.net.train()
            for _ in range(steps):
                if pos + batch > order.size:
                    order, pos = gen.permutation(n), 0
                idx = torch.from_numpy(order[pos:pos + batch])
                pos += batch
                loss = nn.functional.mse_loss(self.net(xt[idx]).squeeze(-1), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            self.net.eval()

    def _predict(self, X: np.ndarray) -> np.ndarray:
        with torch_context(self.seed, self.options.num_threads), torch.no_grad():
            return self.net(torch.from_numpy(X)).squeeze(-1).double().numpy()

    def state_dict(self) -> dict[str, Any]:
        """Weights and target scaling (plain values and tensors; ``weights_only`` loadable)."""
        if not self.is_fitted:
            raise RuntimeError(f"{self.name} is not fitted; fit it before state_dict()")
        return {"net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
                "y_mean": self._y_mean, "y_scale": self._y_scale,
                "n_features": self._n_features}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` made with the same options and space."""
        self.net = build_mlp(int(state["n_features"]), self.options.hidden)
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self._y_mean = float(state["y_mean"])
        self._y_scale = float(state["y_scale"])
        self._n_features = int(state["n_features"])
        self._fitted = True
