"""The real-data path of the dense tasks: segmentation scored at the label files' resolution
(checked against torchmetrics on the upsampled predictions), training augmentation only on
the training split, input normalisation inside the model, the SALICON evaluation blur
(checked against scipy), and the options' validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from nastk.core.errors import ConfigError
from nastk.data.augment import Augmented
from nastk.data.loaders import make_loader
from nastk.data.sample_folders import write_cityscapes
from nastk.nn.normalization import IMAGENET, InputNormalization, Normalization
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.saliency import SaliencyTask
from nastk.tasks.saliency.blur import gaussian_blur
from nastk.tasks.segmentation import SegmentationTask

LABEL_HW = (48, 96)


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return write_cityscapes(tmp_path_factory.mktemp("cityscapes"), n=(8, 3), size=LABEL_HW)


def _model(task, seed=0):
    torch.manual_seed(seed)
    space = SmallCNNSpace()
    return task.build_model(space, space.sample(np.random.default_rng(seed))).eval()


class _Oracle(torch.nn.Module):
    """For each image of a split, logits at the input's resolution made from its label
    (resized to the input by nearest neighbour, with seeded noise): coarse, mostly right
    predictions whose upsampling to the label's resolution misses boundary pixels."""

    def __init__(self, split, num_classes, hw, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.known = []
        for i in range(len(split)):
            image, label = split[i]
            small = F.interpolate(label[None, None].float(), size=hw, mode="nearest")[0, 0]
            small = small.long().clamp(max=num_classes - 1)  # the ignore label as the last
            logits = F.one_hot(small, num_classes).permute(2, 0, 1).float() * 3.0
            self.known.append((image, logits + torch.randn(logits.shape, generator=gen)))

    def forward(self, x):
        out = []
        for image in x:
            out.append(next(lg for im, lg in self.known if torch.equal(im, image)))
        return torch.stack(out)


def test_cityscapes_is_scored_at_label_resolution_as_torchmetrics_scores_it(cityscapes):
    torchmetrics = pytest.importorskip("torchmetrics")
    task = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40),
                            holdout_fraction=0.25)
    assert task.options.scores_at_label_size  # the default for a real data set
    splits = task.splits()
    x, label = splits["test"][0]
    assert tuple(x.shape[1:]) == (24, 40) and tuple(label.shape) == LABEL_HW
    assert tuple(splits["train"][0][1].shape) == (24, 40)  # trained at the working size
    assert tuple(splits["val"][0][1].shape) == LABEL_HW
    model = _Oracle(splits["test"], task.num_classes, (24, 40))
    metrics = task.evaluate(model, make_loader(task, splits["test"], 2))

    # the reference: logits upsampled to each label's size, scored by torchmetrics
    jaccard = torchmetrics.classification.MulticlassJaccardIndex(
        num_classes=task.num_classes, ignore_index=255, average="none")
    confusion = torchmetrics.classification.MulticlassConfusionMatrix(
        num_classes=task.num_classes, ignore_index=255)
    with torch.no_grad():
        for i in range(len(splits["test"])):
            image, label = splits["test"][i]
            logits = F.interpolate(model(image[None]), size=label.shape, mode="bilinear",
                                   align_corners=False)
            jaccard.update(logits.argmax(1), label[None])
            confusion.update(logits.argmax(1), label[None])
    cm = confusion.compute()
    present = (cm.sum(0) + cm.sum(1)) > 0  # classes in the labels or the predictions
    iou = jaccard.compute()
    assert present.sum() >= 2 and float(iou[present].mean()) > 0.05
    assert metrics["miou"] == pytest.approx(float(iou[present].mean()), abs=1e-6)
    # and scoring at the input size gives another figure (the protocol matters)
    at_input = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40),
                                holdout_fraction=0.25, eval_at="input")
    test = at_input.splits()["test"]
    assert tuple(test[0][1].shape) == (24, 40)
    other = at_input.evaluate(model, make_loader(at_input, test, 2))
    assert other["miou"] != pytest.approx(metrics["miou"], abs=1e-9)


