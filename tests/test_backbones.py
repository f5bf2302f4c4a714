"""The backbones space and torchvision layouts: ResNet-18/50/101 and MobileNetV2 bodies, their
key tables checked against torchvision's own state-dict keys and shapes (the fixtures in
tests/fixtures/torchvision, see SOURCE.md there), loading through ``init: {format:
torchvision}``, output strides, a brute-force functional reference of the forward pass, and
nas_segm's MobileNetV2 encoder reading torchvision's ``features.0-6``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nastk import Architecture, InvalidArchitectureError
from nastk.core.errors import ConfigError, NastkError
from nastk.core.registry import SEARCH_SPACES, instantiate, summary
from nastk.evaluation.cost import count_params
from nastk.nn.body import feature_info
from nastk.search_spaces.backbones import (
    BODY_PARAMS,
    BackbonesSpace,
    MobileNetV2Body,
    ResNetBody,
    build_body,
    torchvision_table,
)
from nastk.search_spaces.nas_segm import (
    MOBILENET_V2_ENCODER,
    NAS_SEGM_WACV_OPTIONS,
    NasSegmSpace,
)
from nastk.tasks.classification.task import ClassificationModel
from nastk.training.pretrained import InitConfig, load_init

FIXTURES = Path(__file__).parent / "fixtures" / "torchvision"
MODELS = ["resnet18", "resnet50", "resnet101", "mobilenet_v2"]
#: torchvision's published parameter counts (weights' meta ``num_params``), classifier included
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "resnet101": 44_549_160,
                      "mobilenet_v2": 3_504_872}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def layout(name: str) -> dict[str, list[int]]:
    """torchvision's ``{key: shape}`` of model ``name``, in its order."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def public_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout state dict of random tensors (positive running variances, small
    weights so that deep bodies stay finite)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in layout(name).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)))
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1 and not key.startswith(("fc.", "classifier.")):  # BN affine
            state[key] = (torch.rand(shape, generator=g) * 0.5 + 0.5 if key.endswith("weight")
                          else torch.randn(shape, generator=g) * 0.1)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return state


def classifier(name: str, output_stride: int = 32) -> ClassificationModel:
    return ClassificationModel(build_body(name, 3, output_stride), 1000)


# -- the fixtures themselves ---------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_fixtures_hold_torchvisions_published_parameter_counts(name):
    shapes = layout(name)
    params = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(BUFFERS))
    assert params == TORCHVISION_PARAMS[name]
    # every batch norm has its four tensors and num_batches_tracked
    n_bn = sum(k.endswith("running_mean") for k in shapes)
    assert n_bn == sum(k.endswith("num_batches_tracked") for k in shapes) > 0


