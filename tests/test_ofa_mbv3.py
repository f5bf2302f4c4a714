"""The once-for-all MobileNetV3 space: extraction equals the supernet, exact parameter counts,
channel reorganisation, elastic depth, validation and extremes."""

import numpy as np
import pytest
import torch
from torch import nn

from nastk.core.errors import InvalidArchitectureError
from nastk.evaluation.cost import count_params
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from nastk.nn.supernet import SupernetModel
from nastk.search_spaces.ofa_mbv3 import (
    OFA_MBV3_OPTIONS,
    MBConvBlock,
    OFAMobileNetV3Body,
    OFAMobileNetV3Space,
    SqueezeExcite,
)
from nastk.space.architecture import Architecture
from nastk.tasks.classification import ClassificationTask
from nastk.tasks.classification.task import ClassificationModel

OWN_PLAIN = (OFAMobileNetV3Body, MBConvBlock, SqueezeExcite, ClassificationModel)


def perturb_transforms(module: nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "transforms" in name:
                p.add_(0.1 * torch.randn_like(p))


def warm_bn(net: nn.Module, set_active, space, x: torch.Tensor, rng) -> None:
    """Train-mode passes over random sub-networks (and the largest), so that running
    statistics differ from their defaults, then eval mode."""
    net.train()
    with torch.no_grad():
        for arch in [space.largest()] + [space.sample(rng) for _ in range(4)]:
            set_active(arch)
            net(x * 2 + 0.5)
    net.eval()


def _div8(v: float) -> int:  # the MobileNet rounding rule, written out again
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def expected_params(space: OFAMobileNetV3Space, arch, in_channels: int) -> int:
    """Parameters of the body for ``arch``, counted from the architecture's numbers."""
    o = space.options
    stem = space.stem_channels
    total = in_channels * stem * 9 + 2 * stem
    c = stem
    for s, width in enumerate(space.widths):
        for _ in range(arch["depth"][s]):
            mid = _div8(round(c * arch["expand"][s]))
            k = arch["kernel"][s]
            if max(o.expands) != 1:  # no expand conv when every ratio is 1 (as OFA)
                total += c * mid + 2 * mid  # expand conv + BN
            total += mid * k * k + 2 * mid  # depthwise + BN
            if o.se_stages[s]:
                r = _div8(mid // 4)
                total += (mid * r + r) + (r * mid + mid)
            total += mid * width + 2 * width  # project + BN
            c = width
    return total + c * o.final_channels + 2 * o.final_channels


def assert_plain(module: nn.Module) -> None:
    for m in module.modules():
        assert not isinstance(m, (ElasticConv2d, ElasticBatchNorm2d, ElasticLinear)), m
        assert type(m) in OWN_PLAIN or type(m).__module__.startswith("torch.nn.modules."), m


@pytest.fixture(scope="module")
def space():
    return OFAMobileNetV3Space()


def test_extract_equals_supernet_and_counts_params(space):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    body = space.build_supernet(3)
    perturb_transforms(body)
    x = torch.randn(2, 3, 32, 32)
    warm_bn(body, body.set_active, space, x, rng)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(20)]
    assert len({a.key for a in archs}) == 22
    for arch in archs:
        body.set_active(arch)
        sub = body.extract(arch)
        assert isinstance(sub, OFAMobileNetV3Body) and not sub.training
        assert_plain(sub)
        assert sub.out_channels == body.out_channels == 256
        assert sub.feature_channels == body.feature_channels == [16, 24, 40, 80, 112]
        assert sub.feature_strides == body.feature_strides == [1, 2, 4, 8, 8]
        with torch.no_grad():
            y, ys = body(x), sub(x)
            assert y.shape == (2, 256, 4, 4)
            assert (y - ys).abs().max().item() <= 1e-5, arch
            for f, fs, c in zip(body.forward_features(x), sub.forward_features(x),
                                sub.feature_channels, strict=True):
                assert f.shape[1] == c
                assert (f - fs).abs().max().item() <= 1e-5, arch
        n = sum(p.numel() for p in sub.parameters())
        assert count_params(sub) == n == expected_params(space, arch, 3), arch


def test_supernet_model_extract_with_head_equals_supernet(space):
    torch.manual_seed(1)
    task = ClassificationTask(dataset="synthetic", image_size=32, n_samples=200)
    model = SupernetModel(space, task)
    perturb_transforms(model)
    rng = np.random.default_rng(1)
    x = torch.rand(3, *task.input_shape)
    warm_bn(model, model.set_active, space, x, rng)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(20)]:
        model.set_active(arch)
        sub = model.extract(arch)
        assert_plain(sub)
        with torch.no_grad():
            y = model(x)
            assert y.shape == (3, task.num_classes)
            assert (sub(x) - y).abs().max().item() <= 1e-5, arch
        head = task.num_classes * (256 + 1)
        assert count_params(sub) == expected_params(space, arch, 1) + head