def test_labels_of_several_sizes_are_batched_as_a_list():
    task = SegmentationTask(size=8, num_classes=3)
    samples = [(torch.rand(3, 8, 8), torch.zeros(10, 12, dtype=torch.long)),
               (torch.rand(3, 8, 8), torch.ones(9, 7, dtype=torch.long))]
    x, y = task.collate(samples)
    assert x.shape == (2, 3, 8, 8) and isinstance(y, list) and y[1].shape == (9, 7)
    meter = task.meter()
    logits = torch.zeros(2, 3, 8, 8)
    logits[0, 0] = 1.0  # image 0 predicts class 0 everywhere (its label), image 1 class 1
    logits[1, 1] = 1.0
    meter.update(logits, logits, y)
    assert meter.compute()["pixel_accuracy"] == pytest.approx(1.0)
    assert meter.cm.matrix.sum() == 10 * 12 + 9 * 7


def test_augmentation_is_on_the_training_split_only(cityscapes):
    task = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40),
                            holdout_fraction=0.25)
    splits = task.splits()
    assert isinstance(splits["train"], Augmented)  # the preset of a real data set
    assert splits["train"].augment.scale == (0.5, 2.0)
    assert not isinstance(splits["val"], Augmented) and not isinstance(splits["test"], Augmented)
    off = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40), augment="off")
    assert isinstance(off.splits()["train"], Subset)
    # generated data stays unaugmented unless asked
    assert not isinstance(SegmentationTask(size=16).splits()["train"], Augmented)
    asked = SegmentationTask(size=16, augment={"flip": 1.0})
    assert isinstance(asked.splits()["train"], Augmented)


