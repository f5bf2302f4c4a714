"""nas-segm as its authors ran it: the ``ops: paper`` operation set and ``psum`` aggregation,
the controller preset, Polyak averaging, the auxiliary loss and the decoder-only first stage -
each checked against the method's definition on fixed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.search_spaces.nas_segm import (
    OPS,
    PAPER_AGGREGATIONS,
    PAPER_OPS,
    NasSegmLayer,
    NasSegmSpace,
    make_op,
)
from nastk.strategies.rl import RL_PRESETS, RLController
from nastk.tasks.segmentation import SegmentationTask
from nastk.training import inner_loop
from nastk.training.inner_loop import (
    AuxiliaryLoss,
    DecoderStageConfig,
    PolyakAverage,
    train_decoder_stage,
)

TINY = {"stem_channels": 4, "encoder_widths": [4, 6, 8], "encoder_depths": [1, 1, 1],
        "encoder_expand": 2, "decoder_channels": 8, "agg_channels": 8}
EPS = 1e-5  # batch norm's


def _identity_pointwise(conv: nn.Conv2d) -> None:
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.out_channels)[:, :, None, None])


# -- the operation set and the aggregation ----------------------------------------------------
def test_paper_preset_ops_aggregations_and_size():
    space = NasSegmSpace(ops="paper", n_templates=2, n_layers=2, n_stride_layers=1,
                         max_repeats=2)
    assert space.options.ops == list(PAPER_OPS) == ["sep3x3", "sep5x5", "gap", "maxpool3x3",
                                                    "sep5x5_dil6", "skip"]
    assert space.options.aggregations == list(PAPER_AGGREGATIONS) == ["psum", "cat"]
    # (len(ops)^2 * len(aggs))^T * prod (2+i)^2 * T^L * R^L * 2^S
    assert space.size() == (36 * 2) ** 2 * (2 * 3) ** 2 * 2 ** 2 * 2 ** 2 * 2
    # given aggregations win over the preset's; ours stays the default and keeps its dump
    assert NasSegmSpace(ops="paper", aggregations=["sum"]).options.aggregations == ["sum"]
    default = NasSegmSpace()
    assert default.options.ops == list(OPS) and default.options.aggregations == ["sum", "cat"]
    assert "aggregations" not in default.options.model_dump()
    # every paper genotype builds and runs
    rng = np.random.default_rng(0)
    paper = NasSegmSpace(ops="paper", **TINY)
    for _ in range(3):
        body = paper.build(paper.sample(rng), 3)
        assert body(torch.randn(2, 3, 32, 32)).shape == (2, 8, 8, 8)
    with pytest.raises(ConfigError, match="unknown aggregations"):
        NasSegmSpace(aggregations=["max"])


def test_maxpool_op_values():
    """nas-segm's Pool: 1x1 conv-BN (no ReLU), then 3x3 max pooling, padding 1."""
    op = make_op("maxpool3x3", 2).eval()
    _identity_pointwise(op[0])
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(1, 2, 4, 5)
    x[0, 1] = -x[0, 1]  # negative values: no ReLU, and padding is -inf, not 0
    y = op(x)
    xs = x[0].numpy() / math.sqrt(1 + EPS)
    want = np.empty_like(xs)
    for c in range(2):
        for i in range(4):
            for j in range(5):
                want[c, i, j] = xs[c, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].max()
    np.testing.assert_allclose(y[0].detach().numpy(), want, rtol=1e-6)
    assert make_op("maxpool3x3", 2, stride=2)(x).shape == (1, 2, 2, 3)


