"""Attention-mixed dynamic convolution (CondConv / "Dynamic Convolution", Chen et al. 2020).

A dynamic conv holds ``K`` parallel kernels ``W_1..W_K`` (and optional biases). For every input
sample a small attention branch -- global average pool, ``Linear(in -> hidden)``, ReLU,
``Linear(hidden -> K)``, ``softmax(logits / temperature)`` -- gives weights ``a_1..a_K`` (they sum
to 1) and the sample is convolved with the aggregated kernel ``sum_k a_k W_k``. All samples run
in one grouped convolution: the batch is folded into the channel axis (input
``(1, B*C_in, H, W)``, weight ``(B*C_out, C_in/groups, k, k)``, ``groups = B*groups``), so there
is no Python loop over the batch.

- :class:`ElasticDynamicConv2d`: the elastic (supernet) version, sliced exactly like
  :class:`~nastk.nn.elastic.ElasticConv2d` -- active output channels (first ``k``),
  input channels from the input (the attention's first layer takes the first ``C_in`` of its
  input features), kernel size by centre crop + learned per-step transform matrices (shared by
  the ``K`` kernels), depthwise mode.
- :class:`DynamicConv2d`: the plain layer, what ``ElasticDynamicConv2d.extract`` returns; usable
  on its own.
- :func:`anneal_temperature`: the paper's softmax-temperature schedule (30 -> 1, linear in
  training progress); a high temperature keeps the attention near uniform early in training so
  all kernels get gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.elastic import (
    ElasticKernelMixin,
    ElasticLinear,
    check_elastic_conv,
    crop_kernel,
    kernel_transforms,
)

__all__ = ["DynamicConv2d", "ElasticDynamicConv2d", "anneal_temperature", "dynamic_conv2d"]


def _hidden_size(in_features: int, reduction: int) -> int:
    return max(in_features // reduction, 4)


def _check_temperature(t: float) -> float:
    t = float(t)
    if not t > 0:
        raise ValueError(f"temperature must be positive, got {t}")
    return t


def dynamic_conv2d(x: torch.Tensor, attention: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None, stride: int = 1, padding: int = 0,
                   dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """Convolve each sample with its own mixture of ``K`` kernels, in one grouped conv.

    ``x``: ``(B, C_in, H, W)``; ``attention``: ``(B, K)``; ``weight``:
    ``(K, C_out, C_in // groups, k, k)``; ``bias``: ``(K, C_out)`` or ``None``. Returns
    ``(B, C_out, H', W')`` where sample ``b`` is ``conv2d(x[b], sum_k attention[b, k] * weight[k],
    sum_k attention[b, k] * bias[k])``.
    """
    b, c_in, h, w = x.shape
    k_num, c_out = weight.shape[:2]
    kernel_shape = weight.shape[2:]
    # (B, K) @ (K, C_out * C_in/g * k * k) -> one aggregated kernel per sample.
    agg = (attention @ weight.reshape(k_num, -1)).reshape(b * c_out, *kernel_shape)
    agg_bias = (attention @ bias).reshape(b * c_out) if bias is not None else None
    y = F.conv2d(x.reshape(1, b * c_in, h, w), agg, agg_bias, stride, padding, dilation,
                 b * groups)
    return y.reshape(b, c_out, y.size(-2), y.size(-1))


class DynamicConv2d(nn.Module):
    """A plain dynamic convolution: ``K`` kernels mixed per sample by a softmax attention.

    ``weight`` has shape ``(K, out_channels, in_channels // groups, k, k)`` (``groups`` is
    ``in_channels`` for a depthwise conv, else 1); ``bias`` (if any) ``(K, out_channels)``. The
    attention is ``fc2(relu(fc1(mean_hw(x))))`` with ``fc1: in_channels -> hidden`` and
    ``fc2: hidden -> K``, then ``softmax(logits / temperature)``. Padding keeps the spatial size
    (``dilation * (k - 1) // 2``) like the elastic convs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 num_kernels: int = 4, stride: int = 1, dilation: int = 1,
                 depthwise: bool = False, bias: bool = False, hidden: int | None = None,
                 reduction: int = 4, temperature: float = 30.0) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd and positive, got {kernel_size}")
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        if depthwise and in_channels != out_channels:
            raise ValueError(f"a depthwise conv needs in_channels == out_channels, got "
                             f"{in_channels}, {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.num_kernels = kernel_size, num_kernels
        self.stride, self.dilation, self.depthwise = stride, dilation, depthwise
        self.groups = in_channels if depthwise else 1
        self.padding = dilation * (kernel_size - 1) // 2
        # a buffer, so a checkpoint keeps the annealed value
        self.register_buffer("softmax_temperature",
                             torch.tensor(_check_temperature(temperature)))
        hidden = _hidden_size(in_channels, reduction) if hidden is None else hidden
        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels,
                                               in_channels // self.groups, kernel_size,
                                               kernel_size))
        for k in range(num_kernels):
            nn.init.kaiming_normal_(self.weight.data[k], mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(num_kernels, out_channels)) if bias else None
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)

    @property
    def temperature(self) -> float:
        """The attention softmax temperature."""
        return float(self.softmax_temperature)

    def set_temperature(self, t: float) -> None:
        """Set the attention softmax temperature (must be positive)."""
        self.softmax_temperature.fill_(_check_temperature(t))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample kernel weights, shape ``(B, K)``; each row sums to 1."""
        logits = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))
        return torch.softmax(logits / self.temperature, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dynamic_conv2d(x, self.attention(x), self.weight, self.bias, self.stride,
                              self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"num_kernels={self.num_kernels}, stride={self.stride}, dilation="
                f"{self.dilation}, depthwise={self.depthwise}, bias={self.bias is not None}, "
                f"hidden={self.fc1.out_features}, temperature={self.temperature:g}")


class ElasticDynamicConv2d(ElasticKernelMixin, nn.Module):
    """An elastic dynamic conv: ``K`` kernels sliced from one ``(K, max_out, max_in, Kmax, Kmax)``
    weight, mixed per sample by a softmax attention.

    Elastic exactly like :class:`~nastk.nn.elastic.ElasticConv2d`: input channels follow
    the input tensor (the attention's first linear layer uses the first ``C_in`` columns), the
    output channels are the first ``active_out`` and the kernel is a centre crop of the largest
    one passed through a learned transform matrix per size step (identity-initialised, shared by
    the ``K`` kernels). Set ``active_out`` / ``active_kernel`` (or call :meth:`set_active`)
    before the forward pass. In depthwise mode ``max_in == max_out`` and the output channels
    follow the input.
    """

    def __init__(self, max_in: int, max_out: int, kernel_sizes: Sequence[int] = (3,),
                 num_kernels: int = 4, stride: int = 1, dilation: int = 1,
                 depthwise: bool = False, bias: bool = False, kernel_transform: bool = True,
                 reduction: int = 4, temperature: float = 30.0) -> None:
        super().__init__()
        self.kernel_sizes = check_elastic_conv(max_in, max_out, kernel_sizes, depthwise)
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        self.max_in, self.max_out = max_in, max_out
        self.max_kernel = self.kernel_sizes[-1]
        self.num_kernels = num_kernels
        self.stride, self.dilation, self.depthwise = stride, dilation, depthwise
        # a buffer, so a checkpoint keeps the annealed value
        self.register_buffer("softmax_temperature",
                             torch.tensor(_check_temperature(temperature)))
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(num_kernels, max_out, in_per_group,
                                               self.max_kernel, self.max_kernel))
        for k in range(num_kernels):
            nn.init.kaiming_normal_(self.weight.data[k], mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(num_kernels, max_out)) if bias else None
        self.transforms = kernel_transforms(self.kernel_sizes, kernel_transform)
        hidden = _hidden_size(max_in, reduction)
        self.fc1 = ElasticLinear(max_in, hidden)
        self.fc2 = nn.Linear(hidden, num_kernels)
        self.active_out = max_out
        self.active_kernel = self.max_kernel

    @property
    def temperature(self) -> float:
        """The attention softmax temperature."""
        return float(self.softmax_temperature)

    def set_temperature(self, t: float) -> None:
        """Set the attention softmax temperature (must be positive)."""
        self.softmax_temperature.fill_(_check_temperature(t))

    def active_weight(self, in_channels: int, out_channels: int | None = None,
                      kernel: int | None = None) -> torch.Tensor:
        """The ``(K, out, in_per_group, k, k)`` kernels of the active sub-layer: channel slice,
        then centre crop + transform from the largest kernel down to ``kernel``, one size step
        at a time (the same transform for all ``K`` kernels)."""
        out_c = self.active_out if out_channels is None else out_channels
        k = self.active_kernel if kernel is None else kernel
        w = self.weight[:, :out_c] if self.depthwise else self.weight[:, :out_c, :in_channels]
        return crop_kernel(w, self.kernel_sizes, self.transforms, k)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample kernel weights, shape ``(B, K)``; each row sums to 1."""
        logits = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))
        return torch.softmax(logits / self.temperature, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_c = x.size(1)
        if in_c > self.max_in:
            raise ValueError(f"ElasticDynamicConv2d: input has {in_c} channels, max is "
                             f"{self.max_in}")
        out_c = in_c if self.depthwise else self.active_out
        w = self.active_weight(in_c, out_c)
        k = w.size(-1)
        bias = self.bias[:, :out_c] if self.bias is not None else None
        return dynamic_conv2d(x, self.attention(x), w, bias, self.stride,
                              self.dilation * (k - 1) // 2, self.dilation,
                              in_c if self.depthwise else 1)

    @torch.no_grad()
    def extract(self, in_channels: int) -> DynamicConv2d:
        """A plain :class:`DynamicConv2d` with copies of the active kernels (transform already
        applied), the attention's active input slice and the current temperature
        (``in_channels`` is what it will receive; for a depthwise conv it is also its output
        channels)."""
        if not 1 <= in_channels <= self.max_in:
            raise ValueError(f"in_channels {in_channels} not in 1..{self.max_in}")
        out_c = in_channels if self.depthwise else self.active_out
        w = self.active_weight(in_channels, out_c)
        layer = DynamicConv2d(in_channels, out_c, w.size(-1), self.num_kernels, self.stride,
                              self.dilation, self.depthwise, self.bias is not None,
                              hidden=self.fc1.out_features, temperature=self.temperature)
        layer.weight.copy_(w)
        if self.bias is not None:
            layer.bias.copy_(self.bias[:, :out_c])
        layer.fc1.weight.copy_(self.fc1.weight[:, :in_channels])
        layer.fc1.bias.copy_(self.fc1.bias)
        layer.fc2.load_state_dict(self.fc2.state_dict())
        return layer.to(device=self.weight.device, dtype=self.weight.dtype).train(self.training)

    def extra_repr(self) -> str:
        return (f"max_in={self.max_in}, max_out={self.max_out}, kernels={list(self.kernel_sizes)}"
                f", num_kernels={self.num_kernels}, stride={self.stride}, depthwise="
                f"{self.depthwise}, hidden={self.fc1.out_features}, temperature="
                f"{self.temperature:g}, active_out={self.active_out}, active_kernel="
                f"{self.active_kernel}")


def anneal_temperature(model: nn.Module, progress: float, start: float = 30.0,
                       end: float = 1.0) -> float:
    """Set the temperature of every dynamic conv in ``model`` by linear interpolation.

    ``progress`` (clamped to ``[0, 1]``) is the fraction of the annealing period done; the
    temperature is ``start + (end - start) * progress``, so ``start`` at 0 and ``end`` at 1 and
    after. The Dynamic Convolution paper anneals 30 -> 1 over the first 10 epochs: call with
    ``progress = min(epoch / 10, 1)`` (or a per-step fraction). Applies to
    :class:`ElasticDynamicConv2d` and :class:`DynamicConv2d`; returns the temperature set.
    """
    p = min(max(float(progress), 0.0), 1.0)
    t = _check_temperature(start + (end - start) * p)
    for m in model.modules():
        if isinstance(m, (ElasticDynamicConv2d, DynamicConv2d)):
            m.set_temperature(t)
    return t
