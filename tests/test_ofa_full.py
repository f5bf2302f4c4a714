"""The full once-for-all MobileNetV3 space (``ofa_mbv3_full``) against once-for-all itself: the
``ofa`` package's ``OFAMobileNetV3`` (its torchvision import stubbed: it only needs it for data
loading) with random weights is saved in its own key layout, loaded with ``format: ofa``, and
every extracted sub-network gives the logits of once-for-all's ``get_active_subnet()``."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

from nastk.core import registry
from nastk.core.errors import ConfigError, NastkError
from nastk.nn.supernet import SupernetModel
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3FullSpace
from nastk.space.architecture import Architecture
from nastk.tasks.classification import ClassificationTask
from nastk.training.pretrained import InitConfig, load_init

N_CLASSES = 10


def _ofa_class() -> Any:
    """``ofa``'s ``OFAMobileNetV3``, imported with torchvision stubbed for the import only."""
    pytest.importorskip("ofa")
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "torchvision.datasets")
    stubs = {name: types.ModuleType(name) for name in names}
    for name in names[1:]:  # each submodule reachable as an attribute of its parent
        parent, _, child = name.rpartition(".")
        setattr(stubs[parent], child, stubs[name])
    stubs["torchvision.transforms"].RandomResizedCrop = type("RandomResizedCrop", (), {})  # type: ignore[attr-defined]
    with mock.patch.dict(sys.modules, stubs):
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    return OFAMobileNetV3


