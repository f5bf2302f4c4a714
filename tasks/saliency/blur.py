"""The evaluation blur of saliency maps: a separable Gaussian with reflect padding, applied by
:class:`~nastk.tasks.saliency.meter.SaliencyMeter` before scoring when ``blur_sigma`` is set."""

from __future__ import annotations

import math

import numpy as np
import torch

from nastk.tasks.saliency.geometry import MapLike

__all__ = ["gaussian_blur", "gaussian_kernel1d"]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, size: int | None = None
                      ) -> torch.Tensor:
    """The sampled 1-D Gaussian ``exp(-x^2 / (2 sigma^2))`` at integer offsets ``|x| <= radius``,
    normalised to sum 1; float64. ``radius = (size - 1) / 2`` for a kernel of ``size`` taps (odd,
    at least 3: e.g. 11, the SALICON benchmark's), else ``ceil(truncate * sigma)`` (at least
    1)."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number of pixels, got {sigma!r}")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
            raise ValueError(f"kernel size must be an odd int >= 3, got {size!r}")
        radius = (size - 1) // 2
    else:
        if not (math.isfinite(truncate) and truncate > 0):
            raise ValueError(f"truncate must be positive, got {truncate!r}")
        radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _reflect_index(n: int, radius: int) -> torch.Tensor:
    """Source indices of ``[-radius, n + radius)`` under reflection about the edge pixels
    (``d c b | a b c d | c b a``, the edge not repeated; works for any radius)."""
    i = torch.arange(-radius, n + radius)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _blur_operator(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """The ``n x n`` matrix of a 1-D convolution with ``kernel`` (odd length, centred) under
    reflect padding: row ``i`` holds the kernel's weights at the (reflected) source pixels."""
    r = (kernel.numel() - 1) // 2
    src = _reflect_index(n, r)[torch.arange(n)[:, None] + torch.arange(2 * r + 1)[None, :]]
    rows = torch.arange(n)[:, None].expand_as(src)
    op = torch.zeros(n, n, dtype=kernel.dtype)
    return op.index_put_((rows, src), kernel.expand_as(src).clone(), accumulate=True)


def gaussian_blur(saliency: MapLike, sigma: float | None, truncate: float = 4.0,
                  kernel: int | None = None) -> torch.Tensor:
    """``saliency`` (last two dims ``H, W``, any leading dims) blurred by an isotropic Gaussian
    of standard deviation ``sigma`` pixels.

    Convention: separable (columns, then rows) with :func:`gaussian_kernel1d` (sampled, sum 1,
    radius ``ceil(truncate * sigma)``); **reflect** padding, the edge pixel not repeated
    (``torch``'s ``"reflect"``, OpenCV's ``BORDER_REFLECT_101``, kornia's default), for any
    ``sigma`` on any map size. Each 1-D pass is a product with a banded ``n x n`` matrix that
    folds the padding in (``B_H @ map @ B_W^T``, fast in float64). Away from the borders the
    total is preserved. ``sigma`` None or 0 returns the input unchanged. Computed in the
    input's float dtype (a non-float input becomes float32) on its device; differentiable.

    ``kernel``: the kernel's size in taps (odd), instead of ``truncate``. SalNAS blurs its
    evaluation outputs with kornia's 11x11 kernel at ``sigma = 10.5`` (reflect padding):
    ``kernel=11, sigma=10.5`` reproduces it.
    """
    t = saliency if isinstance(saliency, torch.Tensor) else torch.as_tensor(np.asarray(saliency))
    if sigma is None or sigma == 0:
        return t
    if t.ndim < 2:
        raise ValueError(f"gaussian_blur needs a map with at least 2 dims, got shape "
                         f"{tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    k = gaussian_kernel1d(float(sigma), truncate, kernel)
    h, w = t.shape[-2:]
    bh = _blur_operator(h, k).to(dtype=t.dtype, device=t.device)
    bw = _blur_operator(w, k).to(dtype=t.dtype, device=t.device)
    return bh @ t @ bw.T
