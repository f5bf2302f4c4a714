"""The cost table of ``ofa_mbv3_full`` (:mod:`nastk.search_spaces.ofa_mbv3.full_costs`) against
fvcore on built networks: the bodies of random architectures (widths 1.0 and 1.2, with and
without the resolution dimension, inputs resized up and down), the task models the engine costs
with it (:class:`nastk.evaluation.cost.TableCosts`: classification with once-for-all's
classifier, detection), and the engine's users: the path filter's cost functions, the
weight-sharing evaluator's recorded costs, ``constrained_space``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nastk import IntRange, SearchSpace
from nastk.config.compose import constrained_space
from nastk.core.errors import InvalidArchitectureError
from nastk.evaluation.cost import TableCosts, count_flops, count_params
from nastk.evaluation.weight_sharing import WeightSharingConfig, WeightSharingEvaluator
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter import model_cost_fn, subnet_cost_fn
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3FullSpace
from nastk.search_spaces.ofa_mbv3.full_costs import resized_size
from nastk.search_spaces.ofa_mbv3.full_network import resize_input
from nastk.tasks.classification import ClassificationTask
from nastk.tasks.detection import DetectionTask

#: (space options, input shapes): no resolution dimension; resolutions below, at and above the
#: input's shorter side (resize down, none, up), non-square and single-channel inputs
CASES: list[tuple[dict[str, Any], list[tuple[int, int, int]]]] = [
    ({"width_mult": 1.0}, [(3, 64, 64), (3, 70, 50)]),
    ({"width_mult": 1.2}, [(3, 64, 64)]),
    ({"width_mult": 1.0, "resolutions": [64, 96, 128]}, [(3, 96, 96), (3, 80, 100)]),
    ({"width_mult": 1.2, "resolutions": [64, 96, 128]}, [(3, 96, 96), (1, 101, 64)]),
]


def fvcore_costs(net: Any, shape: tuple[int, ...]) -> dict[str, float]:
    return {"params": float(count_params(net)), "flops": float(count_flops(net, shape))}


def check_bodies(n_archs: int, seed: int) -> int:
    """``n_archs`` random architectures spread over :data:`CASES`: the table's body costs equal
    fvcore's on the extracted body; returns how many were checked."""
    rng = np.random.default_rng(seed)
    pairs = [(opts, shape) for opts, shapes in CASES for shape in shapes]
    checked = 0
    for i, (opts, shape) in enumerate(pairs):
        space = OFAMobileNetV3FullSpace(**opts)
        supernet = space.build_supernet(shape[0]).eval()
        n = n_archs // len(pairs) + (1 if i < n_archs % len(pairs) else 0)
        archs = [space.smallest(), space.largest()] if i == 0 else []
        archs += [space.sample(rng) for _ in range(n - len(archs))]
        for arch in archs:
            want = fvcore_costs(supernet.extract(arch).eval(), shape)
            assert space.body_costs(arch, shape) == want, (opts, shape, arch)
            checked += 1
    return checked


def test_table_equals_fvcore_on_random_bodies_quick():
    assert check_bodies(12, seed=1) == 12


@pytest.mark.slow
def test_table_equals_fvcore_on_50_random_bodies():
    assert check_bodies(50, seed=0) == 50


def test_resized_size_is_what_the_body_resizes_to():
    import torch

    for h, w, r in [(64, 64, 96), (80, 100, 64), (101, 64, 96), (50, 70, 50), (30, 90, 45)]:
        assert resized_size(h, w, r) == tuple(resize_input(torch.zeros(1, 1, h, w), r).shape[-2:])
    assert resized_size(40, 60, None) == (40, 60)


def test_the_table_ignores_blocks_beyond_a_stage_and_refuses_what_is_not_an_architecture():
    space = OFAMobileNetV3FullSpace(resolutions=[64, 96])
    arch = space.smallest()  # depth 2 everywhere: blocks 2 and 3 of each stage do not run
    raw = {**dict(arch), "kernel": (3, 3, 7, 7) * 5, "expand": (3, 3, 6, 6) * 5}
    assert space.body_costs(raw, (3, 64, 64)) == space.body_costs(arch, (3, 64, 64))
    for bad in ({"kernel": (9,) * 20}, {"depth": (1, 2, 2, 2, 2)}, {"depth": (2, 2)},
                {"resolution": 100}):
        with pytest.raises(InvalidArchitectureError):
            space.body_costs({**dict(arch), **bad}, (3, 64, 64))
    assert SearchSpace([IntRange("x", 1, 3)]).body_costs(
        SearchSpace([IntRange("x", 1, 3)]).sample(np.random.default_rng(0)), (3, 8, 8)) is None


def classification(image_size: int = 80, **options: Any) -> ClassificationTask:
    return ClassificationTask(dataset="glyphs", channels=3, image_size=image_size,
                              head_hidden=1280, normalize="imagenet", n_samples=40,
                              num_classes=4, **options)