def random_ofa(width_mult: float, seed: int = 0) -> torch.nn.Module:
    """once-for-all's supernet with every tensor random: weights, batch-norm statistics and
    kernel-transform matrices (identity at initialisation, which would hide a transpose)."""
    torch.manual_seed(seed)
    net = _ofa_class()(n_classes=N_CLASSES, dropout_rate=0.0, width_mult=width_mult,
                       ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            if "running_var" in name:
                t.uniform_(0.5, 1.5)
            elif name.endswith("_matrix"):
                t.copy_(torch.eye(t.shape[0]) + 0.1 * torch.randn_like(t))
            else:
                t.normal_(0.0, 0.1)
    return net.eval()


def save_ofa(net: torch.nn.Module, path: Path) -> Path:
    """As once-for-all distributes its supernets: ``{"state_dict": ...}``."""
    torch.save({"state_dict": net.state_dict()}, path)
    return path


def classification(hidden: int) -> ClassificationTask:
    return registry.instantiate(registry.TASKS, "classification", {
        "dataset": "glyphs", "n_samples": 60, "image_size": 32, "channels": 3,
        "num_classes": N_CLASSES, "head_hidden": hidden})


def ofa_logits(net: torch.nn.Module, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
    net.set_active_subnet(ks=list(arch["kernel"]), e=list(arch["expand"]),
                          d=list(arch["depth"]))
    sub = net.get_active_subnet(preserve_weight=True).eval()
    with torch.no_grad():
        return sub(x)


# -- the space ----------------------------------------------------------------------------------
def test_size_is_once_for_all_count() -> None:
    space = OFAMobileNetV3FullSpace()
    per_stage = 9 ** 2 + 9 ** 3 + 9 ** 4
    assert per_stage == 7371
    assert space.size() == per_stage ** 5 == 21_758_655_492_572_485_851
    assert f"{space.size():.1e}" == "2.2e+19"
    with_res = OFAMobileNetV3FullSpace(resolutions=list(range(128, 225, 4)))
    assert with_res.size() == 25 * space.size()


def test_size_counts_networks_by_brute_force() -> None:
    """On a small version of the space, enumerating every decision and counting the distinct
    canonical architectures gives :meth:`size`."""
    space = OFAMobileNetV3FullSpace(depths=[1, 2], kernels=[3, 5], expands=[3])
    n = math.prod(space.decisions())
    assert n == 2 ** 5 * 2 ** 10
    seen = set()
    for i in range(n):
        digits, rest = [], i
        for k in space.decisions():
            digits.append(rest % k)
            rest //= k
        seen.add(space.validate(space.from_decisions(digits)).key)
    assert len(seen) == space.size() == (2 + 4) ** 5


def test_inactive_blocks_are_canonical_and_never_mutated_alone() -> None:
    space = OFAMobileNetV3FullSpace()
    rng = np.random.default_rng(3)
    arch = space.sample(rng)
    for s, d in enumerate(arch["depth"]):
        for j in range(d, 4):
            assert arch["kernel"][4 * s + j] == 3 and arch["expand"][4 * s + j] == 3
    for _ in range(30):
        child = space.mutate(arch, rng)
        assert child != arch and space.validate(child) == child
    assert all(n != arch for n in space.neighbours(arch))
    assert len({n.key for n in space.neighbours(arch)}) == len(space.neighbours(arch))
    # a change to a block that does not run is the same network
    s = next(i for i, d in enumerate(arch["depth"]) if d < 4)
    hidden = 4 * s + 3
    kernel = list(arch["kernel"])
    kernel[hidden] = 7
    assert space.validate(arch.replace(kernel=tuple(kernel))) == arch
    enc = space.encode(arch)
    assert enc.shape == (space.encoding_size(),)


@pytest.mark.parametrize("width_mult", [1.0, 1.2])
def test_channel_plan_is_once_for_all(width_mult: float) -> None:
    """Every tensor of once-for-all's supernet has a place of the same shape in ours, and ours
    has no tensor once-for-all lacks (width 1.0 and 1.2: the public supernets)."""
    space = OFAMobileNetV3FullSpace(width_mult=width_mult)
    converted = space.public_layout("ofa").convert(random_ofa(width_mult).state_dict())
    assert not converted.unmatched and not converted.skipped
    model = classification(space.feature_mix_channels).wrap(space.build_supernet(3))
    own = model.state_dict()
    assert set(converted.state) == set(own)
    assert {k: tuple(v.shape) for k, v in converted.state.items()} == \
        {k: tuple(v.shape) for k, v in own.items()}


# -- importing once-for-all's checkpoint ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("width_mult", [1.0, 1.2])
def test_imported_subnets_equal_once_for_all(tmp_path: Path, width_mult: float) -> None:
    """The acceptance test: 20 random architectures at 2 resolutions each; the sub-network
    extracted from our supernet (loaded from once-for-all's file) and the supernet itself give
    once-for-all's ``get_active_subnet()`` logits within 1e-5."""
    ofa = random_ofa(width_mult, seed=1)
    path = save_ofa(ofa, tmp_path / "ofa_mbv3.pth")
    space = OFAMobileNetV3FullSpace(width_mult=width_mult, resolutions=[128, 160])
    task = classification(space.feature_mix_channels)
    model = SupernetModel(space, task)
    report = load_init(model.net, InitConfig.model_validate(
        {"from": str(path), "format": "ofa", "part": "all"}), space=space)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == len(ofa.state_dict())
    model.eval()
    rng = np.random.default_rng(2026)
    worst = 0.0
    for _ in range(20):
        arch = space.sample(rng)
        for r in (128, 160):
            arch = arch.replace(resolution=r)
            x = torch.randn(2, 3, r, r, generator=torch.Generator().manual_seed(r))
            expected = ofa_logits(ofa, arch, x)
            with torch.no_grad():
                sub = model.extract(arch).eval()
                model.set_active(arch)
                for out in (sub(x), model(x)):
                    worst = max(worst, float((out - expected).abs().max()))
    assert worst < 1e-5


def test_plain_candidate_starts_from_the_ofa_subnet(tmp_path: Path) -> None:
    """A train evaluator's plain network of one architecture, initialised from the file, is
    once-for-all's sub-network of that architecture (the supernet is converted, then the
    sub-network extracted); the resize to the architecture's resolution happens in the body."""
    ofa = random_ofa(1.0, seed=4)
    path = save_ofa(ofa, tmp_path / "ofa.pth")
    space = OFAMobileNetV3FullSpace(resolutions=[64, 96])
    task = classification(space.feature_mix_channels)
    arch = space.sample(np.random.default_rng(0)).replace(resolution=64)
    model = task.build_model(space, arch)
    report = load_init(model, InitConfig.model_validate(
        {"from": str(path), "format": "ofa", "part": "all"}), space=space, arch=arch,
        in_channels=3)
    assert report.extracted and report.missing == [] and report.mismatched == []
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
        assert torch.allclose(out, ofa_logits(ofa, arch, x), atol=1e-5)
        # a larger input is resized to the architecture's resolution first
        big = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear",
                                              align_corners=False)
        assert model(big).shape == out.shape


def test_width_mismatch_names_the_first_bad_tensor(tmp_path: Path) -> None:
    path = save_ofa(random_ofa(1.2), tmp_path / "ofa_w12.pth")
    space = OFAMobileNetV3FullSpace(width_mult=1.0)
    model = SupernetModel(space, classification(space.feature_mix_channels))
    with pytest.raises(NastkError) as err:
        load_init(model.net, InitConfig.model_validate(
            {"from": str(path), "format": "ofa", "part": "all"}), space=space)
    msg = str(err.value)
    assert "'first_conv.conv.weight' has shape (24, 3, 3, 3)" in msg
    assert "expects (16, 3, 3, 3)" in msg


def test_body_only_load_into_a_dense_task(tmp_path: Path) -> None:
    """``part: body`` leaves once-for-all's classifier out (reported as outside the part) and
    fills every body tensor of another task's model."""
    path = save_ofa(random_ofa(1.0), tmp_path / "ofa.pth")
    space = OFAMobileNetV3FullSpace()
    task = registry.instantiate(registry.TASKS, "segmentation", {
        "dataset": "synthetic", "n_samples": 12, "size": 64})
    model = SupernetModel(space, task)
    report = load_init(model.net, InitConfig.model_validate(
        {"from": str(path), "format": "ofa"}), space=space)
    assert not [n for n in report.missing if n.startswith("body.")]
    assert sorted(report.ignored) == ["classifier.linear.bias", "classifier.linear.weight",
                                      "feature_mix_layer.conv.weight"]
    model.set_active(space.sample(np.random.default_rng(1)))
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape[-2:] == (64, 64)


def test_wrong_format_or_file_is_refused(tmp_path: Path) -> None:
    space = OFAMobileNetV3FullSpace()
    other = registry.instantiate(registry.SEARCH_SPACES, "small_cnn", {})
    path = save_ofa(random_ofa(1.0), tmp_path / "ofa.pth")
    init = InitConfig.model_validate({"from": str(path), "format": "ofa"})
    with pytest.raises(ConfigError, match="'ofa' is not a layout search space 'small_cnn'"):
        init.check(other)
    init.check(space)
    junk = tmp_path / "junk.pt"
    torch.save({"conv.weight": torch.zeros(3)}, junk)
    model = SupernetModel(space, classification(space.feature_mix_channels))
    with pytest.raises(NastkError, match="is not a once-for-all OFAMobileNetV3 checkpoint"):
        load_init(model.net, InitConfig.model_validate({"from": str(junk), "format": "ofa"}),
                  space=space)


# -- searching it by weight sharing -------------------------------------------------------------
@pytest.mark.slow
def test_nsga2_search_from_an_ofa_checkpoint_and_its_front(tmp_path: Path) -> None:
    """The acceptance run: NSGA-II over the full space (two resolutions) by weight sharing at
    64 px, straight from a (random) once-for-all checkpoint; every exported front network
    gives the supernet's outputs for its architecture (batch norm recalibrated as scored)."""
    import yaml

    from nastk.cli.commands.export import load_exported
    from nastk.cli.main import main
    from nastk.config.compose import build_components
    from nastk.config.schema import load_config

    path = save_ofa(random_ofa(1.0, seed=7), tmp_path / "ofa_mbv3_d234_e346_k357_w1.0.pth")
    config = {
        "name": "ofa_ws", "run_dir": str(tmp_path / "run"), "seed": 0,
        "space": {"name": "ofa_mbv3_full", "options": {"resolutions": [48, 64]}},
        "task": {"name": "classification", "options": {
            "dataset": "glyphs", "n_samples": 160, "image_size": 64, "channels": 3,
            "num_classes": N_CLASSES, "head_hidden": 1280}},
        "strategy": {"name": "nsga2", "options": {"population": 4}},
        "objective": {"metric": "accuracy", "costs": ["flops"]},
        "evaluator": {"kind": "supernet", "supernet": {
            "checkpoint": str(path), "format": "ofa", "calib_batches": 1,
            "calib_batch_size": 16, "eval_batch_size": 64, "num_threads": 1}},
        "budget": {"trials": 8},
    }
    cfg_path = tmp_path / "search.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    assert main(["search", str(cfg_path), "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "run"), "--front"]) == 0
    front = json.loads((tmp_path / "run" / "front" / "front.json").read_text())
    assert front["points"]
    evaluator = build_components(load_config(cfg_path), check=False).evaluator
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for point in front["points"]:
        arch = Architecture(point["arch"])
        model = load_exported(tmp_path / "run" / "front" / point["dir"] / "model.pt").eval()
        with torch.no_grad():
            expected = evaluator.predict(evaluator.model.space.validate(arch), x)
            assert torch.allclose(model(x), expected, atol=1e-5)


