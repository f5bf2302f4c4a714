"""The small_cnn search space: options, building, shapes, parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nastk import Architecture, InvalidArchitectureError
from nastk.core.errors import ConfigError
from nastk.core.registry import SEARCH_SPACES, instantiate, summary
from nastk.evaluation.cost import count_params
from nastk.search_spaces.small_cnn import SmallCNNBody, SmallCNNSpace


def _uniform(space: SmallCNNSpace, **values) -> Architecture:
    return Architecture({d.name: (values[d.name],) * space.stages for d in space.dimensions})


def test_defaults_and_dimensions():
    space = SmallCNNSpace()
    assert [d.name for d in space.dimensions] == ["depth", "width", "kernel", "expand"]
    assert space.stages == 3 and space.strides == [1, 2, 2] and space.stem_width == 16
    assert space.size() == (3 * 4 * 2 * 3) ** 3
    assert summary(SmallCNNSpace) and "\n" not in summary(SmallCNNSpace)


def test_sampled_archs_build_and_have_consistent_shapes():
    space = SmallCNNSpace()
    rng = np.random.default_rng(0)
    for i in range(12):
        arch = space.sample(rng)
        in_ch, size = (1, 8) if i % 2 else (3, 16)
        body = space.build(arch, in_ch)
        assert isinstance(body, SmallCNNBody)
        assert body.out_channels == arch["width"][-1]
        assert body.feature_channels == list(arch["width"])
        assert body.feature_strides == [1, 2, 4]
        x = torch.randn(2, in_ch, size, size)
        out = body(x)
        assert out.shape == (2, body.out_channels, size // 4, size // 4)
        feats = body.forward_features(x)
        assert len(feats) == space.stages
        for f, c, s in zip(feats, body.feature_channels, body.feature_strides, strict=True):
            assert f.shape == (2, c, size // s, size // s)
        assert torch.equal(feats[-1], out)
        n_blocks = sum(len(stage) for stage in body.stages)
        assert n_blocks == sum(arch["depth"])


def test_expand_one_skips_expansion_conv_and_residual_when_shapes_match():
    space = SmallCNNSpace()
    body = space.build(_uniform(space, depth=2, width=16, kernel=3, expand=1), 1)
    first = body.stages[0][0]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in first.modules()) == 2
    assert first.use_residual  # stem 16 -> 16 channels at stride 1
    assert not body.stages[1][0].use_residual and body.stages[1][1].use_residual
    body4 = space.build(_uniform(space, depth=1, width=16, kernel=3, expand=4), 1)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in body4.stages[0][0].modules()) == 3


def test_params_grow_with_width():
    space = SmallCNNSpace()
    counts = [count_params(space.build(_uniform(space, depth=2, width=w, kernel=3, expand=2), 1))
              for w in (8, 16, 24, 32)]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_build_validates_arch():
    space = SmallCNNSpace()
    with pytest.raises(InvalidArchitectureError, match="width"):
        space.build(_uniform(space, depth=1, width=7, kernel=3, expand=1), 1)


def test_options():
    space = SmallCNNSpace(stages=2, widths=[4, 8], kernels=[3], expansions=[1, 6])
    assert space.strides == [1, 2] and space.size() == (3 * 2 * 1 * 2) ** 2
    body = space.build(space.sample(np.random.default_rng(1)), 3)
    assert body(torch.randn(1, 3, 8, 8)).shape[-1] == 4
    assert SmallCNNSpace(strides=[2, 1, 2]).strides == [2, 1, 2]
    with pytest.raises(ConfigError):
        SmallCNNSpace(strides=[1, 2])
    with pytest.raises(ConfigError):
        SmallCNNSpace(kernels=[2, 3])
    with pytest.raises(ConfigError):
        SmallCNNSpace(widht=[8])


def test_registry_instantiation():
    assert SEARCH_SPACES.get("small_cnn") is SmallCNNSpace
    space = instantiate(SEARCH_SPACES, "small_cnn", {"stages": 4, "stem_width": 8})
    assert space.stages == 4 and space.strides == [1, 2, 2, 2]
    with pytest.raises(ConfigError, match="bogus"):
        instantiate(SEARCH_SPACES, "small_cnn", {"bogus": 1}, where="space.options")