def test_hand_computed_parameter_count():
    space = OFAMobileNetV3Space(stages=[8, 16], strides=[1, 2], stem_channels=8, depths=[1, 2],
                                expands=[2, 3], kernels=[3, 5], se_stages=[False, True],
                                activations=["relu", "hswish"], final_channels=32)
    arch = Architecture(depth=[1, 2], expand=[2, 3], kernel=[3, 5])
    sub = space.build(arch, 1)
    # stem 1*8*9 + 16 = 88
    # stage 0, block (8 -> 8, mid 16, k3): 8*16+32 + 16*9+32 + 16*8+16 = 480
    # stage 1, block 0 (8 -> 16, mid 24, k5, SE 8): 8*24+48 + 24*25+48 + (24*8+8 + 8*24+24)
    #          + 24*16+32 = 1720
    # stage 1, block 1 (16 -> 16, mid 48, k5, SE 16): 16*48+96 + 48*25+96
    #          + (48*16+16 + 16*48+48) + 48*16+32 = 4560
    # final 16*32 + 64 = 576            total 88 + 480 + 1720 + 4560 + 576 = 7424
    assert count_params(sub) == sum(p.numel() for p in sub.parameters()) == 7424
    assert expected_params(space, arch, 1) == 7424
    se = sub.stages[1][1].se
    assert (se.reduce.in_channels, se.reduce.out_channels) == (48, 16)
    assert sub(torch.randn(2, 1, 16, 16)).shape == (2, 32, 8, 8)


def test_reorganize_channels_keeps_largest_and_changes_narrow(space):
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    body = space.build_supernet(3)
    perturb_transforms(body)
    x = torch.randn(2, 3, 32, 32)
    warm_bn(body, body.set_active, space, x, rng)
    narrow = space.smallest()
    with torch.no_grad():
        body.set_active(space.largest())
        big_before = body(x)
        body.set_active(narrow)
        narrow_before = body(x)
        sub_before = body.extract(narrow)
        body.reorganize_channels()
        body.set_active(space.largest())
        assert (body(x) - big_before).abs().max().item() <= 1e-5
        body.set_active(narrow)
        narrow_after = body(x)
        assert (narrow_after - narrow_before).abs().max().item() > 1e-3
        sub_after = body.extract(narrow)
        assert (sub_after(x) - narrow_after).abs().max().item() <= 1e-5
    block = body.stages[2][0]
    assert not torch.equal(sub_before.stages[2][0].expand[0].weight,
                           sub_after.stages[2][0].expand[0].weight)
    importance = block.project.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])  # most important first
    se_importance = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(se_importance[:-1] >= se_importance[1:])


def test_depth_drops_blocks(space):
    body = space.build_supernet(3)
    big = space.largest()
    shallow = big.replace(depth=(4, 4, 2, 4, 4))
    sub_big, sub_shallow = body.extract(big), body.extract(shallow)
    assert [len(s) for s in sub_shallow.stages] == [4, 4, 2, 4, 4]
    assert count_params(sub_shallow) < count_params(sub_big)
    body.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        body.set_active(big)
        y_big = body(x)
        body.set_active(shallow)
        y_shallow = body(x)
    assert y_big.shape == y_shallow.shape
    assert not torch.allclose(y_big, y_shallow)


def test_largest_and_smallest_are_the_extremes(space):
    assert space.size() == 27 ** 5
    big, small = space.largest(), space.smallest()
    assert big.as_dict() == {"depth": [4] * 5, "expand": [6] * 5, "kernel": [7] * 5}
    assert small.as_dict() == {"depth": [2] * 5, "expand": [3] * 5, "kernel": [3] * 5}
    p_big, p_small = (expected_params(space, a, 3) for a in (big, small))
    rng = np.random.default_rng(3)
    for _ in range(200):
        arch = space.sample(rng)
        p = expected_params(space, arch, 3)
        assert p_small <= p <= p_big
        for name in ("depth", "expand", "kernel"):  # one stage one step up: more params
            choices = list(space[name].choices)
            values = list(arch[name])
            s = int(rng.integers(5))
            if values[s] != choices[-1]:
                values[s] = choices[choices.index(values[s]) + 1]
                assert expected_params(space, arch.replace(**{name: values}), 3) > p
    body = space.build_supernet(3)
    assert count_params(body.extract(big)) == p_big
    assert count_params(body.extract(small)) == p_small


