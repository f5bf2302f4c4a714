"""The detection task on the engine's contract: targets that decode back to their boxes, exact
supernet extraction with either head, a trained detector far above random boxes, pictures."""

import math

import numpy as np
import pytest
import torch

from nastk.core import registry
from nastk.data.loaders import make_loader
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.nn.supernet import SupernetModel
from nastk.tasks.detection import DetectionTask
from nastk.tasks.detection.metrics import coco_ap

OFA = {"stages": [8, 16, 16, 24, 32], "stem_stride": 2, "final_channels": 32,
       "stem_channels": 8}


def ofa_space():
    return registry.SEARCH_SPACES.get("ofa_mbv3")(**OFA)


def batch(task, n=6, split="val"):
    loader = make_loader(task, task.splits()[split], n)
    return next(iter(loader))


@pytest.mark.parametrize("head", ["centernet", "ssdlite"])
def test_samples_collate_loss_terms_and_predictions(head):
    task = DetectionTask(n_samples=40, head=head)
    x, y = batch(task)
    assert x.shape == (6, 3, 64, 64) and isinstance(y, list) and len(y) == 6
    assert set(y[0]) == {"boxes", "labels", "iscrowd", "difficult", "area", "image_id"}
    space = ofa_space()
    model = task.build_model(space, space.largest())
    out = model(x)
    terms = task.loss(out, y)
    expected = {"heatmap", "size", "offset"} if head == "centernet" else {"cls", "box"}
    assert set(terms) == expected and all(torch.isfinite(t) for t in terms.values())
    sum(terms.values()).backward()
    preds = task.postprocess(out.detach())
    assert len(preds) == 6
    for p in preds:
        assert p["boxes"].shape[1] == 4 and len(p["boxes"]) <= 100
        assert len(p["scores"]) == len(p["labels"]) == len(p["boxes"])
        assert bool((p["scores"][:-1] >= p["scores"][1:]).all())


def test_centernet_targets_decode_to_the_boxes():
    """Outputs built from the loss's own targets (heat maps as logits, sizes and offsets at the
    centres) decode to the ground-truth boxes: AP 1 on every threshold."""
    task = DetectionTask(n_samples=60, min_objects=1)
    space = ofa_space()
    model = task.build_model(space, space.largest())
    _x, y = batch(task, 8)
    head = model.head
    h, w = 64 // head.stride, 64 // head.stride
    heat, ignore, centres = head.targets(y, (h, w), torch.device("cpu"))
    assert not ignore.any()
    assert len(centres) == sum(len(t["boxes"]) for t in y)
    logits = torch.logit(heat.clamp(1e-6, 1 - 1e-6))
    reg = torch.zeros(len(y), 4, h, w)
    for b, r, c, values in centres:
        reg[b, :, r, c] = torch.tensor(values)
    preds = task.postprocess(torch.cat([logits, reg], 1))
    scores = coco_ap(preds, y, task.num_classes)
    # two centres of one class may share a cell: then only one of them can be found
    assert scores["ap50"] > 0.97 and scores["ap"] > 0.97
    first = preds[0]
    top = first["boxes"][first["scores"] > 0.99]
    assert len(top) >= 1
    gap = (top[:, None, :] - y[0]["boxes"][None]).abs().amax(-1).amin(1)
    assert float(gap.max()) < 1e-4  # every confident detection is a ground-truth box


def test_ssdlite_matched_targets_decode_to_the_boxes():
    task = DetectionTask(n_samples=60, min_objects=1, head="ssdlite", score_threshold=0.5)
    space = ofa_space()
    model = task.build_model(space, space.largest())
    _x, y = batch(task, 8)
    head = model.head
    outs = []
    for t in y:
        cls, enc = head.match(t, head.anchors)
        logits = torch.full((len(cls), 1 + task.num_classes), -20.0)
        logits[torch.arange(len(cls)), cls.clamp(min=0)] = 20.0
        outs.append(torch.cat([logits, enc], 1))
    preds = task.postprocess(torch.stack(outs))
    scores = coco_ap(preds, y, task.num_classes)
    assert scores["ap50"] > 0.97 and scores["ap75"] > 0.97


