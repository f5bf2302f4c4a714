"""Supernet machinery on a tiny elastic space: extraction, sandwich training, BN recalibration,
checkpoints."""

import numpy as np
import pytest
import torch
from toy_supernet import ToySupernetSpace

from nastk.core.errors import NastkError
from nastk.nn.batchnorm import recalibrate_bn
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from nastk.nn.supernet import SupernetModel
from nastk.tasks.classification import ClassificationTask
from nastk.training.supernet import (
    PhaseSampler,
    SupernetTrainer,
    load_supernet_weights,
    read_checkpoint,
)
from nastk.training.supernet_config import Phase, SupernetTrainConfig


@pytest.fixture(scope="module")
def task():
    return ClassificationTask(dataset="synthetic", n_samples=600, image_size=16, num_classes=4)


def perturb(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "transforms" in name:
                p.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize("depthwise", [False, True])
def test_elastic_conv_extract_matches(depthwise):
    torch.manual_seed(0)
    conv = ElasticConv2d(24, 24 if depthwise else 32, (3, 5, 7), stride=2, depthwise=depthwise,
                         bias=True)
    perturb(conv)
    for k in (3, 5, 7):
        for c_in, c_out in ((24, 32), (12, 8), (5, 17)):
            c_out = c_in if depthwise else c_out
            conv.set_active(out_channels=c_out if not depthwise else None, kernel=k)
            x = torch.randn(2, c_in, 11, 11)
            y = conv(x)
            plain = conv.extract(c_in)
            assert type(plain) is torch.nn.Conv2d and plain.kernel_size == (k, k)
            assert y.shape[1] == c_out
            torch.testing.assert_close(plain(x), y, atol=1e-5, rtol=0)


def test_kernel_transform_is_identity_at_init_and_learned():
    conv = ElasticConv2d(4, 4, (3, 5, 7))
    w = conv.active_weight(4, 4, 3)
    torch.testing.assert_close(w, conv.weight[:, :, 2:5, 2:5])
    perturb(conv)
    assert not torch.allclose(conv.active_weight(4, 4, 3), conv.weight[:, :, 2:5, 2:5])
    assert set(conv.transforms) == {"7to5", "5to3"}
    assert conv.transforms["7to5"].shape == (25, 25)


def test_elastic_bn_and_linear_extract_match():
    bn = ElasticBatchNorm2d(16)
    bn.train()
    for _ in range(3):
        bn(torch.randn(8, 10, 4, 4) * 3 + 1)
    assert torch.all(bn.running_mean[10:] == 0)  # only the active slice was updated
    bn.eval()
    x = torch.randn(2, 10, 4, 4)
    torch.testing.assert_close(bn.extract(10)(x), bn(x))
    lin = ElasticLinear(32, 5)
    x = torch.randn(3, 20)
    torch.testing.assert_close(lin.extract(20)(x), lin(x))


def test_supernet_model_extract_equals_supernet(task):
    space = ToySupernetSpace()
    model = SupernetModel(space, task)
    perturb(model)
    model.train()
    rng = np.random.default_rng(0)
    x = torch.rand(8, *task.input_shape)
    for _ in range(3):  # non-trivial BN statistics
        model.set_active(space.sample(rng))
        model(x)
    model.eval()
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(10)]:
        model.set_active(arch)
        sub = model.extract(arch)
        assert not any(isinstance(m, (ElasticConv2d, ElasticBatchNorm2d)) for m in sub.modules())
        with torch.no_grad():
            torch.testing.assert_close(sub(x), model(x), atol=1e-5, rtol=0)


def test_recalibrate_bn_uses_exact_batch_statistics(task):
    space = ToySupernetSpace()
    model = SupernetModel(space, task)
    model.set_active(space.largest())
    batches = [torch.rand(16, *task.input_shape) for _ in range(3)]
    assert recalibrate_bn(model, batches) == 3
    stem_bn = model.body.stem[1]
    with torch.no_grad():
        feats = torch.cat([model.body.stem[0](b) for b in batches])
    torch.testing.assert_close(stem_bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5,
                               rtol=1e-4)
    assert stem_bn.momentum == 0.1  # restored after calibration