def test_normalisation_is_inside_the_model_and_out_of_its_state_dict(cityscapes):
    real = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40))
    plain = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40),
                             normalize="none")
    assert real.normalization == IMAGENET and plain.normalization is None
    assert SegmentationTask(size=16).normalization is None  # generated: none by default
    a, b = _model(real), _model(plain)
    assert set(a.state_dict()) == set(b.state_dict())
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 24, 40)
    mean = torch.tensor(IMAGENET.mean)[:, None, None]
    std = torch.tensor(IMAGENET.std)[:, None, None]
    with torch.no_grad():
        assert torch.allclose(a(x), b((x - mean) / std), atol=1e-5)
    custom = SegmentationTask(size=16, normalize={"mean": [0.5], "std": [0.25]})
    layer = _model(custom).normalize
    assert isinstance(layer, InputNormalization)
    assert torch.allclose(layer(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize(("options", "words"), [
    ({"normalize": "imagenet2"}, "normalize"),
    ({"normalize": {"mean": [0.5, 0.5], "std": [0.2]}}, "one per channel"),
    ({"normalize": {"mean": [0.5], "std": [0.0]}}, "std must be positive"),
    ({"eval_at": "output"}, "eval_at"),
    ({"augment": "sometimes"}, "augment"),
    ({"augment": {"scale": [3, 1]}}, "augment.scale"),
])
def test_new_segmentation_options_are_validated(options, words):
    with pytest.raises(ConfigError, match=words):
        SegmentationTask(size=16, **options)


def test_normalisation_values_must_match_the_channels():
    with pytest.raises(ValueError, match="give 3"):
        InputNormalization(Normalization(mean=(0.5, 0.5), std=(1.0, 1.0)))


def test_salicon_blur_is_scipys_11_tap_gaussian_with_mirrored_edges():
    ndimage = pytest.importorskip("scipy.ndimage")
    m = torch.rand(30, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(m, 10.5, kernel=11)
    ref = ndimage.gaussian_filter(m.numpy(), sigma=10.5, radius=5, mode="mirror")
    assert np.allclose(ours.numpy(), ref, atol=1e-12)
    # without a kernel size: four sigmas each side (radius 42 at sigma 10.5)
    ref4 = ndimage.gaussian_filter(m.numpy(), sigma=2.0, truncate=4.0, mode="mirror")
    assert np.allclose(gaussian_blur(m, 2.0).numpy(), ref4, atol=1e-12)


def test_saliency_blur_option():
    task = SaliencyTask(size=(24, 32), n_samples=20, blur={"sigma": 10.5})
    assert task.options.blur.kernel == 11
    inner = task.meter().inner
    assert (inner.blur_sigma, inner.blur_kernel) == (10.5, 11)
    for bad, words in [({"sigma": 2, "kernel": 10}, "odd"), ({"sigma": 0}, "sigma"),
                       ({"sigma": 2, "size": 3}, "size")]:
        with pytest.raises(ConfigError, match=words):
            SaliencyTask(size=(24, 32), blur=bad)
    with pytest.raises(ConfigError, match="not both"):
        SaliencyTask(size=(24, 32), blur={"sigma": 2}, blur_sigma=2)


def test_options_that_leave_the_new_fields_unset_dump_as_before():
    from nastk.tasks.classification import ClassificationTask

    for options in (SegmentationTask(size=16).options, SaliencyTask().options,
                    ClassificationTask().options):
        dumped = options.model_dump(mode="json")
        assert not {"augment", "normalize", "eval_at", "blur"} & set(dumped), type(options)
    asked = SegmentationTask(size=16, normalize="imagenet", eval_at="label").options
    assert {"normalize": "imagenet", "eval_at": "label"}.items() <= asked.model_dump().items()


def test_image_folder_classification_normalises_and_augments(tmp_path):
    from nastk.data.sample_folders import write_imagefolder
    from nastk.tasks.classification import ClassificationTask
    from nastk.tasks.classification.task import IMAGENET_GREY

    root = write_imagefolder(tmp_path, 3, 12, size=20)
    rgb = ClassificationTask(dataset="imagefolder", root=root, size=16, val_fraction=0.25)
    assert rgb.normalization == IMAGENET
    assert isinstance(rgb.splits()["train"], Augmented)
    grey = ClassificationTask(dataset="imagefolder", root=root, size=16, channels=1)
    assert grey.normalization == IMAGENET_GREY
    assert grey.normalization.mean[0] == pytest.approx(np.mean(IMAGENET.mean))
    # generated glyphs: unaugmented, unnormalised, unless asked
    glyphs = ClassificationTask()
    assert glyphs.normalization is None
    assert not isinstance(glyphs.splits()["train"], Augmented)
    asked = ClassificationTask(augment={"flip": 1.0}, normalize={"mean": [0.5], "std": [0.5]})
    assert isinstance(asked.splits()["train"], Augmented)
    space = SmallCNNSpace()
    model = asked.build_model(space, space.sample(np.random.default_rng(0)))
    assert isinstance(model.normalize, InputNormalization)


def test_detection_trains_on_augmented_boxes_and_scores_unaugmented(tmp_path):
    from nastk.data.sample_folders import write_voc
    from nastk.tasks.detection import DetectionTask

    root = write_voc(tmp_path / "VOCdevkit", size=(48, 64))
    task = DetectionTask(dataset="voc", root=root, size=32, holdout_fraction=0.25,
                         train_split=["voc2007/trainval", "voc2012/trainval"],
                         test_split="voc2007/test")
    splits = task.splits()
    assert isinstance(splits["train"], Augmented) and task.normalization == IMAGENET
    assert not isinstance(splits["test"], Augmented)
    loader = make_loader(task, splits["train"], 4, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    seen = 0
    for x, targets in loader:
        assert x.shape[1:] == (3, 32, 32)
        for t in targets:
            boxes = t["boxes"]
            assert len(t["labels"]) == len(t["difficult"]) == len(boxes)
            assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 32).all())
            assert bool(((boxes[:, 2] - boxes[:, 0]) >= 2).all())
            seen += len(boxes)
    assert seen > 0


def test_scoring_at_label_size_reads_and_checks_the_training_listing_once(cityscapes,
                                                                         monkeypatch):
    from nastk.data import folders
    from nastk.data.folders import folder_datasets
    from nastk.evaluation.preflight import check_data_files

    task = SegmentationTask(dataset="cityscapes", root=cityscapes, size=(24, 40),
                            holdout_fraction=0.25)
    splits = task.splits()
    train, val = folder_datasets(splits["train"])[0], folder_datasets(splits["val"])[0]
    assert train is not val and train.items is val.items  # one listing, two label sizes
    assert not train.label_own_size and val.label_own_size
    checked = []
    real = folders._image_header
    monkeypatch.setattr(folders, "_image_header", lambda p: checked.append(p) or real(p))
    check_data_files(task, splits)
    assert len(checked) == len(set(checked)) == 2 * (8 + 3)  # every image and label, once