def test_sep5x5_dilation6_values():
    """Depthwise 5x5 at dilation 6 (padding 12): taps 6 pixels apart, same size out."""
    op = make_op("sep5x5_dil6", 1).eval()
    dw, pw = op[0], op[3]
    assert (dw.kernel_size, dw.dilation, dw.padding, dw.groups) == ((5, 5), (6, 6), (12, 12), 1)
    _identity_pointwise(pw)
    x = torch.rand(1, 1, 16, 16) + 0.1  # positive: the ReLUs pass it unchanged
    with torch.no_grad():
        dw.weight.fill_(1.0)
    y = op(x)[0, 0]
    assert y.shape == (16, 16)
    scale = 1 / (1 + EPS)  # two batch norms in eval mode with fresh statistics
    taps = [0, 6, 12]  # of 12 + {-12, -6, 0, 6, 12}, those inside 16 x 16
    assert y[12, 12].item() == pytest.approx(x[0, 0][taps][:, taps].sum().item() * scale,
                                             rel=1e-5)
    with torch.no_grad():  # a single corner tap: out[i, j] = x[i - 12, j - 12]
        dw.weight.zero_()
        dw.weight[0, 0, 0, 0] = 1.0
    y = op(x)[0, 0]
    torch.testing.assert_close(y[12:, 12:], x[0, 0, :4, :4] * scale)
    assert float(y[:12].abs().sum().detach()) == 0.0
    assert make_op("sep5x5_dil6", 3, stride=2)(torch.rand(1, 3, 9, 9)).shape == (1, 3, 5, 5)


def test_psum_aggregation_is_the_learned_per_channel_sum():
    layer = NasSegmLayer((3, 3), 3, "skip", "skip", "psum", 1, 1, 2)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(layer(a, b), a + b)  # alpha = beta = 1 at the start
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.5, -2.0, 3.0]))
        layer.beta.copy_(torch.tensor([1.5, 0.0, -1.0]))
    want = (torch.tensor([0.5, -2.0, 3.0])[:, None, None] * a
            + torch.tensor([1.5, 0.0, -1.0])[:, None, None] * b)
    torch.testing.assert_close(layer(a, b), want)
    assert {n for n, _ in layer.named_parameters()} == {"alpha", "beta"}


# -- the controller preset --------------------------------------------------------------------
def _lstm_step(cell: nn.LSTMCell, x, h, c):
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_nas_segm_controller_preset():
    space = NasSegmSpace(**TINY, n_layers=2)
    objective = Objective(metric="score", direction="max")
    rl = RLController(space, objective, seed=0, preset="nas_segm")
    o = rl.options
    assert (o.algorithm, o.num_layers, o.hidden_size, o.ppo_clip, o.lr, o.baseline_decay,
            o.entropy_weight, o.grad_clip, o.input_feed, o.tanh_constant) == (
        "ppo", 2, 100, 0.1, 1e-4, 0.95, 0.0, 2.0, "output", None)
    assert RL_PRESETS["nas_segm"]["batch_size"] == o.batch_size == 1
    cells = rl.policy.cells
    assert len(cells) == 2 and all((c.input_size, c.hidden_size) == (100, 100) for c in cells)
    assert not hasattr(rl.policy, "embeddings")
    assert all(p.abs().max() <= 0.1 for p in rl.policy.parameters())
    assert rl.optimizer.param_groups[0]["lr"] == 1e-4
    # given options override the preset's; the defaults are ours and dump as before
    assert RLController(space, objective, preset="nas_segm", ppo_clip=0.2).options.ppo_clip == 0.2
    plain = RLController(space, objective).options
    assert (plain.num_layers, plain.hidden_size, plain.ppo_clip, plain.input_feed) == (
        1, 64, 0.2, "action")
    assert not {"preset", "num_layers", "input_feed", "grad_clip"} & set(plain.model_dump())

    # log-probability by hand: 2 stacked LSTM cells, the top output is the next input
    arch = space.sample(np.random.default_rng(1))
    actions = space.to_decisions(arch)
    x = rl.policy.start
    state = [(torch.zeros(1, 100), torch.zeros(1, 100)) for _ in range(2)]
    want = 0.0
    with torch.no_grad():
        for t, a in enumerate(actions):
            h = x
            for k in range(2):
                state[k] = _lstm_step(cells[k], h, *state[k])
                h = state[k][0]
            want += float(F.log_softmax(rl.policy.heads[t](h), -1)[0, a])
            x = h
    assert rl.log_prob(arch) == pytest.approx(want, abs=1e-5)

    # one PPO update per architecture, on raw reward - baseline
    for arch in rl.ask(3):
        rl.tell(arch, Result.complete({"score": 1.0}))
    assert rl.updates == 3