def test_phase_sampler_keeps_locked_dimensions_largest(task):
    model = SupernetModel(ToySupernetSpace(), task)
    sampler = PhaseSampler(model, ["kernel"])
    rng = np.random.default_rng(0)
    archs = [sampler.sample(rng) for _ in range(30)]
    assert all(a["depth"] == (2, 2) and a["width"] == (16, 16) for a in archs)
    assert len({a["kernel"] for a in archs}) > 1
    assert sampler.smallest_in_phase["kernel"] == (3, 3)
    assert sampler.smallest_in_phase["width"] == (16, 16)
    with pytest.raises(NastkError, match="unknown dimensions"):
        PhaseSampler(model, ["expand"])


def eval_loss(trainer, arch):
    return trainer.evaluate_arch(arch, split="val")["loss"]


def test_sandwich_training_lowers_largest_and_smallest_loss(task, tmp_path):
    space = ToySupernetSpace()
    torch.manual_seed(0)
    model = SupernetModel(space, task)
    cfg = SupernetTrainConfig(epochs=6, batch_size=32, lr=0.1, n_random=1, bn_calib_batches=4)
    trainer = SupernetTrainer(model, cfg, seed=0, checkpoint_path=tmp_path / "ckpt.pt")
    before = {k: eval_loss(trainer, a) for k, a in (("largest", space.largest()),
                                                   ("smallest", space.smallest()))}
    history = trainer.train()
    after = {k: eval_loss(trainer, a) for k, a in (("largest", space.largest()),
                                                  ("smallest", space.smallest()))}
    assert len(history) == 6
    # measured: largest 1.43 -> 0.36, smallest 1.45 -> 0.78 (chance is ln 4 = 1.39)
    for k in before:
        assert after[k] < 0.7 * before[k], (k, before[k], after[k])
    assert history[-1]["val_accuracy_largest"] > 0.5
    assert history[-1]["train_loss_smallest"] < history[0]["train_loss_smallest"]


def test_training_resumes_from_checkpoint_exactly(task, tmp_path):
    space = ToySupernetSpace()
    cfg = SupernetTrainConfig(phases=[Phase(epochs=1, unlock=["kernel"]), Phase(epochs=2)],
                              batch_size=64, n_random=1, bn_calib_batches=2)

    def fresh(path):
        torch.manual_seed(1)
        return SupernetTrainer(SupernetModel(space, task), cfg, seed=3, checkpoint_path=path)

    full = fresh(tmp_path / "full.pt")
    full.train()
    part = fresh(tmp_path / "part.pt")
    part._train_epoch(None, None)  # one epoch, then "killed"
    resumed = fresh(tmp_path / "part.pt")
    resumed.train(resume=True)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    for name, t in full.model.net.state_dict().items():
        torch.testing.assert_close(resumed.model.net.state_dict()[name], t, msg=name)
    state = read_checkpoint(tmp_path / "part.pt")
    assert state["epoch"] == 3


def test_mismatched_checkpoint_names_first_bad_tensor(task, tmp_path):
    small = SupernetModel(ToySupernetSpace(stages=2), task)
    big = SupernetModel(ToySupernetSpace(stages=3), task)
    with pytest.raises(NastkError, match=r"tensor 'body.stages.2.0.conv.weight' .*missing"):
        load_supernet_weights(big, small.net.state_dict(), "ckpt.pt")
    with pytest.raises(NastkError, match=r"unexpected tensor 'body.stages.2.0.conv.weight'"):
        load_supernet_weights(small, big.net.state_dict(), "ckpt.pt")
    sd = dict(small.net.state_dict())
    sd["body.stem.0.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(NastkError, match=r"'body.stem.0.weight' has shape \(16, 3, 3, 3\) in the "
                                         r"checkpoint but \(16, 1, 3, 3\)"):
        load_supernet_weights(small, sd, "ckpt.pt")
    with pytest.raises(NastkError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