def test_detection_refuses_an_elastic_resolution() -> None:
    """Detection heads are laid out for the task's size: a body that resizes its input to each
    architecture's resolution is refused when the model is built, saying what to set."""
    task = registry.instantiate(registry.TASKS, "detection", {
        "dataset": "synthetic", "n_samples": 12, "head": "ssdlite"})
    with pytest.raises(ConfigError, match="leave the space's resolutions unset"):
        SupernetModel(OFAMobileNetV3FullSpace(resolutions=[48, 64]), task)
    SupernetModel(OFAMobileNetV3FullSpace(), task)  # the task's size is the resolution


def test_nastk_list_states_the_exact_size() -> None:
    from nastk.cli.commands.list_plugins import space_size

    assert space_size("ofa_mbv3_full") == "2.2e+19"
    assert space_size("ofa_mbv3_full", exact=True) == "21,758,655,492,572,485,851 (2.2e+19)"
    assert space_size("nb201") == "15,625"


def _shrunk_detofa(ofa_file: Path, runs: Path) -> dict[str, Any]:
    """examples/detofa_ofa.yaml with its checkpoint at ``ofa_file``, tiny budgets, and the loss
    as the objective."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "examples" / "detofa_ofa.yaml").read_text())
    doc["run_dir"] = str(runs)
    d = doc["defaults"]
    d["task"]["options"].update(n_samples=40)
    d["training"].update(batch_size=8, bn_calib_batches=1)
    # after one epoch on 40 images every AP is 0; the loss still ranks the paths
    d["objective"]["metric"] = "loss"
    d["evaluator"]["supernet"].update(calib_batches=1, calib_batch_size=8, eval_batch_size=16,
                                      num_threads=1)
    for stage in doc["stages"]:
        cfg = stage.get("config", {})
        if "training" in cfg:
            cfg["training"]["epochs"] = 1
        if "init" in cfg.get("training", {}) and cfg["training"]["init"].get("format") == "ofa":
            cfg["training"]["init"]["from"] = str(ofa_file)
        if "budget" in cfg:
            cfg["budget"]["trials"] = 12 if stage["name"] == "sample" else 8
        if "path_filter" in cfg:
            cfg["path_filter"]["n_samples"] = 24
        if cfg.get("strategy", {}) and isinstance(cfg["strategy"], dict):
            cfg["strategy"]["options"]["population"] = 4
        if stage["kind"] == "path_filter_fit":
            stage["options"]["buckets"] = 2
    return doc


def test_detofa_example_starts_from_an_ofa_checkpoint() -> None:
    """The recipe's chain: the detection supernet's body loads once-for-all's file, the path
    filter and NSGA-II run over per-block architectures."""
    from nastk.cli.commands.recipe import check_stage
    from nastk.pipelines.recipe import load_recipe

    root = Path(__file__).resolve().parents[1]
    plan = load_recipe(root / "examples" / "detofa_ofa.yaml", check_stage)
    raw = dict(zip([s.name for s in plan.recipe.stages], plan.raw, strict=True))
    init = raw["supernet"]["config"]["training"]["init"]
    assert init["format"] == "ofa" and init["part"] == "body"
    assert [s.kind for s in plan.recipe.stages] == [
        "supernet_train", "search", "path_filter_fit", "supernet_train", "search", "export"]


@pytest.mark.slow
def test_detofa_recipe_runs_from_a_random_ofa_checkpoint(tmp_path: Path) -> None:
    """On CPU, at 64 px, from a randomly initialised once-for-all checkpoint: every stage runs,
    the body's load reports nothing missing, and the front's networks are exported."""
    import yaml

    from nastk.cli.main import main

    ofa_file = save_ofa(random_ofa(1.0, seed=3), tmp_path / "ofa_mbv3_d234_e346_k357_w1.0")
    doc = _shrunk_detofa(ofa_file, tmp_path / "runs")
    path = tmp_path / "detofa_ofa.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["recipe", str(path), "--no-progress"]) == 0
    runs = tmp_path / "runs"
    report = json.loads(next(runs.glob("supernet*/init_report.json")).read_text())
    assert not [n for n in report["missing"] if n.startswith("body.")]
    assert report["ignored"] == ["feature_mix_layer.conv.weight", "classifier.linear.weight",
                                 "classifier.linear.bias"]
    front = json.loads(next(runs.rglob("front.json")).read_text())
    space = OFAMobileNetV3FullSpace()
    assert front["points"]
    for point in front["points"]:
        arch = space.validate(point["arch"])
        assert len(arch["kernel"]) == 20
