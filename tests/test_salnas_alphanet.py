"""SalNAS's own space in the salnas search space: per-stage value sets, the elastic stem, the
input resolution, dropout and drop-connect on the largest subnet, and the ``alphanet`` preset
checked against the method's definition (configs/train_alphanet_models.yml of SalNAS)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.evaluation.cost import count_params
from nastk.search_spaces.salnas import SalNASSpace
from nastk.search_spaces.salnas.network import resize_to_width
from nastk.space.dimensions import StageList

# SalNAS's AlphaNet space, written out from the method's config (not read from the preset):
# per stage: width choices, depth choices, kernel choices, expand choices, stride, SE
ALPHANET_TABLE = [
    ([16, 24], [1, 2], [3, 5], [1], 1, False),
    ([24, 32], [3, 4, 5], [3, 5], [4, 5, 6], 2, False),
    ([32, 40], [3, 4, 5, 6], [3, 5], [4, 5, 6], 2, True),
    ([64, 72], [3, 4, 5, 6], [3, 5], [4, 5, 6], 2, False),
    ([112, 120, 128], [3, 4, 5, 6, 7, 8], [3, 5], [4, 5, 6], 1, True),
    ([192, 200, 208, 216], [3, 4, 5, 6, 7, 8], [3, 5], [6], 2, True),
    ([216, 224], [1, 2], [3, 5], [6], 1, True),
]
STEM_WIDTHS, RESOLUTIONS = [16, 24], [256, 384]


def _div8(v: float) -> int:  # the MobileNet rounding rule, written out again
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


@pytest.fixture(scope="module")
def alphanet():
    return SalNASSpace(preset="alphanet")


# -- per-stage value sets -------------------------------------------------------------------------
def small(**extra):
    opts = {"widths": [[8], [8, 16], [16]], "strides": [1, 2, 2], "stem_channels": 8,
            "stage_depths": [[1], [2, 3], [2, 3]], "stage_expands": [[1], [3, 4], [6]],
            "stage_kernels": [[3], [3, 5], [5]]}
    return SalNASSpace(**{**opts, **extra})


def test_per_stage_sets_are_validated_naming_the_stage_and_its_set():
    space = small()
    assert isinstance(space["depth"], StageList)
    assert space["depth"].stage_choices == ((1,), (2, 3), (2, 3))
    big = space.largest()
    assert big["depth"] == (1, 3, 3) and big["expand"] == (1, 4, 6) and big["kernel"] == (3, 5, 5)
    assert space.smallest()["expand"] == (1, 3, 6)
    # size: widths 1*2*1, depth 1*2*2, expand 1*2*1, kernel 1*2*1
    assert space.size() == 2 * 4 * 2 * 2
    with pytest.raises(InvalidArchitectureError, match=r"stage 0 value 2 not in \[1\]"):
        space.validate(big.replace(depth=(2, 3, 3)))
    with pytest.raises(InvalidArchitectureError, match=r"stage 2 value 4 not in \[6\]"):
        space.validate(big.replace(expand=(1, 4, 4)))  # 4 is a choice of stage 1 only
    with pytest.raises(InvalidArchitectureError, match=r"'kernel' value 3 of stage 2 not one "
                                                       r"of \[5\]"):
        space.build_supernet(3).set_active(big.replace(kernel=(3, 5, 3)))
    rng = np.random.default_rng(0)
    for _ in range(20):  # sampling and mutation stay inside every stage's set
        arch = space.sample(rng)
        assert space.validate(space.mutate(arch, rng))
    with pytest.raises(ConfigError, match="stage_depths needs one value per stage"):
        small(stage_depths=[[1], [2]])


def test_defaults_are_todays_global_lists():
    default = SalNASSpace()
    assert default["depth"].stage_choices is None and "stage_choices" not in \
        default["depth"].spec()
    same = SalNASSpace(stage_depths=[[1, 2, 3]] * 4, stage_expands=[[3, 4, 6]] * 4)
    assert same.spec() == default.spec() and same.size() == default.size() == 1_679_616
    assert not any(d.name in ("stem_width", "resolution") for d in default.dimensions)
    body = default.build_supernet(3)
    assert body.output_dropout is None and body.resolutions is None
    assert all(b.drop_connect.p == 0 for blocks in body.stages for b in blocks)


def test_per_block_per_stage_distinct_networks():
    space = small(per_block=True)
    # per stage: widths x sum over depths of (expands x kernels)^depth
    assert space.distinct_networks() == (1 * 1) * (2 * (4 ** 2 + 4 ** 3)) * (1 * (1 + 1))
    arch = space.largest()
    assert len(arch["expand"]) == 9 and arch["expand"][:3] == (1, 1, 1)


# -- the alphanet preset: size and the largest subnet ---------------------------------------------
def test_alphanet_size_is_the_hand_count(alphanet):
    widths = math.prod(len(w) for w, *_ in ALPHANET_TABLE)                    # 384
    depths = math.prod(len(d) for _, d, *_ in ALPHANET_TABLE)                 # 6,912
    kernels = math.prod(len(k) for _, _, k, *_ in ALPHANET_TABLE)             # 2^7 = 128
    expands = math.prod(len(e) for _, _, _, e, *_ in ALPHANET_TABLE)          # 3^4 = 81
    hand = len(RESOLUTIONS) * len(STEM_WIDTHS) * widths * depths * kernels * expands
    assert (widths, depths, kernels, expands) == (384, 6912, 128, 81)
    assert alphanet.size() == hand == 110_075_314_176  # about 1.1e11, as the method's count
    assert [d.name for d in alphanet.dimensions] == [
        *(f"width_{i}" for i in range(7)), "depth", "expand", "kernel", "stem_width",
        "resolution"]
    big = alphanet.largest()
    assert alphanet.render(big) == "s24 w24-32-40-72-128-216-224 d2-5-6-6-8-8-2 e1-6-6-6-6-6-6 " \
                                   "k5-5-5-5-5-5-5 r384"
    o = alphanet.options
    assert o.strides == [s for *_, s, _ in ALPHANET_TABLE]
    assert o.se_stages == [se for *_, se in ALPHANET_TABLE]
    assert set(o.activations) == {"swish"} and o.stem_activation == "swish"
    assert (o.dropout, o.drop_connect, o.drop_connect_stages) == (0.2, 0.2, 2)
    # options beside the preset override it
    assert SalNASSpace(preset="alphanet", resolutions=[256]).size() == hand // 2


def alphanet_largest_params(out_channels: int = 24) -> int:
    """Parameters of the extracted largest alphanet body, from the method's table: stem,
    MBConv blocks (no expand conv at expand 1; SE bottleneck make_divisible(mid // 4)),
    then the U-Net decoder over the skips (the last feature at each stride: stage 1 at
    stride 2 -- its stride is 1, so it replaces the stem --, stages 2, 3, 5 and 7), each level
    a 3x3 conv to its skip's width + BN, the last to ``out_channels``."""
    stem = max(STEM_WIDTHS)
    total = 3 * stem * 9 + 2 * stem
    c = stem
    outs = []
    for widths, depths, kernels, expands, _, se in ALPHANET_TABLE:
        w, k, e = max(widths), max(kernels), max(expands)
        for _ in range(max(depths)):
            if e == 1:
                mid = c
            else:
                mid = _div8(round(c * e))
                total += c * mid + 2 * mid
            total += mid * k * k + 2 * mid
            if se:
                r = _div8(mid // 4)
                total += 2 * mid * r + r + mid
            total += mid * w + 2 * w
            c = w
        outs.append(w)
    skips = [outs[6], outs[4], outs[2], outs[1], outs[0]]  # coarsest first
    prev = None
    for j, skip in enumerate(skips):
        out = out_channels if j == len(skips) - 1 else skip
        cin = skip if prev is None else prev + skip
        total += cin * out * 9 + 2 * out
        prev = out
    return total


def test_alphanet_largest_subnet_params_equal_the_hand_count(alphanet):
    body = alphanet.build_supernet(3).eval()
    net = body.extract(alphanet.largest())
    assert count_params(net) == alphanet_largest_params() == 19_309_960
    # SalNAS reports 20.98M for its SALICON model: the 1.67M (8%) difference is its final
    # expand layer (1x1 conv 224 -> 1344, the deepest skip) and its decoder, whose levels
    # output the next finer skip's width (benchmarks/RESULTS.md)
    assert abs(count_params(net) / 20.98e6 - 1) < 0.1
    x = torch.randn(1, 3, 60, 80)
    with torch.no_grad():
        y = net(x)
        body.set_active(alphanet.largest())
        torch.testing.assert_close(body(x), y, atol=1e-5, rtol=1e-4)
    assert y.shape == (1, 24, 60, 80)


# -- elastic stem ---------------------------------------------------------------------------------
def test_elastic_stem_extracts_exactly():
    torch.manual_seed(1)
    space = small(stem_widths=[8, 16], stem_activation="swish")
    body = space.build_supernet(3)
    x = torch.randn(2, 3, 32, 32)
    body.train()
    with torch.no_grad():  # non-trivial running statistics
        for arch in (space.largest(), space.smallest()):
            body.set_active(arch)
            body(x * 2 + 0.5)
    body.eval()
    arch = space.largest().replace(stem_width=8)
    net = body.extract(arch)
    assert net.stem[0].out_channels == 8 and net.stem[1].num_features == 8
    assert torch.equal(net.stem[0].weight, body.stem[0].weight[:8])
    assert torch.equal(net.stem[1].running_mean, body.stem[1].running_mean[:8])
    assert isinstance(net.stem[2], torch.nn.SiLU)
    assert net.stages[0][0].depthwise[0].in_channels == 8  # stage 0 (expand 1) reads the stem
    with torch.no_grad():
        body.set_active(arch)
        torch.testing.assert_close(body(x), net(x), atol=1e-5, rtol=1e-4)
    assert count_params(net) < count_params(body.extract(space.largest()))
    with pytest.raises(InvalidArchitectureError, match="'stem_width' is 12"):
        body.set_active(arch.replace(stem_width=12))


# -- resolution -----------------------------------------------------------------------------------
def test_resolution_resizes_the_input_width_bicubic():
    # SalNAS's rule on SALICON's 480 x 640: 256 -> 192 x 256, 384 -> 288 x 384
    assert resize_to_width(torch.zeros(1, 3, 480, 640), 256).shape[-2:] == (192, 256)
    assert resize_to_width(torch.zeros(1, 3, 480, 640), 384).shape[-2:] == (288, 384)
    x = torch.randn(2, 3, 36, 64)
    assert resize_to_width(x, 64) is x
    torch.testing.assert_close(resize_to_width(x, 32),
                               F.interpolate(x, size=(18, 32), mode="bicubic"))
    torch.manual_seed(2)
    space = small(resolutions=[32, 48])
    body = space.build_supernet(3).eval()
    seen = []
    body.stem.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    arch = space.largest().replace(resolution=32)
    with torch.no_grad():
        body.set_active(arch)
        y = body(x)
        net = body.extract(arch)
        assert net.resizes_input and net.active_resolution == 32
        torch.testing.assert_close(net(x), y)
    torch.testing.assert_close(seen[0], resize_to_width(x, 32))
    assert y.shape == (2, body.out_channels, 36, 64)  # the output at the input's own size
    assert space.largest()["resolution"] == 48 and space.smallest()["resolution"] == 32


# -- dropout and drop-connect on the largest subnet -----------------------------------------------
def test_drop_connect_rates_on_the_largest_subnet_only():
    space = small(dropout=0.2, drop_connect=0.2, drop_connect_stages=2)
    body = space.build_supernet(3)
    rates = lambda: [b.drop_connect.p for blocks in body.stages for b in blocks]  # noqa: E731
    body.set_active(space.largest())
    # 7 blocks (1 + 3 + 3); the last two stages: 0.2 * index / 7
    assert rates() == pytest.approx([0, 0.2 * 1 / 7, 0.2 * 2 / 7, 0.2 * 3 / 7, 0.2 * 4 / 7,
                                     0.2 * 5 / 7, 0.2 * 6 / 7])
    assert body.output_dropout.p == 0.2
    body.set_active(space.largest().replace(width_1=8))
    assert rates() == [0.0] * 7 and body.output_dropout.p == 0.0
    body.set_active(space.largest())
    assert rates()[1] > 0
    every = small(drop_connect=0.2).build_supernet(3)
    every.set_active(space.largest())
    assert [b.drop_connect.p for blocks in every.stages for b in blocks][1:] == pytest.approx(
        [0.2 * k / 7 for k in range(1, 7)])


def test_drop_connect_value_on_a_residual_block():
    torch.manual_seed(3)
    space = small(drop_connect=0.5)
    body = space.build_supernet(3).train()
    body.set_active(space.largest())
    block = body.stages[1][2]  # stride 1, 16 -> 16: a residual block, rate 0.5 * 3 / 7
    assert block.residual and block.drop_connect.p == pytest.approx(0.5 * 3 / 7)
    x = torch.randn(8, 16, 8, 8)
    branch = copy.deepcopy(block)
    branch.residual, branch.drop_connect.p = False, 0.0
    with torch.no_grad():
        h = branch(x)
        torch.manual_seed(10)
        y = block(x)
        torch.manual_seed(10)
        keep = 1 - block.drop_connect.p
        mask = torch.floor(keep + torch.rand(8, 1, 1, 1))
        torch.testing.assert_close(y, x + h / keep * mask)
        assert 0 < mask.sum() < 8  # some samples dropped, some kept at this seed
        block.eval()
        torch.testing.assert_close(block(x), x + branch.eval()(x))  # off in eval mode


def test_dropout_value_on_the_largest_subnet_in_training_only():
    torch.manual_seed(4)
    space = small(dropout=0.5, stem_stride=1)  # stride 1: the decoder's output at input size
    body = space.build_supernet(3).train()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        body.set_active(space.largest())
        torch.manual_seed(11)
        y = body(x)
        body.output_dropout.p = 0.0
        plain = body(x)
        torch.manual_seed(11)
        mask = F.dropout(torch.ones_like(plain), 0.5, training=True)
        torch.testing.assert_close(y, plain * mask)
        body.set_active(space.smallest())  # not the largest: no dropout
        torch.manual_seed(12)
        a = body(x)
        torch.manual_seed(13)
        torch.testing.assert_close(body(x), a)
        body.eval().set_active(space.largest())  # eval: no dropout
        torch.testing.assert_close(body(x), body(x))
        assert body.output_dropout.p == 0.5


def test_nastk_list_spaces_prints_the_presets_size_and_largest_params(capsys, monkeypatch):
    from nastk.cli.main import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list", "spaces"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("salnas: 110,075,314,176 (1.1e+11) architectures with `preset: alphanet`, largest "
            "subnet 19,309,960 params (body, no head)") in out
    assert "salnas: 1,679,616 architectures with the default options" in out


def test_the_package_docstring_states_the_presets_numbers(alphanet):
    import nastk.search_spaces.salnas as salnas_pkg

    doc = " ".join(salnas_pkg.__doc__.split())
    assert f"{alphanet.size():,} architectures" in doc
    assert f"largest {alphanet_largest_params():,} params" in doc
