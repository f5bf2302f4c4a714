"""DeepLabV3+ over the ``backbones`` bodies: ASPP rates and branches, the decoder, the
segmentation task's ``head: deeplabv3plus``, torchvision weights, and the factory a
distillation loads a teacher with."""

import pytest
import torch
import torch.nn.functional as F
from test_backbones import _init, public_state
from torch import nn

from nastk.search_spaces.backbones import BackbonesSpace, build_body
from nastk.tasks.segmentation import SegmentationTask
from nastk.tasks.segmentation.deeplab import ASPP, DeepLabV3PlusDecoder, aspp_rates
from nastk.tasks.segmentation.deeplab_model import deeplabv3plus
from nastk.tasks.segmentation.task import SegmentationModel
from nastk.training.pretrained import load_init


def test_aspp_rates_follow_the_output_stride():
    assert aspp_rates(16) == (6, 12, 18)
    assert aspp_rates(8) == (12, 24, 36)
    assert aspp_rates(32) == (3, 6, 9)


@pytest.mark.parametrize("rate", [6, 12])
def test_an_atrous_branch_reads_taps_rate_pixels_apart(rate):
    """A unit impulse through the 3x3 branch of rate r with all-one weights lights exactly the
    positions r pixels apart around it (conv, then identity BN, then ReLU)."""
    aspp = ASPP(1, 1, (rate, 2 * rate, 3 * rate)).eval()
    branch = aspp.branches[1]
    nn.init.ones_(branch[0].weight)
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 20] = 1.0
    with torch.no_grad():
        y = branch(x)[0, 0]
    lit = {(int(i), int(j)) for i, j in (y > 0.5).nonzero()}
    expected = {(20 + a * rate, 20 + b * rate) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    assert lit == expected
    # BN in eval with fresh statistics: y = x / sqrt(1 + eps)
    assert float(y[20, 20]) == pytest.approx(1 / (1 + 1e-5) ** 0.5, rel=1e-6)


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def test_aspp_computes_its_definition():
    """Five branches (1x1; 3x3 at rates 6/12/18, padded to keep the size; image pooling
    upsampled back), each conv-BN-ReLU, concatenated, 1x1 conv-BN, ReLU; eval mode."""
    g = torch.Generator().manual_seed(0)
    aspp = ASPP(3, 4, aspp_rates(16)).eval()
    for m in aspp.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    x = torch.randn(2, 3, 23, 19, generator=g)
    outs = [F.relu(_bn(F.conv2d(x, aspp.branches[0][0].weight), aspp.branches[0][1]))]
    for branch, r in zip(aspp.branches[1:], (6, 12, 18), strict=True):
        outs.append(F.relu(_bn(F.conv2d(x, branch[0].weight, padding=r, dilation=r),
                               branch[1])))
    pooled = x.mean((2, 3), keepdim=True)
    pooled = F.relu(_bn(F.conv2d(pooled, aspp.pool[1][0].weight), aspp.pool[1][1]))
    outs.append(pooled.expand(-1, -1, 23, 19))
    pre_relu = _bn(F.conv2d(torch.cat(outs, 1), aspp.project[0].weight), aspp.project[1])
    with torch.no_grad():
        assert torch.allclose(aspp.project(torch.cat(outs, 1)), pre_relu, atol=1e-5)
        assert torch.allclose(aspp(x), F.relu(pre_relu), atol=1e-5)


@pytest.mark.parametrize(("name", "low", "low_ch", "high_ch"), [
    ("resnet18", 0, 64, 512), ("resnet101", 0, 256, 2048), ("mobilenet_v2", 1, 24, 320)])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_decoder_reads_the_stride4_and_last_features(name, low, low_ch, high_ch, output_stride):
    body = build_body(name, 3, output_stride)
    dec = DeepLabV3PlusDecoder(body, 256)
    assert dec.low_index == low and dec.low[0].in_channels == low_ch
    assert dec.low[0].out_channels == 48
    assert dec.aspp.branches[0][0].in_channels == high_ch
    assert dec.aspp.rates == aspp_rates(output_stride)
    assert dec.fuse[0][0].in_channels == 256 + 48 and dec.fuse[2][0].kernel_size == (3, 3)


def test_deeplab_model_shapes_params_and_the_decoder_path():
    """Output at the input's size; the decoded map at stride 4; ResNet-18 with 21 classes has
    AICSD's 16.6M parameters; the logits are the classifier on the decoder's upsampled map."""
    model = deeplabv3plus(backbone="resnet18", num_classes=21, output_stride=16).eval()
    assert sum(p.numel() for p in model.parameters()) == 16_608_181  # README: 16.6M
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        feats = model.body.forward_features(x)
        assert [f.shape[-1] for f in feats] == [17, 9, 5, 5]  # strides 4/8/16/16, ceil
        decoded = model.decoder(feats)
        assert decoded.shape == (1, 256, 17, 17)
        expected = F.interpolate(model.classifier(decoded), size=(65, 65), mode="bilinear",
                                 align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert model.feature_modules() == {"neck": "decoder", "aspp": "decoder.aspp.project"}


def test_resnet101_teacher_has_aicsds_parameter_count():
    model = deeplabv3plus(backbone="resnet101", num_classes=21, output_stride=16)
    assert sum(p.numel() for p in model.parameters()) == 59_344_309  # README: 59.3M


def test_task_head_deeplabv3plus_matches_the_factory_and_refuses_unstaged_bodies():
    task = SegmentationTask(num_classes=3, size=32, head="deeplabv3plus", head_channels=16)
    space = BackbonesSpace(output_stride=16)
    arch = space.validate({"body": "mobilenet_v2"})
    built = task.build_model(space, arch)
    assert isinstance(built, SegmentationModel) and built.decoder is not None
    made = deeplabv3plus(task, backbone="mobilenet_v2", output_stride=16, channels=16)
    # same tensor names and shapes: a checkpoint of one loads into the other
    assert {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in made.state_dict().items()}
    made.load_state_dict(built.state_dict())
    built.eval()
    made.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(built(x), made(x))
    with pytest.raises(TypeError, match=r"deeplabv3plus.*staged body"):
        SegmentationModel(nn.Conv2d(3, 8, 3), 3, "deeplabv3plus", 16)


def test_torchvision_weights_fill_the_deeplab_body(tmp_path):
    state = public_state("resnet18")
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    space = BackbonesSpace(output_stride=16)
    arch = space.validate({"body": "resnet18"})
    task = SegmentationTask(num_classes=3, size=32, head="deeplabv3plus", head_channels=16)
    model = task.build_model(space, arch)
    report = load_init(model, _init(path, part="body"), space=space, arch=arch, in_channels=3)
    assert report.mismatched == [] and report.unexpected == []
    assert all(not k.startswith("body.") for k in report.missing)  # only the head is new
    assert torch.equal(model.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_the_task_trains_a_deeplab_model_under_the_poly_schedule(tmp_path):
    """``head: deeplabv3plus`` over a ``backbones`` body trains like any candidate (here with
    ``lr_schedule: poly``), and its checkpoint loads into the factory's model: the teacher a
    distillation reads."""
    from nastk.evaluation.train import TrainConfig, TrainEvaluator

    task = SegmentationTask(num_classes=3, size=32, n_samples=24, head="deeplabv3plus",
                            head_channels=8)
    space = BackbonesSpace(output_stride=16)
    arch = space.validate({"body": "mobilenet_v2"})
    config = TrainConfig(steps=2, batch_size=4, optimizer="sgd", lr=0.01, lr_schedule="poly",
                         latency=False)
    result = TrainEvaluator(task, space, config).evaluate(arch, checkpoint=tmp_path / "t.pt")
    assert result.ok, result.error
    assert 0.0 <= result.metrics["miou"] <= 1.0
    model = deeplabv3plus(task, backbone="mobilenet_v2", channels=8)
    model.load_state_dict(torch.load(tmp_path / "t.pt", weights_only=True))


def test_named_features_of_every_head():
    """``neck`` names the head's decoded map for every head; a tap reads the fpn neck's
    finest merged map (the first of its list)."""
    from nastk.training.distill import FeatureTap

    fpn = SegmentationModel(build_body("resnet18"), 3, "fpn", 8)
    linear = SegmentationModel(nn.Conv2d(3, 8, 3, padding=1), 3, "linear", 8)
    assert fpn.feature_modules() == {"neck": "neck"}
    assert linear.feature_modules() == {"neck": "fuse"}
    tap = FeatureTap(fpn, "neck", "student")
    fpn(torch.rand(2, 3, 32, 32))
    assert tap.take().shape == (2, 8, 8, 8)  # stride 4, head_channels wide