# -- Polyak averaging -------------------------------------------------------------------------
def test_polyak_average_closed_form():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    avg = PolyakAverage([p], decay=0.9)
    values = [torch.tensor([3.0, 0.0]), torch.tensor([-1.0, 5.0]), torch.tensor([2.0, 2.0])]
    for v in values:
        with torch.no_grad():
            p.copy_(v)
        avg.update()
    d, k = 0.9, len(values)
    want = d ** k * torch.tensor([1.0, -2.0]) + sum((1 - d) * d ** (k - 1 - i) * v
                                                    for i, v in enumerate(values))
    torch.testing.assert_close(avg.avg[0], want)
    avg.copy_to()
    torch.testing.assert_close(p.detach(), want)


def _evaluator(**train) -> tuple[TrainEvaluator, NasSegmSpace, SegmentationTask]:
    task = SegmentationTask(n_samples=40, size=16, num_classes=3, seed=0)
    space = NasSegmSpace(**TINY, n_layers=2, n_stride_layers=0)
    config = TrainConfig(batch_size=8, latency=False, recalibrate_bn=False, num_threads=1,
                         **train)
    return TrainEvaluator(task, space, config, seed=0), space, task


def test_evaluator_polyak_copies_the_average_back(monkeypatch):
    """After training, the weights are the closed-form average of every step's weights."""
    evaluator, space, task = _evaluator(polyak=0.8, steps=3)
    model = task.build_model(space, space.sample(np.random.default_rng(0)))
    start = [p.detach().clone() for p in model.parameters()]
    seen: list[list[torch.Tensor]] = []
    update = PolyakAverage.update

    def record(self):
        seen.append([p.detach().clone() for p in self.params])
        update(self)

    monkeypatch.setattr(PolyakAverage, "update", record)
    evaluator.fit(model, seed=0)
    assert len(seen) == 3
    for j, p in enumerate(model.parameters()):
        want = 0.8 ** 3 * start[j] + sum(0.2 * 0.8 ** (2 - i) * s[j] for i, s in enumerate(seen))
        torch.testing.assert_close(p.detach(), want)
    # without polyak the config dumps as before
    assert "polyak" not in TrainConfig().model_dump()


