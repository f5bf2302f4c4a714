"""Dynamic (attention-mixed, CondConv-style) convolutions: elastic layer, plain extraction,
temperature annealing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.dynamic_conv import (
    DynamicConv2d,
    ElasticDynamicConv2d,
    anneal_temperature,
    dynamic_conv2d,
)
from nastk.nn.elastic import ElasticConv2d


def perturb(module: nn.Module) -> None:
    """Move the transforms off identity and make the attention clearly input dependent."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "transforms" in name:
                p.add_(0.05 * torch.randn_like(p))
            elif name.startswith("fc"):
                p.mul_(3.0)
            elif name == "bias":
                p.normal_()


def reference(layer: ElasticDynamicConv2d, x: torch.Tensor) -> torch.Tensor:
    """Per-sample loop: mix the kernels by hand, then an ordinary F.conv2d per sample."""
    in_c = x.size(1)
    out_c = in_c if layer.depthwise else layer.active_out
    w = layer.active_weight(in_c, out_c)
    k = w.size(-1)
    attn = layer.attention(x)
    outs = []
    for b in range(x.size(0)):
        wb = sum(attn[b, i] * w[i] for i in range(layer.num_kernels))
        bb = (sum(attn[b, i] * layer.bias[i, :out_c] for i in range(layer.num_kernels))
              if layer.bias is not None else None)
        outs.append(F.conv2d(x[b:b + 1], wb, bb, layer.stride, layer.dilation * (k - 1) // 2,
                             layer.dilation, in_c if layer.depthwise else 1))
    return torch.cat(outs)


# (1) K = 1: the attention is a constant 1, so this is an ordinary (elastic) conv --------------
@pytest.mark.parametrize("depthwise", [False, True])
def test_single_kernel_equals_elastic_conv(depthwise):
    torch.manual_seed(0)
    max_out = 16 if depthwise else 24
    dyn = ElasticDynamicConv2d(16, max_out, (3, 5, 7), num_kernels=1, stride=2,
                               depthwise=depthwise, bias=True)
    perturb(dyn)
    conv = ElasticConv2d(16, max_out, (3, 5, 7), stride=2, depthwise=depthwise, bias=True)
    with torch.no_grad():
        conv.weight.copy_(dyn.weight[0])
        conv.bias.copy_(dyn.bias[0])
        for key, t in dyn.transforms.items():
            conv.transforms[key].copy_(t)
    for k, c_in, c_out in ((7, 16, 24), (5, 10, 7), (3, 5, 13)):
        c_out = c_in if depthwise else c_out
        dyn.set_active(out_channels=None if depthwise else c_out, kernel=k)
        conv.set_active(out_channels=None if depthwise else c_out, kernel=k)
        x = torch.randn(3, c_in, 9, 9)
        torch.testing.assert_close(dyn(x), conv(x), atol=1e-5, rtol=0)

    # Built by hand for the largest kernel: the plain weight slice, no transform involved.
    dyn.set_active(out_channels=None if depthwise else 11, kernel=7)
    x = torch.randn(2, 8, 10, 10)
    out_c = 8 if depthwise else 11
    w = dyn.weight[0, :out_c] if depthwise else dyn.weight[0, :out_c, :8]
    expected = F.conv2d(x, w, dyn.bias[0, :out_c], 2, 3, 1, 8 if depthwise else 1)
    torch.testing.assert_close(dyn(x), expected, atol=1e-5, rtol=0)
    # ... and the 3x3 without transforms is the plain centre crop.
    plain = ElasticDynamicConv2d(8, 8, (3, 7), num_kernels=1, kernel_transform=False)
    plain.set_active(kernel=3)
    expected = F.conv2d(x, plain.weight[0, :, :, 2:5, 2:5], None, 1, 1)
    torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=0)


# (2) the batched grouped conv equals a per-sample loop ---------------------------------------
@pytest.mark.parametrize("depthwise", [False, True])
def test_grouped_batching_matches_per_sample_loop(depthwise):
    torch.manual_seed(1)
    max_out = 12 if depthwise else 20
    layer = ElasticDynamicConv2d(12, max_out, (3, 5, 7), num_kernels=4, stride=2,
                                 depthwise=depthwise, bias=True, temperature=1.0)
    perturb(layer)
    for k in (3, 5, 7):
        for c_in, c_out in ((12, 20), (7, 9), (3, 1)):
            c_out = c_in if depthwise else c_out
            layer.set_active(out_channels=None if depthwise else c_out, kernel=k)
            x = torch.randn(5, c_in, 11, 11)
            y = layer(x)
            assert y.shape == (5, c_out, 6, 6)
            torch.testing.assert_close(y, reference(layer, x), atol=1e-5, rtol=0)


