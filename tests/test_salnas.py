"""The salnas space: sampling and validation, extraction equal to the supernet (static and
dynamic decoder, per-stage and per-block choices), fixed output channels at the input's
resolution, elastic width, registration, a supernet training step, the documented costs."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nastk.search_spaces.salnas as salnas_pkg
from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.core.registry import SEARCH_SPACES, instantiate
from nastk.evaluation.cost import count_params
from nastk.nn.dynamic_conv import DynamicConv2d, ElasticDynamicConv2d
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from nastk.search_spaces.ofa_mbv3 import MBConvBlock, SqueezeExcite
from nastk.search_spaces.salnas import ConcatConv, SalNASBody, SalNASSpace, SalNASSupernet

PLAIN = (SalNASBody, MBConvBlock, SqueezeExcite, ConcatConv, DynamicConv2d)
ELASTIC = (ElasticConv2d, ElasticBatchNorm2d, ElasticLinear, ElasticDynamicConv2d)


def assert_plain(module: nn.Module) -> None:
    for m in module.modules():
        assert not isinstance(m, ELASTIC), m
        assert type(m) in PLAIN or type(m).__module__.startswith("torch.nn.modules."), m


def perturb(body: nn.Module) -> None:
    """Move the kernel transforms and dynamic-conv attentions away from their initial values
    (identity, near uniform), so extraction has something to get wrong."""
    with torch.no_grad():
        for m in body.modules():
            if isinstance(m, ElasticDynamicConv2d):
                m.set_temperature(0.7)
        for name, p in body.named_parameters():
            if "transforms" in name or ".fc" in name:
                p.add_(0.1 * torch.randn_like(p))


def warm_bn(body, space, x, rng) -> None:
    """Train-mode passes over the largest and random sub-networks (non-trivial running
    statistics), then eval mode."""
    body.train()
    with torch.no_grad():
        for arch in [space.largest()] + [space.sample(rng) for _ in range(3)]:
            body.set_active(arch)
            body(x * 2 + 0.5)
    body.eval()


def _div8(v: float) -> int:  # the MobileNet rounding rule, written out again
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def expected_params(space: SalNASSpace, arch, in_channels: int) -> int:
    """Parameters of the plain body for ``arch``, counted from the architecture's numbers."""
    o = space.options
    n = len(space.widths)
    per = max(o.depths) if o.per_block else 1
    stem = o.stem_channels
    total = in_channels * stem * 9 + 2 * stem
    c = stem
    widths = [arch[f"width_{i}"] for i in range(n)]
    for s, w in enumerate(widths):
        for b in range(arch["depth"][s]):
            e = arch["expand"][s * per + (b if o.per_block else 0)]
            k = arch["kernel"][s * per + (b if o.per_block else 0)]
            mid = _div8(round(c * e))
            total += c * mid + 2 * mid + mid * k * k + 2 * mid  # expand, depthwise (+ BNs)
            if o.se_stages[s]:
                r = _div8(mid // 4)
                total += 2 * mid * r + r + mid
            total += mid * w + 2 * w  # project + BN
            c = w
    # decoder (default strides: the stem and every stage are skips), coarsest level first
    skips = [widths[-1], *widths[-2::-1], stem]
    max_skips = [max(space.widths[-1]), *[max(ws) for ws in space.widths[-2::-1]], stem]
    convs = space.decoder_convs
    prev = None
    for j, skip in enumerate(skips):
        out = o.out_channels if j == len(skips) - 1 else skip
        cin = skip if prev is None else prev + skip
        if convs[j] == "static":
            total += cin * out * 9
        else:
            max_in = max_skips[0] if j == 0 else max_skips[j - 1] + max_skips[j]
            hidden, kk = max(max_in // 4, 4), o.dynamic_kernels
            total += kk * out * cin * 9 + cin * hidden + hidden + hidden * kk + kk
        total += 2 * out
        prev = out
    return total


@pytest.fixture(scope="module")
def space():
    return SalNASSpace()


# -- the space ------------------------------------------------------------------------------------
def test_dimensions_defaults_and_extremes(space):
    assert [d.name for d in space.dimensions] == [
        "width_0", "width_1", "width_2", "width_3", "depth", "expand", "kernel"]
    assert space.widths == [[16, 24], [24, 32], [40, 48], [64, 72]]
    assert space.size() == 2 ** 4 * (3 * 3 * 2) ** 4 == 1_679_616
    assert space.skip_strides == [2, 4, 8, 16, 32]
    big, small = space.largest(), space.smallest()
    assert [big[f"width_{i}"] for i in range(4)] == [24, 32, 48, 72]
    assert big["depth"] == (3,) * 4 and big["expand"] == (6,) * 4 and big["kernel"] == (5,) * 4
    assert [small[f"width_{i}"] for i in range(4)] == [16, 24, 40, 64]
    assert small["depth"] == (1,) * 4 and small["expand"] == (3,) * 4
    assert space.render(big) == "w24-32-48-72 d3-3-3-3 e6-6-6-6 k5-5-5-5"
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)]
    assert len({a.key for a in archs}) == 30
    for arch in archs:
        assert space.validate(arch) == arch
        assert space.encode(arch).shape == (space.encoding_size(),)
        mutant = space.mutate(arch, rng)
        assert space.validate(mutant) == mutant and mutant != arch


