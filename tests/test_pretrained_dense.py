"""Pretrained bodies in the dense tasks: each task's model starts from a public checkpoint
(``init: {format: torchvision | ofa, part: body}``) with every body tensor loaded, the file's
classifier left out, and a forward pass at the task's size; and through a train evaluator, a
candidate's body starts from the file with a smaller learning rate than its new head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_backbones import public_state
from test_ofa_full import random_ofa, save_ofa

from nastk.core import registry
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.nn.supernet import SupernetModel
from nastk.search_spaces.nas_segm import NAS_SEGM_WACV_OPTIONS
from nastk.training.pretrained import InitConfig, load_init


def task(name: str, **options: object):
    defaults = {"segmentation": {"dataset": "synthetic", "n_samples": 12, "size": 64},
                "saliency": {"dataset": "synthetic", "n_samples": 12, "size": [48, 64]},
                "detection": {"dataset": "synthetic", "n_samples": 12}}[name]
    return registry.instantiate(registry.TASKS, name, {**defaults, **options})


def body_missing(report) -> list[str]:
    return [n for n in report.missing if n.startswith("body.")]


@pytest.mark.parametrize("name", ["segmentation", "saliency", "detection"])
def test_torchvision_mobilenet_v2_body_in_each_dense_task(tmp_path: Path, name: str) -> None:
    """The backbones space's MobileNetV2 under each task's FPN-style head."""
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(public_state("mobilenet_v2"), path)
    space = registry.instantiate(registry.SEARCH_SPACES, "backbones",
                                 {"bodies": ["mobilenet_v2"]})
    t = task(name)
    arch = space.sample(np.random.default_rng(0))
    model = t.build_model(space, arch)
    report = load_init(model, InitConfig.model_validate(
        {"from": str(path), "format": "torchvision"}), space=space, arch=arch, in_channels=3)
    assert body_missing(report) == [] and report.mismatched == []
    assert report.ignored == ["classifier.1.weight", "classifier.1.bias"]
    loaded = dict(model.state_dict())
    expected = public_state("mobilenet_v2")["features.0.0.weight"]
    assert any(torch.equal(v, expected) for k, v in loaded.items() if k.startswith("body."))
    with torch.no_grad():
        model.eval()(torch.randn(1, *t.input_shape))


def test_nas_segm_encoder_from_torchvision_mobilenet_v2(tmp_path: Path) -> None:
    """nas-segm's searched decoder over the paper's encoder: torchvision MobileNetV2's first
    blocks (features.0-6) loaded, the decoder new."""
    path = tmp_path / "mobilenet_v2.pth"
    state = public_state("mobilenet_v2", seed=5)
    torch.save(state, path)
    space = registry.instantiate(registry.SEARCH_SPACES, "nas_segm", NAS_SEGM_WACV_OPTIONS)
    t = task("segmentation")
    arch = space.sample(np.random.default_rng(0))
    model = t.build_model(space, arch)
    report = load_init(model, InitConfig.model_validate(
        {"from": str(path), "format": "torchvision"}), space=space, arch=arch, in_channels=3)
    assert not [n for n in report.missing if n.startswith("body.encoder.")]
    assert all(n.startswith("body.decoder.") or not n.startswith("body.")
               for n in report.missing)
    assert "features.7.conv.0.0.weight" in report.ignored
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape[-2:] == (64, 64)


@pytest.mark.parametrize("name", ["segmentation", "saliency", "detection"])
def test_ofa_supernet_body_in_each_dense_task(tmp_path: Path, name: str) -> None:
    """once-for-all's supernet as the body of each dense task's supernet (DetOFA's start, and
    SalNAS-style saliency from an ImageNet supernet): every body tensor loaded."""
    path = save_ofa(random_ofa(1.0, seed=2), tmp_path / "ofa.pth")
    space = registry.instantiate(registry.SEARCH_SPACES, "ofa_mbv3_full", {})
    t = task(name)
    model = SupernetModel(space, t)
    report = load_init(model.net, InitConfig.model_validate(
        {"from": str(path), "format": "ofa"}), space=space)
    assert body_missing(report) == [] and report.mismatched == []
    model.set_active(space.sample(np.random.default_rng(3)))
    with torch.no_grad():
        model.eval()(torch.randn(1, *t.input_shape))


def test_train_evaluator_fine_tunes_a_torchvision_body(tmp_path: Path) -> None:
    """A train evaluator with ``init: {format: torchvision}`` and ``lr_mult: {body: 0.1}``: the
    candidate's body starts from the file (checked before the first trial), then trains."""
    path = tmp_path / "resnet18.pth"
    torch.save(public_state("resnet18"), path)
    space = registry.instantiate(registry.SEARCH_SPACES, "backbones", {"bodies": ["resnet18"]})
    t = task("segmentation", n_samples=16)
    config = TrainConfig.model_validate({
        "epochs": 1, "batch_size": 8, "optimizer": "sgd", "lr": 0.01, "num_threads": 1,
        "init": {"from": str(path), "format": "torchvision"}, "lr_mult": {"body": 0.1}})
    evaluator = TrainEvaluator(t, space, config, seed=0)
    arch = space.sample(np.random.default_rng(0))
    model = t.build_model(space, arch)
    report = evaluator.initialize(model, arch)
    assert report is not None and body_missing(report) == [] and report.loaded
    assert torch.equal(model.state_dict()["body.conv1.weight"],
                       public_state("resnet18")["conv1.weight"])
    result = evaluator.evaluate(arch)
    assert result.ok, result.error
    wrong = TrainConfig.model_validate({**config.model_dump(by_alias=True),
                                        "init": {"from": str(path), "format": "ofa"}})
    with pytest.raises(Exception, match="'ofa' is not a layout search space 'backbones'"):
        TrainEvaluator(t, space, wrong, seed=0)
