"""Zero-cost proxies: a score of an untrained network from one batch (or none), no training.

Each proxy is a function ``proxy(model, inputs, targets, loss_fn) -> float`` that may change the
model (weights, gradients, dtype), so callers hand it a fresh copy. Definitions follow the papers
that introduced them, as NAS-Bench-Suite-Zero computes them:

- ``grad_norm``: the sum over convolution and linear layers of the L2 norm of the loss
  gradient of their weights (Abdelfattah et al., ICLR 2021).
- ``snip``: the sum over those layers of ``|w * dL/dw|`` (Lee et al., ICLR 2019).
- ``synflow``: with batch norm removed, every parameter replaced by its absolute value and the
  network in float64, the sum of ``|w * dR/dw|`` where ``R`` is the sum of the outputs for an
  all-ones input (Tanaka et al., NeurIPS 2020); data-free.
- ``jacov``: from the Jacobians of the summed outputs with respect to each input of the batch,
  ``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues ``v`` of their correlation matrix,
  ``k = 1e-5`` (Mellor et al., NAS without training, v1, 2020).
- ``nwot``: the log-determinant of the kernel counting, for each pair of inputs, the ReLU
  units where both are active or both inactive (Mellor et al., ICML 2021); "active" is a
  positive output, which for ReLU6, leaky ReLU, hard-swish, GELU, SiLU and ELU means a positive
  input as for ReLU, so networks built with those count too.
- ``params`` and ``flops``: the parameter count and the fvcore FLOPs of the network, the
  baselines every proxy must beat.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nastk.prediction.base import PredictorError

__all__ = ["PROXIES", "flops", "grad_norm", "jacov", "nwot", "params", "snip", "synflow"]

LossFn = Callable[[Any, Any], Any]
Proxy = Callable[[nn.Module, torch.Tensor, Any, LossFn], float]

#: the layers whose weights gradient-based proxies sum over
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: activations whose output is positive exactly where their input is (nwot's units)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.GELU, nn.SiLU, nn.ELU)


def _total(value: Any) -> torch.Tensor:
    """A scalar from a loss (a tensor or named terms) or from outputs of any nesting."""
    if isinstance(value, torch.Tensor):
        return value.sum()
    if isinstance(value, dict):
        parts = [_total(v) for v in value.values()]
    elif isinstance(value, (list, tuple)):
        parts = [_total(v) for v in value]
    else:
        raise PredictorError(f"zero-cost proxy: cannot sum a {type(value).__name__} output")
    parts = [p for p in parts if p is not None]
    if not parts:
        raise PredictorError("zero-cost proxy: the network returned no tensor")
    return torch.stack(parts).sum()


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    if not layers:
        raise PredictorError("zero-cost proxy: the network has no convolution or linear layer")
    return layers


def _loss_gradients(model: nn.Module, inputs: torch.Tensor, targets: Any,
                    loss_fn: LossFn) -> list[nn.Module]:
    model.train()
    model.zero_grad(set_to_none=True)
    _total(loss_fn(model(inputs), targets)).backward()
    return _weighted_layers(model)


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    layers = _loss_gradients(model, inputs, targets, loss_fn)
    return float(sum(m.weight.grad.detach().norm() for m in layers if m.weight.grad is not None))


def snip(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    layers = _loss_gradients(model, inputs, targets, loss_fn)
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in layers
                     if m.weight.grad is not None))


def _without_batchnorm(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return model


def synflow(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    net = _without_batchnorm(copy.deepcopy(model)).double()
    net.eval()  # dropout off; batch norm is gone already
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    _total(net(ones)).backward()
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum()
                     for m in _weighted_layers(net) if m.weight.grad is not None))


def jacov(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    model.train()
    model.zero_grad(set_to_none=True)
    x = inputs.clone().requires_grad_(True)
    _total(model(x)).backward()
    jac = x.grad.reshape(x.shape[0], -1).double().cpu().numpy()
    corr = np.corrcoef(jac)
    corr = np.nan_to_num(corr, nan=0.0)  # a constant Jacobian row (e.g. a dead network)
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(np.abs(v) + k) + 1.0 / (np.abs(v) + k)))


def nwot(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    n = inputs.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64)

    def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        codes = (out.detach().reshape(n, -1) > 0).double().cpu()
        kernel.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, ACTIVATIONS)]
    if not handles:
        raise PredictorError("zero-cost proxy nwot: the network has no activation module "
                             "(nn.ReLU, nn.ReLU6, ...) to read activation patterns from")
    try:
        model.train()
        with torch.no_grad():
            model(inputs)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def params(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    from nastk.evaluation.cost import count_params

    return float(count_params(model))


def flops(model: nn.Module, inputs: torch.Tensor, targets: Any, loss_fn: LossFn) -> float:
    from nastk.evaluation.cost import count_flops

    return float(count_flops(model, tuple(inputs.shape[1:])))


#: name -> proxy
PROXIES: dict[str, Proxy] = {"grad_norm": grad_norm, "snip": snip, "synflow": synflow,
                             "jacov": jacov, "nwot": nwot, "params": params, "flops": flops}