def test_validation_names_the_dimension(space):
    arch = space.largest()
    with pytest.raises(InvalidArchitectureError, match="'width_1'"):
        space.validate(arch.replace(width_1=48))  # a width of another stage
    with pytest.raises(InvalidArchitectureError, match="'kernel'"):
        space.validate(arch.replace(kernel=(5, 5, 5)))
    with pytest.raises(InvalidArchitectureError, match="'depth'"):
        space.validate(arch.replace(depth=(4, 3, 3, 3)))
    body = space.build_supernet(3)
    with pytest.raises(InvalidArchitectureError, match="'width_0'"):
        body.set_active(arch.replace(width_0=20))


def test_options_are_checked():
    with pytest.raises(ValueError, match="ascending"):
        SalNASSpace(kernels=[5, 3])
    with pytest.raises(ValueError, match="either"):
        SalNASSpace(stages=[16, 24], widths=[[16], [24]])
    with pytest.raises(ValueError, match="one entry per decoder level"):
        SalNASSpace(decoder_conv=["static", "dynamic"])
    with pytest.raises(ValueError, match="one value per stage"):
        SalNASSpace(strides=[2, 2])
    with pytest.raises(ValueError, match="width_mult: unknown field"):
        SalNASSpace(width_mult=1.0)
    custom = SalNASSpace(widths=[[8, 16], [16, 24, 32]], strides=[1, 2], stem_stride=1)
    assert custom.widths == [[8, 16], [16, 24, 32]]
    assert custom.skips == [0, 1] and custom.skip_strides == [1, 2]  # stage 0 replaces the stem


def test_registered_through_the_entry_point():
    assert SEARCH_SPACES.get("salnas") is SalNASSpace
    space = instantiate(SEARCH_SPACES, "salnas", {"depths": [1, 2], "decoder_conv": "dynamic"})
    assert isinstance(space, SalNASSpace) and space.decoder_convs == ["dynamic"] * 5
    with pytest.raises(ConfigError, match="not_an_option"):
        instantiate(SEARCH_SPACES, "salnas", {"not_an_option": 1})


# -- the networks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {},
    {"per_block": True, "decoder_conv": "dynamic"},
    {"decoder_conv": ["dynamic", "static", "dynamic", "static"],  # 4 levels: stage 0 at s2
     "strides": [1, 2, 2, 2], "kernels": [3, 5, 7]},
], ids=["default", "per_block-dynamic", "mixed-stride1"])
def test_extract_equals_supernet_exactly(options):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    space = SalNASSpace(**options)
    body = space.build_supernet(3)
    assert isinstance(body, SalNASSupernet) and body.out_channels == 16
    perturb(body)
    x = torch.randn(2, 3, 32, 48)
    warm_bn(body, space, x, rng)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]
    default_strides = "strides" not in options
    for arch in archs:
        body.set_active(arch)
        sub = body.extract(arch)
        assert isinstance(sub, SalNASBody) and not sub.training
        assert_plain(sub)
        assert sub.out_channels == 16
        with torch.no_grad():
            y, ys = body(x), sub(x)
        assert y.shape == ys.shape == (2, 16, 32, 48)
        assert (y - ys).abs().max().item() <= 1e-5, space.render(arch)
        if default_strides:
            assert count_params(sub) == expected_params(space, arch, 3), space.render(arch)
    body.set_active(archs[-1])  # extract left the last one active: the supernet still matches
    with torch.no_grad():
        assert (body(x) - body.extract(archs[-1])(x)).abs().max().item() <= 1e-5


def test_dynamic_decoder_extracts_dynamic_convs():
    space = SalNASSpace(decoder_conv="dynamic", dynamic_kernels=3)
    body = space.build_supernet(3)
    levels = list(body.decoder)
    assert all(isinstance(level.conv, ElasticDynamicConv2d) for level in levels)
    sub = body.extract(space.sample(np.random.default_rng(2)))
    convs = [level.conv for level in sub.decoder]
    assert all(isinstance(c, DynamicConv2d) and c.num_kernels == 3 for c in convs)
    static = SalNASSpace().build_supernet(3).extract(SalNASSpace().largest())
    assert all(type(level.conv) is nn.Conv2d for level in static.decoder)