# -- the auxiliary loss -----------------------------------------------------------------------
class _AuxBody(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.aux_channels = [2, 2]
        self.record_aux = False
        self.aux_outputs = [torch.randn(1, 2, 2, 2), torch.randn(1, 2, 3, 3)]


def test_auxiliary_loss_value():
    """weight * sum_i CE(upsample(clf_i(aux_i)), y); constant logits b give CE = lse(b) - b_y."""
    task = SegmentationTask(num_classes=3)
    body = _AuxBody()
    aux = AuxiliaryLoss(body, 3, 0.15)
    assert body.record_aux
    b = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        for clf in aux.classifiers:
            clf.weight.zero_()
            clf.bias.copy_(b)
    y = torch.tensor([[[0, 1, 2, 2], [1, 1, 0, 2]]])  # 1 x 2 x 4
    ce = torch.logsumexp(b, 0) - b[y]
    want = 0.15 * 2 * float(ce.mean())
    assert float(aux(task, (2, 4), y).detach()) == pytest.approx(want, rel=1e-6)
    loss, terms = aux.add(task, torch.tensor(1.0), {}, (2, 4), y)
    assert float(loss.detach()) == pytest.approx(1.0 + want, rel=1e-6)
    assert set(terms) == {"task", "aux"}
    with pytest.raises(ConfigError, match="aux_loss needs a body with auxiliary outputs"):
        AuxiliaryLoss(nn.Conv2d(3, 3, 1), 3, 0.1)


def test_body_auxiliary_outputs_and_evaluator_term():
    space = NasSegmSpace(**TINY, n_layers=3)
    body = space.build(space.sample(np.random.default_rng(2)), 3)
    x = torch.randn(2, 3, 32, 32)
    out = body(x)
    assert body.aux_outputs == [] and body.aux_channels == [8, 8, 8]
    body.record_aux = True
    torch.testing.assert_close(body(x), out)
    assert len(body.aux_outputs) == 3 and all(a.shape[1] == 8 for a in body.aux_outputs)
    evaluator, space, _ = _evaluator(aux_loss=0.15, steps=2)
    result = evaluator.evaluate(space.sample(np.random.default_rng(0)))
    assert result.ok, result.error
    assert result.metrics["train_loss_aux"] > 0
    assert result.metrics["train_loss"] == pytest.approx(
        result.metrics["train_loss_task"] + result.metrics["train_loss_aux"], rel=1e-5)


# -- the decoder-only first stage -------------------------------------------------------------
def test_decoder_stage_trains_the_decoder_on_cached_encoder_outputs():
    evaluator, space, task = _evaluator()
    torch.manual_seed(0)
    model = task.build_model(space, space.sample(np.random.default_rng(0)))
    encoder = model.body.encoder
    enc_before = {k: v.clone() for k, v in encoder.state_dict().items()}
    dec_before = [p.detach().clone() for p in model.body.decoder.parameters()]
    calls = []
    encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    generator = torch.Generator().manual_seed(0)
    loader = evaluator._train_loader(evaluator._split("train"), generator)
    aux = AuxiliaryLoss(model.body, 3, 0.15)
    stage = DecoderStageConfig(epochs=3, polyak=0.9)
    recent, steps = train_decoder_stage(
        model, stage, loader, torch.device("cpu"), generator, 1e-2, task,
        lambda out, yb, xb: task.loss(out, yb),
        lambda params, lr: torch.optim.Adam(params, lr=lr), None, aux)
    n_batches = len(loader)
    assert steps == 3 * n_batches
    assert len(calls) == n_batches and sum(calls) == len(evaluator._split("train"))  # once each
    assert model.body.encoder is encoder  # restored
    for k, v in encoder.state_dict().items():  # weights and batch-norm statistics unchanged
        assert torch.equal(v, enc_before[k]), k
    assert any(not torch.equal(p, q) for p, q in zip(model.body.decoder.parameters(),
                                                        dec_before, strict=True))
    assert math.isfinite(recent.mean()) and "train_loss_aux" in recent.term_means()
    # samples: only whole batches up to that many are cached
    calls.clear()
    train_decoder_stage(model, DecoderStageConfig(epochs=1, samples=9), loader,
                        torch.device("cpu"), generator, 1e-2, task,
                        lambda out, yb, xb: task.loss(out, yb),
                        lambda params, lr: torch.optim.Adam(params, lr=lr), None)
    assert calls == [8, 8]


def test_decoder_stage_in_the_evaluator_and_bodies_without_a_split(monkeypatch):
    evaluator, space, _ = _evaluator(decoder_stage={"epochs": 1}, polyak=0.99, aux_loss=0.15,
                                     steps=2)
    stages = []
    real = inner_loop.train_decoder_stage

    def spy(*args, **kwargs):
        stages.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr("nastk.evaluation.train.train_decoder_stage", spy)
    result = evaluator.evaluate(space.sample(np.random.default_rng(0)))
    assert result.ok, result.error
    assert stages == [DecoderStageConfig(epochs=1)] and result.info["steps"] == 2
    again = evaluator.evaluate(space.sample(np.random.default_rng(0)))  # deterministic
    assert again.metrics == result.metrics
    with pytest.raises(ConfigError, match="decoder_stage needs a body split into an encoder"):
        train_decoder_stage(nn.Sequential(nn.Conv2d(3, 3, 1)), DecoderStageConfig(), [],
                            torch.device("cpu"), torch.Generator(), 1e-3, None, None, None,
                            None)