def test_architecture_validation_errors(space):
    good = space.largest()
    with pytest.raises(InvalidArchitectureError, match=r"'kernel': stage 2 value 4 not in "
                                                      r"\[3, 5, 7\]"):
        space.validate(good.replace(kernel=(7, 7, 4, 7, 7)))
    with pytest.raises(InvalidArchitectureError, match=r"'depth': expected a list of 5 values"):
        space.validate(good.replace(depth=(4, 4)))
    with pytest.raises(InvalidArchitectureError, match=r"'expand': stage 0 value 5 not in "
                                                      r"\[3, 4, 6\]"):
        space.validate(good.replace(expand=(5, 6, 6, 6, 6)))
    with pytest.raises(InvalidArchitectureError, match=r"missing dimensions \['kernel'\]"):
        space.validate({"depth": [2] * 5, "expand": [3] * 5})
    with pytest.raises(InvalidArchitectureError, match=r"unknown dimensions \['width'\]"):
        space.validate({**good, "width": [8] * 5})
    body = space.build_supernet(3)
    with pytest.raises(InvalidArchitectureError, match=r"'kernel' of stage 1 is 9"):
        body.set_active(good.replace(kernel=(7, 9, 7, 7, 7)))
    with pytest.raises(InvalidArchitectureError, match=r"'depth' needs 5 values"):
        body.set_active(good.replace(depth=(4,)))
    task = ClassificationTask(dataset="synthetic", image_size=32, n_samples=200)
    with pytest.raises(InvalidArchitectureError, match="not in"):
        SupernetModel(space, task).set_active(good.replace(depth=(1, 4, 4, 4, 4)))


@pytest.mark.parametrize("options, message", [
    ({"kernels": [7, 5, 3]}, "strictly ascending"),
    ({"depths": [2, 2, 4]}, "strictly ascending"),
    ({"kernels": [3, 4]}, "odd"),
    ({"depths": [0, 1]}, "> 0"),
    ({"expands": []}, "at least one choice"),
    ({"strides": [1, 2]}, r"strides needs one value per stage \(5 stages"),
    ({"se_stages": [True] * 4}, "se_stages needs one value per stage"),
    ({"activations": ["relu"] * 4 + ["gelu"]}, "relu"),
    ({"stages": []}, "at least one stage"),
    ({"width_mult": 0}, "greater than 0"),
    ({"widths": [8]}, "widths: unknown field"),
])
def test_option_validation_errors(options, message):
    with pytest.raises(ValueError, match=message):
        OFAMobileNetV3Space(**options)


def test_options_shape_the_network():
    space = OFAMobileNetV3Space(width_mult=1.5, stem_stride=2, final_channels=64)
    assert space.widths == [24, 40, 64, 120, 168] and space.stem_channels == 24
    assert all(w % 8 == 0 for w in space.widths)
    body = space.build_supernet(1)
    assert body.feature_strides == [2, 4, 8, 16, 16] and body.out_channels == 64
    sub = body.extract(space.smallest())
    feats = sub.forward_features(torch.randn(1, 1, 32, 32))
    assert [f.shape[1:] for f in feats] == [(24, 16, 16), (40, 8, 8), (64, 4, 4), (120, 2, 2),
                                            (168, 2, 2)]
    three = OFAMobileNetV3Space(stages=[8, 16, 24])
    assert three.options.strides == [1, 2, 2] and three.options.se_stages == [False] * 3
    assert three.options.activations == ["relu", "hswish", "hswish"]


def test_expand_one_has_no_expand_conv_and_still_matches():
    space = OFAMobileNetV3Space(stages=[16, 16], expands=[1], depths=[1, 2], kernels=[3, 5],
                                se_stages=[True, False])
    body = space.build_supernet(1)
    perturb_transforms(body)
    body.eval()
    x = torch.randn(2, 1, 16, 16)
    for arch in (space.largest(), space.smallest()):
        sub = body.extract(arch)
        assert all(block.expand is None for stage in sub.stages for block in stage)
        with torch.no_grad():
            body.set_active(arch)
            assert (body(x) - sub(x)).abs().max().item() <= 1e-5
        assert count_params(sub) == expected_params(space, arch, 1)
    body.reorganize_channels()  # nothing elastic in width: a no-op, not an error