# -- the tables ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_checkpoint_loads_with_nothing_missing_and_runs(name):
    state = public_state(name)
    space = BackbonesSpace()
    table = space.public_layout("torchvision", {"body": name})
    assert table.format == "torchvision" and table.model == f"torchvision {name}"
    converted = table.convert(state)
    assert converted.unmatched == [] and converted.skipped == []
    model = classifier(name)
    own = model.state_dict()
    assert set(converted.state) == set(own)  # every tensor of the model, nothing else
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in converted.state.items())
    result = model.load_state_dict(converted.state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded = model.state_dict()
    for ours, public in converted.origin.items():  # each tensor is the file's, by its name
        assert torch.equal(loaded[ours], state[public]), (ours, public)
    # spot checks of the mapping by name
    first, last = next(iter(state)), list(state)[-1]
    assert table.rename(first)[0] == ("body.conv1.weight" if name.startswith("resnet")
                                      else "body.stem.0.weight")
    assert table.rename(last)[0] == "head.bias"
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_body_params_and_torchvisions_with_the_head(name):
    body = build_body(name)
    assert count_params(body) == BODY_PARAMS[name]
    assert count_params(ClassificationModel(body, 1000)) == TORCHVISION_PARAMS[name]


def test_a_checkpoint_of_another_depth_is_not_taken_for_this_one():
    # resnet50's bottleneck conv3/bn3 have no place in resnet18's table, and resnet101's
    # layer3.6-22 none in resnet50's: they stay unmatched rather than loading silently
    c = torchvision_table("resnet18").convert(public_state("resnet50"))
    assert any(k.endswith("conv3.weight") for k in c.unmatched)
    c = torchvision_table("resnet50").convert({k: torch.zeros(0) for k in layout("resnet101")})
    assert "layer3.6.conv1.weight" in c.unmatched and "layer3.22.bn3.bias" in c.unmatched
    assert not any(k.startswith(("layer1", "layer2", "layer4")) for k in c.unmatched)
    c = torchvision_table("mobilenet_v2").convert(public_state("resnet18"))
    assert c.state == {}


def test_rules_match_whole_keys_and_map_each_tensor_once():
    for name in ["resnet18", "resnet50", "mobilenet_v2"]:
        table = torchvision_table(name)
        keys = list(layout(name))
        for rule in table.rules:  # no rule is dead: each matches at least one public key
            assert any(re.fullmatch(rule.public, k) for k in keys), (name, rule.public)
        assert table.rename("module." + keys[0]) is None  # whole-key matches only


# -- loading through init: {format: torchvision} -------------------------------------------------
def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def _init(path: Path, part: str = "all") -> InitConfig:
    return InitConfig.model_validate({"from": str(path), "format": "torchvision", "part": part})


def test_load_init_reads_a_torchvision_resnet18_with_nothing_missing(tmp_path):
    state = public_state("resnet18")
    path = _save(state, tmp_path / "resnet18-f37072fd.pth")
    space = BackbonesSpace()
    arch = space.validate({"body": "resnet18"})
    model = ClassificationModel(space.build(arch, 3), 1000)
    report = load_init(model, _init(path), space=space, arch=arch, in_channels=3)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == len(state)
    assert torch.equal(model.state_dict()["body.layer3.1.bn2.running_var"],
                       state["layer3.1.bn2.running_var"])
    assert torch.equal(model.head.weight, state["fc.weight"])


def test_a_tensor_of_the_wrong_shape_names_the_public_key_and_the_expected_shape(tmp_path):
    state = public_state("resnet18")
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    path = _save(state, tmp_path / "bad.pth")
    space = BackbonesSpace(bodies=["resnet18"])
    arch = space.validate({"body": "resnet18"})
    model = ClassificationModel(space.build(arch, 3), 1000)
    with pytest.raises(NastkError) as err:
        load_init(model, _init(path), space=space, arch=arch, in_channels=3)
    msg = str(err.value)
    assert "layer2.0.conv1.weight" in msg and "(128, 64, 3, 3)" in msg, msg


# -- shapes and strides --------------------------------------------------------------------------
EXPECTED = {
    "resnet18": ([64, 128, 256, 512], 512),
    "resnet50": ([256, 512, 1024, 2048], 2048),
    "resnet101": ([256, 512, 1024, 2048], 2048),
    "mobilenet_v2": ([16, 24, 32, 96, 320], 1280),
}
STRIDES = {
    "resnet": {32: [4, 8, 16, 32], 16: [4, 8, 16, 16], 8: [4, 8, 8, 8]},
    "mobilenet_v2": {32: [2, 4, 8, 16, 32], 16: [2, 4, 8, 16, 16], 8: [2, 4, 8, 8, 8]},
}


def _check_shapes(name: str, output_stride: int) -> None:
    body = build_body(name, 3, output_stride).eval()
    channels, out_channels = EXPECTED[name]
    strides = STRIDES["mobilenet_v2" if name == "mobilenet_v2" else "resnet"][output_stride]
    assert body.feature_channels == channels and body.out_channels == out_channels
    assert body.feature_strides == strides
    declared = [(f.channels, f.stride) for f in feature_info(body)]
    assert declared == list(zip(channels, strides, strict=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = body.forward_features(x)
        out = body(x)
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 64 // s)
                                               for c, s in zip(channels, strides, strict=True)]
    assert tuple(out.shape) == (1, out_channels, 64 // output_stride, 64 // output_stride)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
@pytest.mark.parametrize("name", MODELS)
def test_forward_features_match_declared_channels_and_strides(name, output_stride):
    _check_shapes(name, output_stride)


def _dilations(layer: nn.Sequential, conv: str) -> list[tuple[int, int]]:
    return [(getattr(b, conv).stride[0], getattr(b, conv).dilation[0]) for b in layer]


def test_output_stride_replaces_strides_by_dilation_as_torchvision_does():
    # replace_stride_with_dilation: the dilated layer's first block runs at stride 1 with the
    # dilation so far (its shortcut too), the following blocks with the dilation doubled
    body = ResNetBody("resnet50", output_stride=16)
    assert _dilations(body.layer3, "conv2") == [(2, 1)] + [(1, 1)] * 5
    assert _dilations(body.layer4, "conv2") == [(1, 1), (1, 2), (1, 2)]
    assert body.layer4[0].downsample[0].stride == (1, 1)
    body = ResNetBody("resnet50", output_stride=8)
    assert _dilations(body.layer2, "conv2") == [(2, 1)] + [(1, 1)] * 3
    assert _dilations(body.layer3, "conv2") == [(1, 1)] + [(1, 2)] * 5
    assert _dilations(body.layer4, "conv2") == [(1, 2), (1, 4), (1, 4)]
    for conv in ("conv1", "conv2"):  # basic blocks: both 3x3 convs take the block's dilation
        assert _dilations(ResNetBody("resnet18", output_stride=8).layer4, conv) == [(1, 2),
                                                                                    (1, 4)]
    # MobileNetV2 at 8: the 64- and 160-channel rows give up their strides
    mb = MobileNetV2Body(output_stride=8)
    dw = [(b.depthwise[0].stride[0], b.depthwise[0].dilation[0]) for b in mb.stages[3]]
    assert dw == [(1, 1), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2), (1, 2)]
    dw = [(b.depthwise[0].stride[0], b.depthwise[0].dilation[0]) for b in mb.stages[4]]
    assert dw == [(1, 2), (1, 4), (1, 4), (1, 4)]
    # the weights' shapes do not depend on the output stride
    for name in ("resnet18", "mobilenet_v2"):
        shapes = {k: v.shape for k, v in build_body(name).state_dict().items()}
        assert shapes == {k: v.shape for k, v in build_body(name, 3, 8).state_dict().items()}


def test_dilated_bodies_load_the_same_checkpoint(tmp_path):
    state = public_state("mobilenet_v2")
    converted = torchvision_table("mobilenet_v2").convert(state)
    model = classifier("mobilenet_v2", output_stride=16)
    assert model.load_state_dict(converted.state, strict=True).missing_keys == []
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


# -- a reference independent of the implementation -----------------------------------------------
def _bn(x: torch.Tensor, w: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    return F.batch_norm(x, w[f"{p}.running_mean"], w[f"{p}.running_var"], w[f"{p}.weight"],
                        w[f"{p}.bias"], training=False, eps=1e-5)


def reference_resnet18(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet-18 written out with torch.nn.functional on the public names."""
    x = F.relu(_bn(F.conv2d(x, w["conv1.weight"], stride=2, padding=3), w, "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = F.relu(_bn(F.conv2d(x, w[f"{p}.conv1.weight"], stride=stride, padding=1),
                             w, f"{p}.bn1"))
            out = _bn(F.conv2d(out, w[f"{p}.conv2.weight"], padding=1), w, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in w:
                x = _bn(F.conv2d(x, w[f"{p}.downsample.0.weight"], stride=stride), w,
                        f"{p}.downsample.1")
            x = F.relu(out + x)
    x = x.mean(dim=(2, 3))
    return F.linear(x, w["fc.weight"], w["fc.bias"])


def reference_mobilenet_v2(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's MobileNetV2 written out with torch.nn.functional on the public names,
    from its inverted-residual setting (t, c, n, s)."""
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]

    def cba(x, p, stride=1, groups=1, act=True):
        k = w[f"{p}.0.weight"] if f"{p}.0.weight" in w else w[f"{p}.weight"]
        y = F.conv2d(x, k, stride=stride, padding=(k.shape[-1] - 1) // 2, groups=groups)
        y = _bn(y, w, f"{p}.1" if f"{p}.0.weight" in w else p)
        return F.relu6(y) if act else y

    x = cba(x, "features.0", stride=2)
    i = 1
    for t, c, n, s in setting:
        for b in range(n):
            stride = s if b == 0 else 1
            inp = x
            parts = ["conv.0", "conv.1", "conv.2", "conv.3"] if t != 1 else \
                [None, "conv.0", "conv.1", "conv.2"]
            y = x if t == 1 else cba(x, f"features.{i}.{parts[0]}")
            y = cba(y, f"features.{i}.{parts[1]}", stride=stride, groups=y.shape[1])
            y = F.conv2d(y, w[f"features.{i}.{parts[2]}.weight"])
            y = _bn(y, w, f"features.{i}.{parts[3]}")
            x = inp + y if stride == 1 and inp.shape[1] == c else y
            i += 1
    x = cba(x, f"features.{i}")
    x = x.mean(dim=(2, 3))
    return F.linear(x, w["classifier.1.weight"], w["classifier.1.bias"])


@pytest.mark.parametrize(("name", "reference"), [("resnet18", reference_resnet18),
                                                  ("mobilenet_v2", reference_mobilenet_v2)])
def test_loaded_model_computes_what_torchvisions_architecture_computes(name, reference):
    state = public_state(name, seed=1)
    model = classifier(name).eval()
    model.load_state_dict(torchvision_table(name).convert(state).state, strict=True)
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, ref = model(x), reference(state, x)
    assert ours.shape == ref.shape == (2, 1000)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-5), (ours - ref).abs().max()


# -- the space -----------------------------------------------------------------------------------
def test_space_options_dimension_and_build():
    space = instantiate(SEARCH_SPACES, "backbones", {})
    assert isinstance(space, BackbonesSpace) and summary(BackbonesSpace)
    assert [d.name for d in space.dimensions] == ["body"] and space.size() == 4
    assert space.public_formats == ("torchvision",)
    small = BackbonesSpace(bodies=["mobilenet_v2", "resnet18"], output_stride=16)
    assert small.size() == 2
    rng = np.random.default_rng(0)
    assert {small.sample(rng)["body"] for _ in range(20)} == {"mobilenet_v2", "resnet18"}
    body = small.build(Architecture({"body": "resnet18"}), 1)  # one input channel
    assert body.conv1.in_channels == 1 and body.feature_strides[-1] == 16
    with torch.no_grad():
        assert body(torch.randn(1, 1, 32, 32)).shape == (1, 512, 2, 2)
    with pytest.raises(InvalidArchitectureError, match="'body'"):
        small.validate({"body": "resnet50"})
    with pytest.raises(ConfigError, match="bodies"):
        BackbonesSpace(bodies=["resnet34"])
    with pytest.raises(ConfigError, match="output_stride"):
        BackbonesSpace(output_stride=4)


def test_space_public_layout_needs_torchvision_and_an_architecture():
    space = BackbonesSpace()
    with pytest.raises(ConfigError, match="ofa"):
        space.public_layout("ofa", {"body": "resnet18"})
    with pytest.raises(ConfigError, match="architecture"):
        space.public_layout("torchvision")
    with pytest.raises(InvalidArchitectureError):
        BackbonesSpace(bodies=["resnet18"]).public_layout("torchvision", {"body": "resnet50"})


def test_a_one_channel_body_refuses_the_rgb_stem_naming_it(tmp_path):
    path = _save(public_state("mobilenet_v2"), tmp_path / "mobilenet_v2-b0353104.pth")
    space = BackbonesSpace()
    arch = space.validate({"body": "mobilenet_v2"})
    model = ClassificationModel(space.build(arch, 1), 1000, in_channels=1)
    with pytest.raises(NastkError, match=r"features\.0\.0\.weight.*\(32, 1, 3, 3\)"):
        load_init(model, _init(path), space=space, arch=arch, in_channels=1)


# -- nas_segm's encoder --------------------------------------------------------------------------
class _Holder(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body


def _wacv_body(space: NasSegmSpace) -> nn.Module:
    return space.build(space.sample(np.random.default_rng(0)), 3)


def test_nas_segm_wacv_encoder_loads_torchvision_mobilenet_v2_features_0_to_6():
    space = NasSegmSpace(**NAS_SEGM_WACV_OPTIONS)
    assert space.public_formats == ("torchvision",)
    state = public_state("mobilenet_v2")
    converted = space.public_layout("torchvision").convert(state)
    assert converted.unmatched == []
    assert set(converted.skipped) == {k for k in state
                                      if k.startswith("classifier.")
                                      or int(k.split(".")[1]) >= 7}
    model = _Holder(_wacv_body(space))
    own = model.state_dict()
    encoder = {k for k in own if k.startswith("body.encoder.")}
    assert set(converted.state) == encoder  # the whole encoder, from features.0-6
    result = model.load_state_dict(converted.state, strict=False)
    # (torch does not list a batch norm's missing num_batches_tracked)
    decoder = {k for k in set(own) - encoder if not k.endswith("num_batches_tracked")}
    assert result.unexpected_keys == [] and set(result.missing_keys) == decoder
    assert torch.equal(model.body.encoder.stages[2][2].block[6].weight,
                       state["features.6.conv.2.weight"])
    # the same weights make the same stride-8 map as the MobileNetV2 backbone's first stages
    mb = classifier("mobilenet_v2").eval()
    mb.load_state_dict(torchvision_table("mobilenet_v2").convert(state).state)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        x4, x8 = model.body.encoder.eval()(x)
        ref = mb.body.forward_features(x)
    assert torch.allclose(x4, ref[1], atol=1e-5) and torch.allclose(x8, ref[2], atol=1e-5)


def test_nas_segm_load_init_leaves_only_the_decoder_missing(tmp_path):
    path = _save(public_state("mobilenet_v2"), tmp_path / "mobilenet_v2-b0353104.pth")
    space = NasSegmSpace(**NAS_SEGM_WACV_OPTIONS)
    arch = space.sample(np.random.default_rng(1))
    model = _Holder(space.build(arch, 3))
    report = load_init(model, _init(path, "body"), space=space, arch=arch, in_channels=3)
    assert not any(k.startswith("body.encoder.") for k in report.missing), report.missing
    assert report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == sum(k.startswith("body.encoder.") for k in model.state_dict())


def test_nas_segm_other_encoders_say_which_options_fit():
    with pytest.raises(ConfigError, match="NAS_SEGM_WACV_OPTIONS") as err:
        NasSegmSpace().public_layout("torchvision")
    assert "stem_channels" in str(err.value) and "encoder_expands: [1, 6, 6]" in str(err.value)
    with pytest.raises(ConfigError, match="ofa"):
        NasSegmSpace(**NAS_SEGM_WACV_OPTIONS).public_layout("ofa")
    # encoder_expand 6 is the same encoder as encoder_expands [1, 6, 6]
    same = {**NAS_SEGM_WACV_OPTIONS, "encoder_expand": 6}
    same.pop("encoder_expands")
    assert NasSegmSpace(**same).public_layout("torchvision").model.startswith("torchvision")
    assert MOBILENET_V2_ENCODER["encoder_depths"] == [1, 2, 3]


def test_nas_segm_encoder_expands_options():
    space = NasSegmSpace(encoder_expands=[2, 3, 4], encoder_widths=[8, 8, 16],
                         encoder_depths=[1, 1, 1], stem_channels=8, decoder_channels=8,
                         agg_channels=8)
    enc = _wacv_body(space).encoder
    assert [s[0].block[0].out_channels for s in enc.stages] == [16, 24, 32]  # cin * ratio
    with pytest.raises(ConfigError, match="encoder_expands"):
        NasSegmSpace(encoder_expands=[1, 6])
    # unset, it is left out of the options' dump (stored runs keep their identity)
    assert "encoder_expands" not in NasSegmSpace().options.model_dump()
    assert NasSegmSpace(**NAS_SEGM_WACV_OPTIONS).options.model_dump()["encoder_expands"] == \
        [1, 6, 6]