def test_crowd_boxes_are_ignore_regions_in_training():
    """A crowd box adds no positive target and masks the heat-map loss inside it."""
    task = DetectionTask(n_samples=40, min_objects=1)
    space = ofa_space()
    model = task.build_model(space, space.largest())
    x, y = batch(task, 2)
    crowd = [dict(t) for t in y]
    crowd[0]["iscrowd"] = torch.ones(len(crowd[0]["boxes"]), dtype=torch.bool)
    head = model.head
    heat, ignore, centres = head.targets(crowd, (16, 16), torch.device("cpu"))
    assert heat[0].max() == 0 and ignore[0].any() and not ignore[1].any()
    assert len(centres) == len(y[1]["boxes"])
    with torch.no_grad():
        out = model(x)
    assert task.loss(out, crowd)["heatmap"] != task.loss(out, y)["heatmap"]


@pytest.mark.parametrize("head", ["centernet", "ssdlite"])
def test_extraction_with_the_head_is_exact(head):
    task = DetectionTask(n_samples=40, head=head)
    space = ofa_space()
    model = SupernetModel(space, task)
    x, _ = batch(task, 4)
    rng = np.random.default_rng(0)
    model.eval()
    for arch in [space.smallest(), space.sample(rng), space.sample(rng)]:
        model.set_active(arch)
        with torch.no_grad():
            want = model(x)
            got = model.extract(arch).eval()(x)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
        a = task.postprocess(want)[0]
        b = task.postprocess(got)[0]
        assert torch.allclose(a["scores"], b["scores"], atol=1e-5)


def random_boxes(targets, seed):
    """As many uniformly random boxes per image as it has objects, random labels and scores."""
    g = torch.Generator().manual_seed(seed)
    preds = []
    for t in targets:
        n = max(len(t["boxes"]), 1) * 10
        xy = torch.rand(n, 2, generator=g) * 48
        wh = 6 + torch.rand(n, 2, generator=g) * 34
        preds.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=64)], 1),
                      "scores": torch.rand(n, generator=g),
                      "labels": torch.randint(0, 3, (n,), generator=g)})
    return preds


@pytest.mark.slow
def test_a_trained_detector_is_far_above_random_boxes():
    """A small CNN with the CenterNet head, trained for 16 epochs on 480 synthetic scenes,
    scores AP50 >= 0.15 on the validation split, where ten random boxes per object score
    below 0.03."""
    task = DetectionTask(n_samples=600, val_fraction=0.2, test_fraction=0.0)
    space = registry.SEARCH_SPACES.get("small_cnn")(strides=[2, 2, 2])
    arch = space.validate({"depth": [1, 2, 2], "width": [16, 24, 32], "kernel": [3, 3, 3],
                           "expand": [2, 2, 2]})
    config = TrainConfig(epochs=16, batch_size=32, lr=0.01, latency=False, num_threads=2)
    result = TrainEvaluator(task, space, config, seed=0).evaluate(arch)
    assert result.ok, result.error
    targets = [task.splits()["val"][i][1] for i in range(len(task.splits()["val"]))]
    chance = coco_ap(random_boxes(targets, 0), targets, task.num_classes)["ap50"]
    assert chance < 0.03
    assert result.metrics["ap50"] >= 0.15, result.metrics
    assert math.isfinite(result.metrics["ap"]) and result.metrics["ap"] < result.metrics["ap50"]
    assert {"train_loss_heatmap", "train_loss_size", "train_loss_offset"} <= set(result.metrics)


def test_draw_predictions_writes_a_picture(tmp_path):
    task = DetectionTask(n_samples=40)
    space = ofa_space()
    model = task.build_model(space, space.largest()).eval()
    x, y = batch(task, 3)
    with torch.no_grad():
        preds = task.postprocess(model(x))
    path = task.draw_predictions(x, y, [("trial 1", preds), ("ground truth", y and [
        {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"]))}
        for t in y])], tmp_path / "p.png")
    assert path.is_file() and path.stat().st_size > 5000


def test_options_are_checked():
    with pytest.raises(ValueError, match="needs `root`"):
        DetectionTask(dataset="coco")
    with pytest.raises(ValueError, match="at most"):
        DetectionTask(num_classes=99)
    with pytest.raises(ValueError, match="min_objects"):
        DetectionTask(min_objects=5, max_objects=2)
    task = DetectionTask(n_samples=40)
    assert "ap50_square" in task.metric_names() and task.primary_metric == "ap50"
