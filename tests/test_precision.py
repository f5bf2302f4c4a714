"""Device and precision checks, autocast and gradient scaling (nastk.training.precision), and their
use in plain training and weight-sharing evaluation. The CUDA tests are skipped without CUDA."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from toy_supernet import ToySupernetSpace

from nastk import Architecture
from nastk.core.errors import ConfigError
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.evaluation.weight_sharing import WeightSharingConfig, WeightSharingEvaluator
from nastk.nn.supernet import SupernetModel
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.training.precision import (
    AutocastModel,
    GradScaling,
    autocast,
    autocast_model,
    check_precision,
    resolve_device,
    to_float32,
)

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
#: the small architecture of tests/test_classification.py (quick to train)
SMALL = Architecture(depth=(1, 1, 1), width=(16, 16, 24), kernel=(3, 3, 3), expand=(1, 2, 2))


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[ClassificationTask, SmallCNNSpace]:
    """The task and space test_classification.py trains on."""
    return ClassificationTask(dataset="digits"), SmallCNNSpace()


@pytest.fixture(scope="module")
def shapes() -> ClassificationTask:  # the supernet tests' task
    return ClassificationTask(dataset="synthetic", n_samples=600, image_size=16, num_classes=4)


# -- device and precision checks ----------------------------------------------------------------
def test_resolve_device_accepts_cpu():
    assert resolve_device("cpu", "training.device") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_names_the_field(device):
    with pytest.raises(ConfigError, match=r"^training\.device: .*no CUDA device.*set device: "
                                          r"cpu or install a CUDA build") as err:
        resolve_device(device, "training.device")
    assert f"torch {torch.__version__}" in str(err.value)
    assert "cuda available: False" in str(err.value)


@needs_cuda
def test_cuda_index_out_of_range_names_the_field():
    assert resolve_device("cuda", "training.device").type == "cuda"
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"^training\.device: .*only {n} CUDA device"):
        resolve_device(f"cuda:{n}", "training.device")


@pytest.mark.parametrize("device", ["gpu0", "cuda:x", "", "cpu:-1x"])
def test_bad_device_string_names_the_field(device):
    with pytest.raises(ConfigError, match=r"^evaluator\.train\.device: .*use 'cpu', 'cuda'"):
        resolve_device(device, "evaluator.train.device")


def test_fp16_on_cpu_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"^training\.precision: fp16 needs a CUDA device.*"
                                          r"bf16 or fp32"):
        check_precision("fp16", CPU, "training.precision")
    check_precision("bf16", CPU, "training.precision")  # fine on the CPU
    check_precision("fp32", "cpu", "training.precision")
    with pytest.raises(ConfigError, match=r"^x\.precision: unknown precision 'fp8'"):
        check_precision("fp8", CPU, "x.precision")  # type: ignore[arg-type]


def test_evaluators_check_device_and_precision_when_built(digits_cnn, shapes, tmp_path):
    digits, space = digits_cnn
    with pytest.raises(ConfigError, match=r"^train\.precision: fp16 needs a CUDA device"):
        TrainEvaluator(digits, space, TrainConfig(precision="fp16"))
    with pytest.raises(ConfigError, match=r"^evaluator\.train\.device: 'gpu0'"):
        TrainEvaluator(digits, space, TrainConfig(device="gpu0"), where="evaluator.train")
    model = SupernetModel(ToySupernetSpace(), shapes)
    with pytest.raises(ConfigError, match=r"^evaluator\.supernet\.precision: fp16"):
        WeightSharingEvaluator(model, WeightSharingConfig(checkpoint=tmp_path / "s.pt",
                                                          precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^evaluator\.supernet\.device: 'cuda'"):
            WeightSharingEvaluator(model, WeightSharingConfig(checkpoint=tmp_path / "s.pt",
                                                              device="cuda"))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp64")  # type: ignore[arg-type]


# -- autocast -----------------------------------------------------------------------------------
def test_autocast_casts_for_bf16_and_not_for_fp32():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast(CPU, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        out = layer(x)
    assert out.dtype == torch.float32 and torch.equal(out, layer(x))


def test_autocast_model_returns_float32_outputs():
    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(x)
            return {"logits": y, "pair": (y, x.argmax(1))}

    model = Heads()
    assert autocast_model(model, CPU, "fp32") is model
    wrapped = autocast_model(model, CPU, "bf16")
    assert isinstance(wrapped, AutocastModel) and list(wrapped.parameters()) == list(
        model.parameters())
    x = torch.randn(5, 4)
    out = wrapped(x)
    assert out["logits"].dtype == out["pair"][0].dtype == torch.float32
    assert out["pair"][1].dtype == torch.int64
    # computed in bf16: close to, yet not equal to, the fp32 outputs
    ref = model(x)["logits"]
    torch.testing.assert_close(out["logits"], ref, atol=5e-2, rtol=2e-2)
    assert not torch.equal(out["logits"], ref)
    assert to_float32(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    half, three = to_float32([torch.ones(1, dtype=torch.float16), 3])
    assert half.dtype == torch.float32 and three == 3


# -- gradient scaling ---------------------------------------------------------------------------
@pytest.mark.parametrize(("device", "precision"), [("cpu", "fp32"), ("cpu", "bf16"),
                                                   ("cuda", "fp32"), ("cuda", "bf16")])
def test_gradscaling_is_a_pass_through_without_fp16(device, precision):
    scaling = GradScaling(torch.device(device), precision)
    assert not scaling.enabled and scaling.scale == 1.0 and scaling.state_dict() == {}
    scaling.load_state_dict({"scale": 8.0})  # ignored
    assert scaling.state_dict() == {}


def test_gradscaling_pass_through_step_is_bit_identical():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    scaled = copy.deepcopy(plain)
    start = [p.detach().clone() for p in plain.parameters()]
    opt_a = torch.optim.Adam(plain.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(scaled.parameters(), lr=1e-2)
    scaling = GradScaling(CPU, "fp32")
    for _ in range(5):
        x, y = torch.randn(16, 6), torch.randn(16, 2)
        opt_a.zero_grad()
        nn.functional.mse_loss(plain(x), y).backward()
        nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
        opt_a.step()
        opt_b.zero_grad()
        with autocast(CPU, "fp32"):
            loss = nn.functional.mse_loss(scaled(x), y)
        scaling.backward(loss)
        scaling.unscale(opt_b)
        nn.utils.clip_grad_norm_(scaled.parameters(), 0.5)
        scaling.step(opt_b)
        scaling.update()
    for a, b, s in zip(plain.parameters(), scaled.parameters(), start, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, s)  # trained, and identically


# -- plain training -----------------------------------------------------------------------------
def _train(digits_cnn, **config):
    result = TrainEvaluator(*digits_cnn, TrainConfig(steps=30, latency=False, **config),
                            seed=0).evaluate(SMALL)
    assert result.ok, result.error
    assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
    return result.metrics


@pytest.fixture(scope="module")
def fp32_metrics(digits_cnn):
    return _train(digits_cnn)


@pytest.mark.slow
def test_bf16_training_on_cpu_is_close_to_fp32(digits_cnn, fp32_metrics):
    bf16 = _train(digits_cnn, precision="bf16")
    assert bf16 != fp32_metrics  # autocast really ran
    assert all(type(v) is float for v in bf16.values())
    # measured (30 steps, seeds 0-7): |d accuracy| <= 0.019 (7 of 360 val images),
    # |d loss| <= 0.0055, |d train_loss| <= 0.0046; tolerances ~2.5-3.5x the worst seed
    assert abs(bf16["accuracy"] - fp32_metrics["accuracy"]) <= 0.05
    assert abs(bf16["loss"] - fp32_metrics["loss"]) <= 0.02
    assert abs(bf16["train_loss"] - fp32_metrics["train_loss"]) <= 0.02
    assert bf16["accuracy"] > 0.5  # it learned (chance is 0.1)


@needs_cuda
def test_cuda_fp16_training_is_close_to_cpu(digits_cnn, fp32_metrics):
    fp16 = _train(digits_cnn, device="cuda", precision="fp16")
    # unmeasured here (no GPU on the machine that wrote this); bf16 on the CPU differs by
    # 0.019 / 0.0055 at most, and CUDA kernels (TF32 convolutions, another reduction order,
    # another dropout stream) add to it: allow about twice the bf16 tolerances
    assert abs(fp16["accuracy"] - fp32_metrics["accuracy"]) <= 0.1
    assert abs(fp16["loss"] - fp32_metrics["loss"]) <= 0.05
    assert fp16["accuracy"] > 0.5


@needs_cuda
def test_gradscaling_fp16_on_cuda_skips_non_finite_steps():
    device = torch.device("cuda")
    scaling = GradScaling(device, "fp16")
    assert scaling.enabled
    model = nn.Linear(4, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    scale = scaling.scale
    with autocast(device, "fp16"):
        loss = model(torch.full((2, 4), float("inf"), device=device)).sum()
    scaling.backward(loss)
    scaling.unscale(opt)
    scaling.step(opt)
    scaling.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scaling.scale < scale
    state = scaling.state_dict()
    other = GradScaling(device, "fp16")
    other.load_state_dict(state)
    assert other.scale == scaling.scale
    with autocast(device, "fp16"):
        loss = model(torch.ones(2, 4, device=device)).sum()
    scaling.backward(loss)
    scaling.step(opt)
    scaling.update()
    assert not torch.equal(before[0], model.weight)  # a finite step is taken


# -- weight-sharing evaluation ------------------------------------------------------------------
def _ws_losses(model, tmp_path, **config):
    ev = WeightSharingEvaluator(copy.deepcopy(model), WeightSharingConfig(
        checkpoint=tmp_path / "unused.pt", calib_batches=2, **config))
    out = []
    for arch in (ev.model.space.largest(), ev.model.space.smallest()):
        result = ev.evaluate(arch)
        assert result.ok, result.error
        assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
        out.append(result.metrics["loss"])
    return out


@pytest.fixture(scope="module")
def supernet(shapes):
    torch.manual_seed(0)
    return SupernetModel(ToySupernetSpace(), shapes)


def test_bf16_weight_sharing_on_cpu_is_close_to_fp32(supernet, tmp_path):
    fp32 = _ws_losses(supernet, tmp_path)
    bf16 = _ws_losses(supernet, tmp_path, precision="bf16")
    assert bf16 != fp32  # autocast really ran
    # measured (untrained supernets, seeds 0-3, largest and smallest): |d loss| <= 3.3e-4
    assert max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)) <= 3e-3


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_weight_sharing_is_close_to_cpu(supernet, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this CUDA device has no bf16")
    cpu = _ws_losses(supernet, tmp_path)
    cuda = _ws_losses(supernet, tmp_path, device="cuda", precision=precision)
    # unmeasured here (no GPU); bf16 on the CPU differs by 3.3e-4 at most
    assert max(abs(a - b) for a, b in zip(cpu, cuda, strict=True)) <= 1e-2


# -- supernet training ---------------------------------------------------------------------------
def _supernet_steps(supernet, steps=3, **config):
    from nastk.training.supernet import PhaseSampler, SupernetTrainer
    from nastk.training.supernet_config import SupernetTrainConfig

    model = copy.deepcopy(supernet)
    trainer = SupernetTrainer(model, SupernetTrainConfig(batch_size=32, n_random=1,
                                                         bn_calib_batches=2, **config))
    sampler = PhaseSampler(model, None)
    losses = []
    for step, (x, y) in zip(range(steps), trainer._loader(0), strict=False):
        x, y = x.to(trainer.device), y.to(trainer.device)
        losses.append(trainer.train_step(x, y, sampler, trainer.step_rng(step))["largest"])
    scores = trainer.evaluate_arch(sampler.largest)
    return losses, scores, model


@pytest.mark.slow
def test_bf16_supernet_training_on_cpu_follows_fp32(supernet):
    fp32, s32, _ = _supernet_steps(supernet)
    bf16, s16, m16 = _supernet_steps(supernet, precision="bf16")
    assert bf16 != fp32  # autocast really ran
    assert all(math.isfinite(v) for v in bf16)
    # the first step starts from the same weights: the losses differ by bfloat16 rounding only
    assert abs(bf16[0] - fp32[0]) <= 2e-2 * abs(fp32[0])
    assert abs(s16["loss"] - s32["loss"]) <= 5e-2 * abs(s32["loss"])
    # the weights stay float32 (autocast changes the forward, not the parameters)
    assert all(p.dtype == torch.float32 for p in m16.net.parameters())


def test_fp16_supernet_training_on_cpu_is_refused_naming_the_field(supernet):
    with pytest.raises(ConfigError, match=r"training\.precision"):
        _supernet_steps(supernet, steps=0, precision="fp16")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_supernet_training_follows_the_cpu(supernet, precision):
    cpu, s_cpu, _ = _supernet_steps(supernet)
    cuda, s_cuda, model = _supernet_steps(supernet, device="cuda", precision=precision)
    assert next(model.net.parameters()).is_cuda
    # unmeasured here (no GPU): first-step loss within 2%, final loss within 10%
    assert abs(cuda[0] - cpu[0]) <= 2e-2 * abs(cpu[0])
    assert abs(s_cuda["loss"] - s_cpu["loss"]) <= 0.1 * abs(s_cpu["loss"])