def test_task_models_cost_the_table_plus_the_rest_counted_once_per_geometry():
    """Classification with once-for-all's classifier and input normalisation: TableCosts equals
    fvcore on ``task.build_model``; the head is counted on one built model per resolution."""
    task = classification()
    space = OFAMobileNetV3FullSpace(width_mult=1.2, resolutions=[64, 96, 128])
    built: list[str] = []

    def build(arch: Any) -> Any:
        built.append(arch.key)
        return task.build_model(space, arch)

    table = TableCosts(space, task.input_shape, build)
    rng = np.random.default_rng(5)
    archs = [space.sample(rng) for _ in range(7)]
    for arch in archs:
        assert table(arch) == fvcore_costs(task.build_model(space, arch), task.input_shape)
    assert len(built) == len({a["resolution"] for a in archs}) == len(table.rest)
    # without a table: None, the caller counts built networks as before
    plain = SearchSpace([IntRange("x", 1, 3)])
    assert TableCosts(plain, (3, 8, 8), build)(plain.sample(rng)) is None
    assert TableCosts(None, (3, 8, 8), build)(archs[0]) is None


@pytest.mark.parametrize("head", ["centernet", "ssdlite"])
def test_detection_models_of_the_full_space_cost_what_fvcore_counts(head):
    task = DetectionTask(n_samples=40, head=head)
    space = OFAMobileNetV3FullSpace()
    model = SupernetModel(space, task)
    table = TableCosts(space, task.input_shape, lambda a: model.extract(a).eval())
    rng = np.random.default_rng(7)
    for arch in [space.smallest(), space.sample(rng), space.sample(rng)]:
        assert table(arch) == fvcore_costs(model.extract(arch).eval(), task.input_shape)
    assert len(table.rest) == 1


def test_path_filter_cost_functions_use_the_table():
    task = classification()
    space = OFAMobileNetV3FullSpace(resolutions=[64, 96])
    model = SupernetModel(space, task).eval()
    extracted, built = [], []
    extract, build_model = model.extract, task.build_model

    def counting_extract(arch: Any = None) -> Any:
        extracted.append(arch)
        return extract(arch)

    def counting_build(sp: Any, arch: Any) -> Any:
        built.append(arch)
        return build_model(sp, arch)

    model.extract = counting_extract  # type: ignore[method-assign]
    task.build_model = counting_build  # type: ignore[method-assign]
    rng = np.random.default_rng(11)
    archs = [space.sample(rng).replace(resolution=r) for r in (64, 96, 64, 96, 64)]
    on_subnet = subnet_cost_fn(model, "flops")
    on_task = model_cost_fn(task, space, "params")
    for arch in archs:
        sub = extract(arch).eval()
        assert on_subnet(arch) == float(count_flops(sub, task.input_shape))
        assert on_task(arch) == float(count_params(build_model(space, arch)))
    assert len(extracted) == len(built) == 2  # one network per resolution


def test_weight_sharing_evaluator_records_the_table_costs(tmp_path):
    task = classification(image_size=64)
    space = OFAMobileNetV3FullSpace(resolutions=[64, 96])
    model = SupernetModel(space, task)
    ev = WeightSharingEvaluator(model, WeightSharingConfig(
        checkpoint=tmp_path / "unused.pt", calib_batches=1, calib_batch_size=8,
        eval_batch_size=64))
    extract, extracted = model.extract, []
    model.extract = lambda arch=None: extracted.append(arch) or extract(arch)  # type: ignore
    rng = np.random.default_rng(2)
    archs = [space.sample(rng).replace(resolution=r) for r in (64, 64, 64)] + [space.largest()]
    for i, arch in enumerate(archs):
        result = ev.evaluate(arch, checkpoint=tmp_path / "w.pt" if i == 3 else None)
        assert result.ok, result.error
        want = fvcore_costs(extract(arch).cpu().eval(), task.input_shape)
        assert result.costs == want
        assert space.body_costs(arch, task.input_shape)["params"] < want["params"]
    # one subnet counted per resolution (64, then 96 for the largest) and one saved
    assert len(extracted) == 3 and (tmp_path / "w.pt").is_file()


def test_constrained_space_costs_with_the_table():
    task = classification(image_size=64)
    space = OFAMobileNetV3FullSpace(resolutions=[64, 96])
    rng = np.random.default_rng(4)
    arch = space.sample(rng)
    want = fvcore_costs(task.build_model(space, arch), task.input_shape)
    config = SimpleNamespace(constraints={"flops": (None, want["flops"])}, seed=0, source=None)
    limited = constrained_space(config, space, task, evaluator=object())  # type: ignore[arg-type]
    assert limited.costs(arch) == want
    assert limited.body_costs(arch, task.input_shape) == space.body_costs(arch, task.input_shape)