def test_dilation_and_functional_form():
    torch.manual_seed(2)
    layer = ElasticDynamicConv2d(6, 8, (3, 5), num_kernels=3, dilation=2, temperature=1.0)
    perturb(layer)
    layer.set_active(out_channels=5, kernel=3)
    x = torch.randn(4, 6, 9, 9)
    y = layer(x)
    assert y.shape == (4, 5, 9, 9)
    torch.testing.assert_close(y, reference(layer, x), atol=1e-5, rtol=0)
    # batch of one
    torch.testing.assert_close(layer(x[:1]), y[:1], atol=1e-5, rtol=0)
    # one-hot attention picks a single kernel
    w = torch.randn(3, 5, 6, 3, 3)
    attn = torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3)
    torch.testing.assert_close(dynamic_conv2d(x, attn, w, padding=1), F.conv2d(x, w[1], None,
                               padding=1), atol=1e-5, rtol=0)


# (3) extract: a plain DynamicConv2d with the same output --------------------------------------
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_extract_matches(depthwise, training):
    torch.manual_seed(3)
    max_out = 16 if depthwise else 24
    layer = ElasticDynamicConv2d(16, max_out, (3, 5, 7), num_kernels=4, stride=2,
                                 depthwise=depthwise, bias=True, temperature=2.5)
    perturb(layer)
    layer.train(training)
    gen = torch.Generator().manual_seed(4)
    for _ in range(6):
        k = layer.kernel_sizes[int(torch.randint(0, 3, (1,), generator=gen))]
        c_in = int(torch.randint(1, 17, (1,), generator=gen))
        c_out = c_in if depthwise else int(torch.randint(1, 25, (1,), generator=gen))
        layer.set_active(out_channels=None if depthwise else c_out, kernel=k)
        x = torch.randn(3, c_in, 10, 10)
        plain = layer.extract(c_in)
        assert type(plain) is DynamicConv2d and plain.training == training
        assert plain.weight.shape == (4, c_out, 1 if depthwise else c_in, k, k)
        assert plain.temperature == layer.temperature
        assert not any(isinstance(m, ElasticDynamicConv2d) for m in plain.modules())
        assert all(type(m) in (DynamicConv2d, nn.Linear) for m in plain.modules())
        torch.testing.assert_close(plain(x), layer(x), atol=1e-5, rtol=0)
        # a copy: changing the supernet does not change the extracted layer
        before = plain(x)
        with torch.no_grad():
            layer.weight.add_(1.0)
        torch.testing.assert_close(plain(x), before)
        with torch.no_grad():
            layer.weight.sub_(1.0)


def test_plain_dynamic_conv_standalone():
    torch.manual_seed(5)
    conv = DynamicConv2d(8, 12, 5, num_kernels=3, stride=2, bias=True, temperature=1.0)
    assert conv.fc1.out_features == 4 and conv.fc2.out_features == 3
    x = torch.randn(4, 8, 9, 9)
    y = conv(x)
    assert y.shape == (4, 12, 5, 5)
    attn = conv.attention(x)
    ref = torch.cat([F.conv2d(x[b:b + 1], (attn[b, :, None, None, None, None] * conv.weight)
                              .sum(0), attn[b] @ conv.bias, 2, 2) for b in range(4)])
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
    dw = DynamicConv2d(6, 6, 3, depthwise=True)
    assert dw(torch.randn(2, 6, 7, 7)).shape == (2, 6, 7, 7)
    assert "num_kernels=3" in repr(conv) and "temperature=1" in repr(conv)
    with pytest.raises(ValueError):
        DynamicConv2d(6, 8, 3, depthwise=True)
    with pytest.raises(ValueError):
        DynamicConv2d(6, 8, 4)


# (4) attention: a distribution, sharpened / flattened by the temperature; annealing ----------
def test_attention_temperature():
    torch.manual_seed(6)
    layer = ElasticDynamicConv2d(8, 8, (3,), num_kernels=4)
    perturb(layer)
    x = torch.randn(6, 8, 7, 7)
    for t in (1e-3, 1.0, 30.0, 1e4):
        layer.set_temperature(t)
        a = layer.attention(x)
        assert a.shape == (6, 4)
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(1), torch.ones(6))
    layer.set_temperature(1e-3)
    sharp = layer.attention(x)
    assert (sharp.max(1).values > 0.99).all()  # near one-hot
    layer.set_temperature(1e4)
    torch.testing.assert_close(layer.attention(x), torch.full((6, 4), 0.25), atol=1e-3, rtol=0)
    with pytest.raises(ValueError):
        layer.set_temperature(0.0)


