"""Elastic layers: one shared weight, sliced per sampled sub-network (once-for-all style).

- :class:`ElasticConv2d`: elastic output channels (first ``k``), input channels (taken from the
  input), and kernel size (centre crop of the largest kernel, passed through a learned
  kernel-transform matrix per size step, initialised to identity); also depthwise.
- :class:`ElasticBatchNorm2d`: statistics and affine parameters of the first ``c`` channels.
- :class:`ElasticLinear`: elastic input features.

Every layer has ``extract(...)`` returning the ordinary torch layer (``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.Linear``) holding a copy of the active weights, whose output equals the
elastic layer's output for the same active setting. ``reorder_*`` helpers permute channels so
that the most important come first (width shrinking keeps the first ``k``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _transform_key(big: int, small: int) -> str:
    return f"{big}to{small}"


def check_elastic_conv(max_in: int, max_out: int, kernel_sizes: Sequence[int],
                       depthwise: bool) -> tuple[int, ...]:
    """The kernel sizes of an elastic conv, sorted and without repeats; raises ``ValueError``
    for an even or non-positive size, or a depthwise conv with ``max_in != max_out``."""
    ks = sorted(set(int(k) for k in kernel_sizes))
    if not ks or any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"kernel sizes must be odd and positive, got {list(kernel_sizes)}")
    if depthwise and max_in != max_out:
        raise ValueError(f"a depthwise conv needs max_in == max_out, got {max_in}, {max_out}")
    return tuple(ks)


def kernel_transforms(kernel_sizes: Sequence[int], enabled: bool = True) -> nn.ParameterDict:
    """One learned ``(k*k, k*k)`` matrix per kernel-size step (``"7to5"``, ``"5to3"``, ...),
    initialised to identity; empty when not ``enabled``. ``kernel_sizes`` ascending."""
    transforms = nn.ParameterDict()
    if enabled:
        for big, small in zip(kernel_sizes[::-1], kernel_sizes[-2::-1], strict=False):
            transforms[_transform_key(big, small)] = nn.Parameter(torch.eye(small * small))
    return transforms


def crop_kernel(weight: torch.Tensor, kernel_sizes: Sequence[int],
                transforms: nn.ParameterDict, kernel: int) -> torch.Tensor:
    """Shrink ``weight`` (``(..., K, K)`` with ``K`` the largest of ``kernel_sizes``, ascending)
    to ``kernel``: one size step at a time, centre crop to the next smaller size and multiply
    the flattened kernels by that step's transform matrix (when ``transforms`` has it). Any
    leading axes (output / input channels, the K kernels of a dynamic conv) share the
    transform."""
    w = weight
    size = kernel_sizes[-1]
    for nxt in reversed(kernel_sizes):
        if nxt >= size:
            continue
        if nxt < kernel:
            break
        start = (size - nxt) // 2
        w = w[..., start:start + nxt, start:start + nxt]
        key = _transform_key(size, nxt)
        if key in transforms:
            shape = w.shape
            w = (w.reshape(-1, nxt * nxt) @ transforms[key]).reshape(shape)
        size = nxt
    return w


class ElasticKernelMixin:
    """``set_active`` of the elastic convs: expects ``max_out``, ``kernel_sizes``,
    ``active_out`` and ``active_kernel`` attributes."""

    max_out: int
    kernel_sizes: tuple[int, ...]
    active_out: int
    active_kernel: int

    def set_active(self, out_channels: int | None = None, kernel: int | None = None) -> None:
        """Choose the active output channels and/or kernel size (``None`` keeps the current)."""
        if out_channels is not None:
            if not 1 <= out_channels <= self.max_out:
                raise ValueError(f"out_channels {out_channels} not in 1..{self.max_out}")
            self.active_out = out_channels
        if kernel is not None:
            if kernel not in self.kernel_sizes:
                raise ValueError(f"kernel {kernel} not in {list(self.kernel_sizes)}")
            self.active_kernel = kernel


class ElasticConv2d(ElasticKernelMixin, nn.Module):
    """A conv whose kernel size and channels are sliced from one ``(max_out, max_in, K, K)``
    weight. Input channels follow the input tensor; set ``active_out`` and ``active_kernel``
    (or call :meth:`set_active`) before the forward pass."""

    def __init__(self, max_in: int, max_out: int, kernel_sizes: Sequence[int] = (3,),
                 stride: int = 1, dilation: int = 1, depthwise: bool = False,
                 bias: bool = False, kernel_transform: bool = True) -> None:
        super().__init__()
        self.kernel_sizes = check_elastic_conv(max_in, max_out, kernel_sizes, depthwise)
        self.max_in, self.max_out = max_in, max_out
        self.max_kernel = self.kernel_sizes[-1]
        self.stride, self.dilation, self.depthwise = stride, dilation, depthwise
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, self.max_kernel,
                                               self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        self.transforms = kernel_transforms(self.kernel_sizes, kernel_transform)
        self.active_out = max_out
        self.active_kernel = self.max_kernel

    def active_weight(self, in_channels: int, out_channels: int | None = None,
                      kernel: int | None = None) -> torch.Tensor:
        """The weight of the active sub-layer: channel slice, then centre crop + transform
        from the largest kernel down to ``kernel``, one size step at a time."""
        out_c = self.active_out if out_channels is None else out_channels
        k = self.active_kernel if kernel is None else kernel
        w = self.weight[:out_c] if self.depthwise else self.weight[:out_c, :in_channels]
        return crop_kernel(w, self.kernel_sizes, self.transforms, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_c = x.size(1)
        out_c = in_c if self.depthwise else self.active_out
        w = self.active_weight(in_c, out_c)
        k = w.size(-1)
        bias = self.bias[:out_c] if self.bias is not None else None
        return F.conv2d(x, w, bias, self.stride, self.dilation * (k - 1) // 2, self.dilation,
                        in_c if self.depthwise else 1)

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the active weights (``in_channels`` is what it will
        receive; for a depthwise conv it is also its output channels)."""
        out_c = in_channels if self.depthwise else self.active_out
        w = self.active_weight(in_channels, out_c)
        k = w.size(-1)
        conv = nn.Conv2d(in_channels, out_c, k, self.stride, self.dilation * (k - 1) // 2,
                         self.dilation, groups=in_channels if self.depthwise else 1,
                         bias=self.bias is not None)
        conv.weight.copy_(w)
        if self.bias is not None:
            conv.bias.copy_(self.bias[:out_c])
        return conv.to(self.weight.device).train(self.training)

    def extra_repr(self) -> str:
        return (f"max_in={self.max_in}, max_out={self.max_out}, kernels={list(self.kernel_sizes)}"
                f", stride={self.stride}, depthwise={self.depthwise}, active_out="
                f"{self.active_out}, active_kernel={self.active_kernel}")


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the first ``c`` channels of a ``max_features`` norm (``c`` follows the
    input). Running statistics of the active slice are updated in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        if c == self.num_features:
            return super().forward(x)
        if c > self.num_features:
            raise ValueError(f"ElasticBatchNorm2d: input has {c} channels, max is "
                             f"{self.num_features}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            assert self.num_batches_tracked is not None
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or not self.track_running_stats
        rm = self.running_mean[:c] if self.running_mean is not None else None
        rv = self.running_var[:c] if self.running_var is not None else None
        return F.batch_norm(x, rm, rv, self.weight[:c] if self.affine else None,
                            self.bias[:c] if self.affine else None, use_batch, factor, self.eps)

    @torch.no_grad()
    def extract(self, channels: int) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` over the first ``channels`` channels."""
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum, self.affine,
                            self.track_running_stats)
        if self.affine:
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
        if self.track_running_stats:
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        device = self.weight.device if self.affine else self.running_mean.device
        return bn.to(device).train(self.training)


class ElasticLinear(nn.Linear):
    """A linear layer whose input features follow the input (the first ``k`` columns)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.size(-1)], self.bias)

    @torch.no_grad()
    def extract(self, in_features: int) -> nn.Linear:
        lin = nn.Linear(in_features, self.out_features, self.bias is not None)
        lin.weight.copy_(self.weight[:, :in_features])
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        return lin.to(self.weight.device).train(self.training)


# -- channel reordering (importance sorting) ----------------------------------------------------
def _is_dynamic(layer: nn.Module) -> bool:
    """An attention-mixed dynamic conv: its weight has a leading axis of K kernels."""
    return hasattr(layer, "num_kernels") and getattr(layer, "weight", None) is not None \
        and layer.weight.dim() == 5


@torch.no_grad()
def reorder_out_channels(layer: nn.Module, order: torch.Tensor) -> None:
    """Permute a layer's output channels (a conv's filters, a norm's channels)."""
    if _is_dynamic(layer):
        layer.weight.copy_(layer.weight[:, order])
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[:, order])
    elif isinstance(layer, ElasticConv2d):
        layer.weight.copy_(layer.weight[order])
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[order])
    elif isinstance(layer, nn.BatchNorm2d):
        for t in (layer.weight, layer.bias, layer.running_mean, layer.running_var):
            if t is not None:
                t.copy_(t[order])
    else:
        raise TypeError(f"cannot reorder output channels of {type(layer).__name__}")


@torch.no_grad()
def reorder_in_channels(layer: nn.Module, order: torch.Tensor) -> None:
    """Permute a layer's input channels (to follow a reordering of its producer)."""
    if getattr(layer, "depthwise", False):
        reorder_out_channels(layer, order)
    elif _is_dynamic(layer):
        layer.weight.copy_(layer.weight[:, :, order])
    elif isinstance(layer, (ElasticConv2d, nn.Linear)):
        layer.weight.copy_(layer.weight[:, order])
    else:
        raise TypeError(f"cannot reorder input channels of {type(layer).__name__}")
    fc1 = getattr(layer, "fc1", None)  # a dynamic conv's attention reads the input channels
    if _is_dynamic(layer) and isinstance(fc1, nn.Linear):
        fc1.weight.copy_(fc1.weight[:, order])


def importance_order(consumer: nn.Module) -> torch.Tensor:
    """Input channels of ``consumer`` sorted by the L1 norm of their weights, largest first."""
    w = consumer.weight.detach()
    axis = 2 if _is_dynamic(consumer) else 1
    if getattr(consumer, "depthwise", False):  # one filter per channel: the output axis
        axis -= 1
    dims = [d for d in range(w.dim()) if d != axis]
    return torch.argsort(w.abs().sum(dim=dims), descending=True, stable=True)
