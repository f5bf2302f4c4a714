"""Distillation losses for dense prediction: pixel-wise KD and inter-class similarity
distillation (ICSD, from AICSD).

ICSD looks at each class's *spatial* distribution: for image b and class c,
``P[b, c] = softmax(logits[b, c, :, :].flatten() / T)`` over all H*W positions. The similarity
of classes i and j is the KL divergence ``M[b, i, j] = KL(P[b, i] || P[b, j])``, a C x C matrix
per image (zero diagonal, not symmetric). The loss is the mean squared difference between the
student's and the teacher's matrices (rows L2-normalised first when ``normalize``). The
teacher's logits are detached: no gradient reaches the teacher.

Unlike AICSD's public code, the softmax runs over the flattened H*W positions (not over one
axis), the KL divergence is a true one (log-probabilities in), and the number of classes comes
from the logits, so it works for any dataset.

Scale against AICSD's code (its lambdas): its pixel KD is ``KLDivLoss()`` with the element mean
over B*C*H*W, so :func:`pixel_kd_loss` (summed over classes, averaged over pixels) is C times
it; its ICSD divides the mean squared difference by B once more, so :func:`icsd_loss` is B
times it (for one image; with several, the reference matches one batch-averaged matrix, we match
each image's). ``reference_scale: aicsd`` of ``nastk distill`` applies both factors
(:mod:`nastk.training.distill`); the pairwise feature term (``pairwise``) is there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["icsd_loss", "icsd_matrix", "pixel_kd_loss"]


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.dim() != 4:
        raise ValueError(f"{what}: expected logits of shape [B, C, H, W], got "
                         f"{tuple(student.shape)}")
    if student.shape != teacher.shape:
        raise ValueError(f"{what}: student logits {tuple(student.shape)} and teacher logits "
                         f"{tuple(teacher.shape)} differ in shape")


def icsd_matrix(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``[B, C, C]`` matrix ``M[b, i, j] = KL(P_i || P_j)`` of the per-class spatial
    distributions ``P_c = softmax(logits[b, c].flatten() / temperature)``."""
    if logits.dim() != 4:
        raise ValueError(f"icsd_matrix: expected [B, C, H, W] logits, got {tuple(logits.shape)}")
    log_p = F.log_softmax(logits.flatten(2).float() / temperature, dim=-1)  # [B, C, N]
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # sum_n P_i log P_i: [B, C]
    cross = p @ log_p.transpose(1, 2)  # [b, i, j] = sum_n P_i log P_j
    return neg_entropy.unsqueeze(-1) - cross


def icsd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
              normalize: bool = True) -> torch.Tensor:
    """Mean squared difference of the student's and the (detached) teacher's ICSD matrices,
    averaged over the batch and the C x C entries."""
    _check_pair(student, teacher, "icsd_loss")
    ms = icsd_matrix(student, temperature)
    mt = icsd_matrix(teacher.detach(), temperature)
    if normalize:
        ms = F.normalize(ms, p=2, dim=-1)
        mt = F.normalize(mt, p=2, dim=-1)
    return ((ms - mt) ** 2).mean()


def pixel_kd_loss(student: torch.Tensor, teacher: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * mean over pixels of KL(teacher || student)`` of the class distributions at each
    pixel (the teacher detached)."""
    _check_pair(student, teacher, "pixel_kd_loss")
    t = temperature
    log_s = F.log_softmax(student / t, dim=1)
    log_t = F.log_softmax(teacher.detach() / t, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1)  # [B, H, W]
    return kl.mean() * t * t