def test_summary_reports_size_params_and_flops():
    space = OFAMobileNetV3Space(stages=[8, 16], depths=[1, 2], final_channels=32)
    summ = space.summary((1, 16, 16))
    assert summ["size"] == space.size() == (2 * 3 * 3) ** 2
    assert summ["smallest"]["params"] == expected_params(space, space.smallest(), 1)
    assert summ["largest"]["params"] == expected_params(space, space.largest(), 1)
    assert 0 < summ["smallest"]["flops"] < summ["largest"]["flops"]
    with_head = space.summary((1, 16, 16), num_classes=10)
    assert with_head["largest"]["params"] == summ["largest"]["params"] + 10 * 33
    default = OFAMobileNetV3Space().summary((3, 32, 32))  # the figures in the module docstring
    assert (default["smallest"]["params"], default["smallest"]["flops"]) == (346_976, 12_669_952)
    assert (default["largest"]["params"], default["largest"]["flops"]) == (2_154_376, 75_067_392)
    ofa = OFAMobileNetV3Space(**OFA_MBV3_OPTIONS)
    assert ofa.widths == [24, 40, 80, 112, 160]
    assert ofa.build_supernet(3).feature_strides == [4, 8, 16, 16, 32]


def test_static_or_dynamic_conv_per_stage_extracts_exactly():
    """With conv_types [static, dynamic] each stage chooses its depthwise conv; extraction
    stays exact, and dynamic stages hold attention-mixed kernels."""
    from nastk.nn.dynamic_conv import DynamicConv2d, ElasticDynamicConv2d

    space = OFAMobileNetV3Space(stages=[16, 24, 32], depths=[1, 2], expands=[2, 4],
                                kernels=[3, 5], conv_types=["static", "dynamic"],
                                dynamic_kernels=3, final_channels=64)
    assert space["conv"].choices == ("static", "dynamic")
    assert space.largest()["conv"] == ("dynamic",) * 3
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    body = space.build_supernet(3)
    for m in body.modules():
        if isinstance(m, ElasticDynamicConv2d):
            m.set_temperature(2.0)  # a peaked attention, so the kernels really differ
    perturb_transforms(body)
    x = torch.randn(3, 3, 16, 16)
    warm_bn(body, body.set_active, space, x, rng)
    archs = [space.sample(rng) for _ in range(12)]
    archs.append(space.validate({**space.smallest(), "conv": ("static", "dynamic", "static")}))
    for arch in archs:
        body.set_active(arch)
        sub = body.extract(arch)
        dynamic = [m for m in sub.modules() if isinstance(m, DynamicConv2d)]
        n_dynamic = sum(d for d, c in zip(arch["depth"], arch["conv"], strict=True)
                        if c == "dynamic")
        assert len(dynamic) == n_dynamic
        with torch.no_grad():
            assert (body(x) - sub(x)).abs().max().item() <= 1e-5, arch
    with pytest.raises(ValueError, match="conv_types"):
        OFAMobileNetV3Space(conv_types=["dynamic", "static"])


def test_training_anneals_the_dynamic_conv_temperature():
    from nastk.nn.dynamic_conv import ElasticDynamicConv2d
    from nastk.nn.supernet import SupernetModel
    from nastk.tasks.classification import ClassificationTask
    from nastk.training.supernet import SupernetTrainer
    from nastk.training.supernet_config import SupernetTrainConfig

    space = OFAMobileNetV3Space(stages=[8, 16], depths=[1], expands=[2], kernels=[3],
                                conv_types=["dynamic"], final_channels=16)
    task = ClassificationTask(dataset="synthetic", n_samples=120, image_size=8, num_classes=3)
    model = SupernetModel(space, task)
    cfg = SupernetTrainConfig(epochs=2, batch_size=32, n_random=0, bn_calib_batches=1,
                              temperature_start=30, temperature_end=1, temperature_epochs=2)
    trainer = SupernetTrainer(model, cfg)
    trainer.train()
    temps = {m.temperature for m in model.modules() if isinstance(m, ElasticDynamicConv2d)}
    n_steps = len(trainer._loader(0))
    # the last step is at progress (2 - 1/n) / 2 of the annealing
    expected = 30 + (1 - 30) * (2 - 1 / n_steps) / 2
    assert len(temps) == 1 and temps.pop() == pytest.approx(expected, rel=1e-6)
    saved = trainer.state()["model"]
    assert any(k.endswith("softmax_temperature") for k in saved)
