"""Both once-for-all spaces (``ofa_mbv3``, ``ofa_mbv3_full``) as latency units
(:mod:`nastk.latency.units`): the part before the elastic stages (the stem; for
``ofa_mbv3_full`` also the input resize and the fixed first block), one MBConv block per
(position, kernel, expand ratio[, depthwise conv kind]) at the size of its input, and the final
1x1 conv.

A block's key names its widths, expand ratio, kernel, stride, activation, squeeze-excite and
input size, so blocks of equal shape share a key: in a stage every block after the first has
the same shape, so a stage needs two blocks' worth of units, not ``max_depth``. Input sizes
come from one pass of the largest network (per resolution) with hooks on the blocks: the
feature-map size of a position does not depend on the kernels, expand ratios or depths.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nastk.latency.units import LatencyUnit
from nastk.search_spaces.ofa_mbv3.full_network import resize_input
from nastk.search_spaces.ofa_mbv3.layers import ElasticMBConv

__all__ = ["ElasticUnits", "units_of"]


class _Resize(nn.Module):
    """The body's input resize (:func:`resize_input`) as a module."""

    def __init__(self, resolution: int | None) -> None:
        super().__init__()
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_input(x, self.resolution)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


class ElasticUnits:
    """The units of a once-for-all space at one input shape ``(C, H, W)``.

    ``per_block``: the space chooses kernel and expand per block (``ofa_mbv3_full``, index
    ``s * max_depth + j``) rather than per stage (``ofa_mbv3``); ``resolutions``: the searched
    input resolutions (``None``: the input as it is)."""

    def __init__(self, space: Any, input_shape: tuple[int, ...], *, per_block: bool,
                 resolutions: Sequence[int] | None) -> None:
        self.space = space
        self.input_shape = tuple(int(s) for s in input_shape)
        self.per_block = per_block
        self.resolutions: tuple[int | None, ...] = tuple(resolutions) if resolutions else (None,)
        self.supernet = space.build_supernet(self.input_shape[0]).eval()
        self.max_depth = max(self.supernet.choices["depth"])
        self.convs: tuple[str | None, ...] = tuple(self.supernet.choices.get("conv", (None,)))
        self._shapes: dict[int | None, dict[str, tuple[int, ...]]] = {}
        self._keys: dict[tuple[Any, ...], str] = {}

    # -- shapes ---------------------------------------------------------------------------------
    def _largest(self, resolution: int | None) -> dict[str, Any]:
        arch = dict(self.space.largest())
        if resolution is not None:
            arch["resolution"] = resolution
        return arch

    def shapes(self, resolution: int | None) -> dict[str, tuple[int, ...]]:
        """Input shapes (no batch) of every block (``"s.j"``) and of ``"final"``."""
        if resolution in self._shapes:
            return self._shapes[resolution]
        found: dict[str, tuple[int, ...]] = {}
        hooks = []

        def recorder(name: str) -> Any:
            def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                found[name] = tuple(int(d) for d in args[0].shape[1:])
            return hook

        for s, blocks in enumerate(self.supernet.stages):
            for j, block in enumerate(blocks):
                hooks.append(block.register_forward_pre_hook(recorder(f"{s}.{j}")))
        hooks.append(self.supernet.final.register_forward_pre_hook(recorder("final")))
        try:
            self.supernet.set_active(self._largest(resolution))
            with torch.no_grad():
                self.supernet(torch.zeros(1, *self.input_shape))
        finally:
            for h in hooks:
                h.remove()
        self._shapes[resolution] = found
        return found

    # -- keys -----------------------------------------------------------------------------------
    def _key(self, what: tuple[Any, ...], make: Callable[[], str]) -> str:
        """The key of unit ``what``, made once (a prediction looks keys up many times)."""
        found = self._keys.get(what)
        if found is None:
            found = self._keys[what] = make()
        return found

    def _pre_key(self, resolution: int | None) -> str:
        res = "" if resolution is None else f" r{resolution}"
        return self._key(("stem", resolution),
                         lambda: f"stem{res} @{_shape_text(self.input_shape)}")

    def _final_key(self, resolution: int | None) -> str:
        return self._key(("final", resolution),
                         lambda: f"final @{_shape_text(self.shapes(resolution)['final'])}")

    def _block_key(self, s: int, j: int, expand: Any, kernel: int, conv: str | None,
                   resolution: int | None) -> str:
        return self._key((s, j, expand, kernel, conv, resolution),
                         lambda: self._make_block_key(s, j, expand, kernel, conv, resolution))

    def _make_block_key(self, s: int, j: int, expand: Any, kernel: int, conv: str | None,
                        resolution: int | None) -> str:
        block: ElasticMBConv = self.supernet.stages[s][j]
        shape = self.shapes(resolution)[f"{s}.{j}"]
        parts = [f"mbconv {block.in_channels}>{block.out_channels}", f"e{expand}",
                 f"k{kernel}", f"s{block.stride}", block.activation]
        if block.se is not None:
            parts.append("se")
        if conv is not None:
            parts.append(conv)
        return " ".join(parts) + f" @{_shape_text(shape)}"

    def _choice(self, arch: Mapping[str, Any], s: int, j: int) -> tuple[Any, int, str | None]:
        i = s * self.max_depth + j if self.per_block else s
        conv = arch["conv"][s] if "conv" in arch else self.convs[0]
        return arch["expand"][i], int(arch["kernel"][i]), conv

    def keys(self, arch: Any) -> list[str]:
        resolution = arch.get("resolution") if self.resolutions != (None,) else None
        out = [self._pre_key(resolution)]
        for s, depth in enumerate(arch["depth"]):
            for j in range(int(depth)):
                out.append(self._block_key(s, j, *self._choice(arch, s, j), resolution))
        out.append(self._final_key(resolution))
        return out

    # -- units ----------------------------------------------------------------------------------
    def _pre(self, resolution: int | None) -> nn.Module:
        net = self.supernet
        parts: list[nn.Module] = []
        if resolution is not None:
            parts.append(_Resize(resolution))
        parts.append(copy.deepcopy(net.stem))
        first = getattr(net, "first_block", None)
        if first is not None:
            parts.append(first.extract())
        return nn.Sequential(*parts).eval()

    def _block(self, s: int, j: int, expand: Any, kernel: int, conv: str | None
               ) -> nn.Module:
        block: ElasticMBConv = self.supernet.stages[s][j]
        with torch.no_grad():
            block.set_active(expand, kernel, conv)
            return block.extract().eval()

    def units(self) -> list[LatencyUnit]:
        out: dict[str, LatencyUnit] = {}
        choices = self.supernet.choices
        for res in self.resolutions:
            shapes = self.shapes(res)
            out.setdefault(self._pre_key(res), LatencyUnit(
                self._pre_key(res), self.input_shape, lambda r=res: self._pre(r)))
            for s, blocks in enumerate(self.supernet.stages):
                for j in range(len(blocks)):
                    for e, k, c in itertools.product(choices["expand"], choices["kernel"],
                                                     self.convs):
                        key = self._block_key(s, j, e, k, c, res)
                        if key not in out:
                            out[key] = LatencyUnit(
                                key, shapes[f"{s}.{j}"],
                                lambda s=s, j=j, e=e, k=k, c=c: self._block(s, j, e, k, c))
            key = self._final_key(res)
            out.setdefault(key, LatencyUnit(key, shapes["final"],
                                            lambda: copy.deepcopy(self.supernet.final).eval()))
        return list(out.values())


def units_of(space: Any, input_shape: Sequence[int], *, per_block: bool,
             resolutions: Sequence[int] | None) -> ElasticUnits:
    """``space``'s :class:`ElasticUnits` at ``input_shape``, made once per space and shape (its
    supernet and the block shapes are reused by every prediction)."""
    key = tuple(int(s) for s in input_shape)
    cache: dict[tuple[int, ...], ElasticUnits] = space.__dict__.setdefault("_latency_units", {})
    if key not in cache:
        cache[key] = ElasticUnits(space, key, per_block=per_block, resolutions=resolutions)
    return cache[key]