def test_output_channels_and_resolution_fixed_across_subnets(space):
    body = space.build_supernet(1).eval()
    rng = np.random.default_rng(3)
    for shape in [(64, 64), (50, 70), (33, 17)]:
        x = torch.randn(2, 1, *shape)
        for arch in (space.largest(), space.smallest(), space.sample(rng)):
            body.set_active(arch)
            with torch.no_grad():
                assert body(x).shape == (2, 16, *shape)
                assert body.extract(arch)(x).shape == (2, 16, *shape)
    other = SalNASSpace(out_channels=5).build(space.smallest(), 3).eval()
    assert other.out_channels == 5
    with torch.no_grad():
        assert other(torch.randn(1, 3, 40, 40)).shape == (1, 5, 40, 40)


def test_elastic_width_changes_params(space):
    body = space.build_supernet(3)
    base = space.largest()
    counts = {}
    for stage in range(4):
        for w in space.widths[stage]:
            arch = base.replace(**{f"width_{stage}": w})
            counts[(stage, w)] = count_params(body.extract(arch))
            assert counts[(stage, w)] == expected_params(space, arch, 3)
        narrow, wide = space.widths[stage]
        assert counts[(stage, narrow)] < counts[(stage, wide)]
    body.set_active(base.replace(width_3=64))
    with torch.no_grad():
        feats = body.stage_outputs(body.stem(torch.randn(1, 3, 64, 64)))
    assert [f.shape[1] for f in feats] == [24, 32, 48, 64]


def test_reorganize_keeps_the_largest_and_exact_extraction(space):
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    body = space.build_supernet(3)
    x = torch.randn(2, 3, 32, 32)
    warm_bn(body, space, x, rng)
    body.set_active(space.largest())
    with torch.no_grad():
        before = body(x)
        narrow_arch = space.smallest().replace(expand=(4, 4, 4, 4))
        body.set_active(narrow_arch)
        narrow_before = body(x)
        body.reorganize_channels()
        body.set_active(space.largest())
        assert (body(x) - before).abs().max().item() <= 1e-5
        body.set_active(narrow_arch)
        assert not torch.allclose(body(x), narrow_before)  # narrower subnets use new channels
        assert (body(x) - body.extract(narrow_arch)(x)).abs().max().item() <= 1e-5


def test_supernet_training_step_changes_weights(space):
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    body = space.build_supernet(3)
    head = nn.Conv2d(body.out_channels, 1, 1)  # a saliency head: one logit per pixel
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    x, target = torch.randn(4, 3, 32, 32), torch.rand(4, 1, 32, 32)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    body.train()
    losses = []
    for arch in (space.largest(), space.sample(rng), space.smallest()):  # a sandwich step
        body.set_active(arch)
        loss = F.mse_loss(torch.sigmoid(head(body(x))), target)
        loss.backward()
        losses.append(loss.item())
    opt.step()
    assert all(np.isfinite(losses))
    after = body.state_dict()
    for name in ("stem.0.weight", "stages.0.0.expand_conv.weight", "stages.3.2.project.weight",
                 "decoder.0.conv.weight", "decoder.4.conv.weight", "decoder.4.bn.running_mean"):
        assert not torch.equal(before[name], after[name]), name


def test_contract_with_a_classification_head(space):
    from nastk.tasks.classification import ClassificationTask

    task = ClassificationTask(dataset="synthetic", n_samples=60, image_size=32)
    model = task.build_model(space, space.sample(np.random.default_rng(6))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *task.input_shape))
    assert out.shape == (2, task.num_classes) and torch.isfinite(out).all()


# -- the documented numbers -----------------------------------------------------------------------
def test_docstring_numbers_equal_summary(space):
    doc = " ".join(salnas_pkg.__doc__.split())
    summary = space.summary((3, 64, 64))
    assert summary["size"] == summary["distinct"] == space.size()
    assert f"{space.size():,} architectures" in doc
    for kind in ("smallest", "largest"):
        p, f = summary[kind]["params"], summary[kind]["flops"]
        text = f"{kind} {p:,} params / {f / 1e6:.2f} MFLOPs"
        assert text in doc, (text, re.findall(rf"{kind} [\d,]+ params / [\d.]+ MFLOPs", doc))
    assert summary["largest"]["flops"] < 50e6  # CPU-sized
    task_default = space.summary((3, 48, 64))  # the saliency task's synthetic default size
    for kind in ("smallest", "largest"):
        p, f = task_default[kind]["params"], task_default[kind]["flops"]
        assert f"{kind} {p:,} params / {f / 1e6:.2f} MFLOPs" in doc, (kind, p, f)
    dynamic = SalNASSpace(decoder_conv="dynamic").summary((3, 64, 64))
    for kind in ("smallest", "largest"):
        p, f = dynamic[kind]["params"], dynamic[kind]["flops"]
        assert f"{kind} {p:,} params / {f / 1e6:.2f} MFLOPs" in doc, (kind, p, f)
