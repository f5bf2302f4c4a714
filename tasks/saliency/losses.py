"""SalNAS's composite saliency loss (KLD, 1 - CC, 1 - sigmoid(NSS), optionally 1 - SIM) as
named, weighted terms: differentiable torch versions of the metrics, made finite for constant
maps."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nastk.tasks.saliency.distribution import EPS
from nastk.tasks.saliency.geometry import single_channel, target_parts

__all__ = ["LOSS_TERMS", "saliency_loss"]


#: the terms :func:`saliency_loss` knows
LOSS_TERMS = ("kld", "cc", "nss", "sim")
_DEFAULT_LOSS_WEIGHTS = {"kld": 1.0, "cc": 1.0, "nss": 1.0}
#: keeps square roots of zero variances differentiable in the loss (float32-representable)
_TINY = 1e-30


def _zscore_t(x: torch.Tensor, std_eps: float) -> torch.Tensor:
    """``(x - mean) / sqrt(var + std_eps * mean(x^2) + tiny)``: the population std with an eps
    relative to the map's scale (detached), so a constant map gives 0 with a finite
    gradient."""
    xc = x - x.mean()
    scale = (x * x).mean().detach()
    return xc / torch.sqrt((xc * xc).mean() + std_eps * scale + _TINY)


def saliency_loss(pred_maps: torch.Tensor, targets: Sequence[Mapping[str, Any]],
                  weights: Mapping[str, float] | None = None, *, eps: float = EPS,
                  std_eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """SalNAS's composite saliency loss as named, weighted terms, each averaged over the batch.

    ``pred_maps`` ``[N, 1, H, W]`` or ``[N, H, W]`` non-negative saliency maps (e.g. a
    sigmoid's output); ``targets`` ``N`` dicts ``{"density": [H_i, W_i], "fixations": [k_i,
    2]}`` as for :class:`SaliencyMeter` (the density may be a self-KD blend). Each prediction
    is bilinearly resized to its density's resolution (``F.interpolate``, ``align_corners=
    False``) and computed in float32 or wider. Terms (``weights`` default ``{"kld": 1, "cc": 1,
    "nss": 1}``; a weight of 0 drops the term; ``"sim"`` is optional):

    - ``kld``: ``w * mean_i sum g log(eps + g / (p + eps))`` with ``p``, ``g`` sum-normalised;
    - ``cc``: ``w * (1 - mean_i CC_i)``;
    - ``nss``: ``w * mean_i (1 - sigmoid(NSS_i))`` over the images with fixations (NSS on the
      fixated pixels, each once); 0 (still in the graph) if no image of the batch has any;
    - ``sim``: ``w * (1 - mean_i SIM_i)``.

    CC and NSS z-score with ``sqrt(var + std_eps * mean(x^2))``, an eps relative to the map's
    scale, so a constant prediction gives CC = NSS = 0 and finite gradients. Differentiable
    (torch ops only); the optimised loss is the sum of the terms. Raises ``ValueError`` for a
    negative prediction (kld/sim), an all-zero density, a fixation outside its map, unknown or
    negative weights, all weights 0, or (kld/sim) a negative density value.
    """
    w = dict(_DEFAULT_LOSS_WEIGHTS if weights is None else weights)
    unknown = sorted(set(w) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"saliency_loss: unknown terms {unknown}; known: {list(LOSS_TERMS)}")
    for k, v in w.items():
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and math.isfinite(v)
                                       and v >= 0):
            raise ValueError(f"saliency_loss: weight {k}={v!r} must be a finite number >= 0")
    active = {k: float(v) for k, v in w.items() if v != 0}
    if not active:
        raise ValueError("saliency_loss: every weight is 0, so there is no loss")
    pred = single_channel(pred_maps if isinstance(pred_maps, torch.Tensor)
                          else torch.as_tensor(pred_maps), "saliency_loss")
    if len(targets) != pred.shape[0]:
        raise ValueError(f"saliency_loss: {pred.shape[0]} predictions but {len(targets)} "
                         f"targets")
    if pred.dtype not in (torch.float32, torch.float64):
        pred = pred.float()
    if ("kld" in active or "sim" in active) and bool((pred.detach() < 0).any()):
        raise ValueError("saliency_loss: kld/sim need non-negative predictions (e.g. a "
                         "sigmoid's output), got negative values")

    terms: dict[str, list[torch.Tensor]] = {k: [] for k in active}
    has_fix: list[torch.Tensor] = []
    gsums: list[torch.Tensor] = []
    gmins: list[torch.Tensor] = []
    bad_fix: list[torch.Tensor] = []
    for i, target in enumerate(targets):
        density, fixations = target_parts(target, i, "saliency_loss")
        g = torch.as_tensor(density).to(device=pred.device, dtype=pred.dtype)
        while g.ndim > 2 and g.shape[0] == 1:
            g = g[0]
        if g.ndim != 2:
            raise ValueError(f"saliency_loss: target {i}'s density must be [H, W], got "
                             f"{tuple(g.shape)}")
        h, wd = g.shape
        p = pred[i]
        if tuple(p.shape) != (h, wd):
            p = F.interpolate(p[None, None], size=(h, wd), mode="bilinear",
                              align_corners=False)[0, 0]
        gsum = g.sum()
        gsums.append(gsum.detach())
        gmins.append(g.detach().min())
        if "kld" in active or "sim" in active:
            pn = p / p.sum().clamp_min(_TINY)
            gn = g / gsum.clamp_min(_TINY)
            if "kld" in active:
                terms["kld"].append((gn * torch.log(eps + gn / (pn + eps))).sum())
            if "sim" in active:
                terms["sim"].append(torch.minimum(pn, gn).sum())
        if "cc" in active:
            zp, zg = _zscore_t(p, std_eps), _zscore_t(g, std_eps)
            terms["cc"].append((zp * zg).mean())
        if "nss" in active:
            f = torch.as_tensor(fixations, device=pred.device)
            if f.numel() == 0:
                f = torch.zeros((0, 2), dtype=torch.long, device=pred.device)
            if f.ndim != 2 or f.shape[1] != 2:
                raise ValueError(f"saliency_loss: target {i}'s fixations must be [k, 2], got "
                                 f"{tuple(f.shape)}")
            f = f.floor().long() if f.is_floating_point() else f.long()
            outside = (f[:, 0] < 0) | (f[:, 0] >= h) | (f[:, 1] < 0) | (f[:, 1] >= wd)
            bad_fix.append(outside.any())
            lin = (f[:, 0].clamp(0, h - 1) * wd + f[:, 1].clamp(0, wd - 1))
            mask = torch.zeros(h * wd, dtype=pred.dtype, device=pred.device)
            mask = mask.index_fill(0, lin, 1.0)  # the binary fixation map: duplicates once
            n = mask.sum()
            z = _zscore_t(p, std_eps).reshape(-1)
            nss_i = (z * mask).sum() / n.clamp_min(1.0)
            terms["nss"].append(1.0 - torch.sigmoid(nss_i))
            has_fix.append((n > 0).to(pred.dtype))
    if bool((torch.stack(gsums) <= 0).any()):
        raise ValueError("saliency_loss: a target density sums to zero (all-zero map)")
    if ("kld" in active or "sim" in active) and bool((torch.stack(gmins) < 0).any()):
        raise ValueError("saliency_loss: kld/sim need non-negative target densities")
    if bad_fix and bool(torch.stack(bad_fix).any()):
        raise ValueError("saliency_loss: a fixation lies outside its density map; fixations "
                         "must be 0-based (row, col) at the density's resolution")

    out: dict[str, torch.Tensor] = {}
    for k, wk in active.items():
        v = torch.stack(terms[k])
        if k == "kld":
            out[k] = wk * v.mean()
        elif k in ("cc", "sim"):
            out[k] = wk * (1.0 - v.mean())
        else:  # nss: mean over the images with fixations
            m = torch.stack(has_fix)
            out[k] = wk * (v * m).sum() / m.sum().clamp_min(1.0)
    return out