def test_anneal_temperature():
    model = nn.Sequential(ElasticDynamicConv2d(4, 8), nn.ReLU(),
                          nn.Sequential(ElasticDynamicConv2d(8, 8, depthwise=True)),
                          DynamicConv2d(8, 8))
    dyn = [m for m in model.modules() if isinstance(m, (ElasticDynamicConv2d, DynamicConv2d))]
    assert len(dyn) == 3
    for progress, expected in ((0.0, 30.0), (0.5, 15.5), (1.0, 1.0), (2.0, 1.0), (-1.0, 30.0)):
        assert anneal_temperature(model, progress) == pytest.approx(expected)
        assert all(m.temperature == pytest.approx(expected) for m in dyn)
    assert anneal_temperature(model, 0.25, start=10.0, end=2.0) == pytest.approx(8.0)
    assert all(m.temperature == pytest.approx(8.0) for m in dyn)


# (5) gradients reach the kernels, the attention and the transform matrices -------------------
@pytest.mark.parametrize("depthwise", [False, True])
def test_gradients_flow(depthwise):
    torch.manual_seed(7)
    layer = ElasticDynamicConv2d(8, 8 if depthwise else 10, (3, 5, 7), num_kernels=4,
                                 depthwise=depthwise, bias=True, temperature=1.0)
    perturb(layer)
    layer.set_active(out_channels=None if depthwise else 6, kernel=3)
    x = torch.randn(4, 8, 8, 8)
    (layer(x) * torch.randn(4, 6 if not depthwise else 8, 8, 8)).sum().backward()
    named = dict(layer.named_parameters())
    for name in ("weight", "bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                 "transforms.7to5", "transforms.5to3"):
        g = named[name].grad
        assert g is not None and g.abs().sum() > 0, name
        assert torch.isfinite(g).all(), name
    for k in range(4):  # every kernel is used
        assert layer.weight.grad[k].abs().sum() > 0


# (6) output shape; the attention really depends on the input ---------------------------------
def test_shape_and_input_dependence():
    torch.manual_seed(8)
    layer = ElasticDynamicConv2d(16, 32, (3, 5), num_kernels=4, stride=2, temperature=1.0)
    perturb(layer)
    layer.set_active(out_channels=20, kernel=5)
    x = torch.randn(8, 12, 15, 15)
    assert layer(x).shape == (8, 20, 8, 8)
    a = layer.attention(x)
    assert (a - a.mean(0)).abs().max() > 1e-2  # different samples, different mixtures
    # Each sample's output depends only on itself: a batch equals its samples one by one,
    # and swapping in another sample changes the kernel, not just the input.
    y = layer(x)
    torch.testing.assert_close(torch.cat([layer(x[i:i + 1]) for i in range(8)]), y,
                               atol=1e-5, rtol=0)
    shared = torch.stack([F.conv2d(x[i:i + 1], (a[0, :, None, None, None, None] *
                                                layer.active_weight(12)).sum(0), None, 2, 2)[0]
                          for i in range(8)])
    assert (shared[1:] - y[1:]).abs().max() > 1e-3
    with pytest.raises(ValueError):
        layer(torch.randn(1, 17, 5, 5))
    assert "num_kernels=4" in repr(layer) and "active_out=20" in repr(layer)


def test_reordering_channels_keeps_the_function():
    """Permuting a dynamic conv's input channels together with its producer's outputs (and the
    attention's input columns) leaves the composed function unchanged."""
    from nastk.nn.elastic import (
        ElasticConv2d,
        importance_order,
        reorder_in_channels,
        reorder_out_channels,
    )

    torch.manual_seed(0)
    producer = ElasticConv2d(6, 12, (1,))
    for depthwise in (False, True):
        consumer = ElasticDynamicConv2d(12, 12 if depthwise else 10, (3,), num_kernels=3,
                                        depthwise=depthwise, temperature=2.0)
        x = torch.randn(2, 6, 7, 7)
        before = consumer(producer(x))
        order = importance_order(consumer)
        assert sorted(order.tolist()) == list(range(12))
        reorder_out_channels(producer, order)
        reorder_in_channels(consumer, order)
        after = consumer(producer(x))
        if depthwise:  # a depthwise conv's outputs follow its inputs: compare permuted
            before = before[:, order]
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
        reorder_out_channels(producer, torch.argsort(order))  # undo for the next round
