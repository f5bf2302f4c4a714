"""The nas_segm search space: dimensions and size, building and shapes, strides, repeats,
aggregations, zero ops, loose ends, validation, and search by every strategy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nastk import Architecture, InvalidArchitectureError
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.registry import SEARCH_SPACES, instantiate, summary
from nastk.core.result import Result
from nastk.search_spaces.nas_segm import OPS, NasSegmBody, NasSegmGenotype, NasSegmSpace
from nastk.strategies.evolution import RegularizedEvolution
from nastk.strategies.nsga2 import NSGA2
from nastk.strategies.random_search import RandomSearch
from nastk.strategies.rl import RLController

#: tiny widths: encoder 4/6/8 channels, decoder and output 8
TINY = {"stem_channels": 4, "encoder_widths": [4, 6, 8], "encoder_depths": [1, 1, 1],
        "encoder_expand": 2, "decoder_channels": 8, "agg_channels": 8}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_outputs(body: NasSegmBody, x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``body`` on ``x`` and return every decoder layer's output."""
    outs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append(o))
             for layer in body.decoder.layers]
    try:
        body(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


# -- dimensions and size -----------------------------------------------------------------------
def test_defaults_dimensions_and_size():
    space = NasSegmSpace()
    o = space.options
    assert (o.n_templates, o.n_layers, o.n_stride_layers, o.max_repeats) == (3, 4, 2, 3)
    assert (o.decoder_channels, o.agg_channels, o.encoder_widths) == (32, 32, [16, 24, 32])
    assert o.ops == list(OPS) and len(OPS) == 8
    names = [d.name for d in space.dimensions]
    assert names[:3] == ["tpl0_op1", "tpl0_op2", "tpl0_agg"]
    assert names[9:14] == ["layer0_in1", "layer0_in2", "layer0_tpl", "layer0_repeats",
                           "layer0_stride"]
    assert len(names) == 3 * 3 + 4 * 4 + 2
    # (8 * 8 * 2)^3 templates * (2*3*4*5)^2 inputs * 3^4 template picks * 3^4 repeats * 2^2
    assert space.size() == 128**3 * 120**2 * 81 * 81 * 4 == 792_542_262_067_200
    assert summary(NasSegmSpace) and "\n" not in summary(NasSegmSpace)
    assert space.name == "nas_segm"


def test_small_space_size_is_the_hand_computed_product():
    space = NasSegmSpace(ops=["sep3x3", "skip", "zero"], n_templates=2, n_layers=3,
                         n_stride_layers=1, max_repeats=2)
    # templates: (3 * 3 * 2)^2; inputs: layer0 2*2, layer1 3*3, layer2 4*4;
    # template picks 2^3; repeats 2^3; one stride layer: 2
    expected = 18 * 18 * (2 * 2) * (3 * 3) * (4 * 4) * 2 * 2 * 2 * 2 * 2 * 2 * 2
    assert expected == 23_887_872
    assert space.size() == expected == math.prod(space.decisions())
    # the space is small enough to check that distinct decision vectors are distinct archs
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = space.sample(rng)
        assert space.from_decisions(space.to_decisions(a)) == a
        assert space.encode(a).shape == (space.encoding_size(),)


# -- building ----------------------------------------------------------------------------------
def test_random_archs_build_forward_and_backprop():
    space = NasSegmSpace(**TINY)
    rng = np.random.default_rng(0)
    for i in range(30):
        arch = space.sample(rng)
        body = space.build(arch, 3)
        assert isinstance(body, NasSegmBody)
        assert body.out_channels == 8 and body.output_stride == 4
        assert not hasattr(body, "forward_features")
        assert body.decoder.loose_ends == space.decode(arch).loose_ends()
        out = body(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 8, 8, 8)
        assert torch.isfinite(out).all()
        if i % 6 == 0:  # odd sizes: ceil(30/4) x ceil(46/4)
            assert body(torch.randn(1, 3, 30, 46)).shape == (1, 8, 8, 12)
            assert body(torch.randn(1, 3, 33, 41)).shape == (1, 8, 9, 11)
        if i % 3 == 0:  # every parameter takes part (zero ops pass zero gradients)
            out.square().mean().backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all()
                       for p in body.parameters())


def test_default_widths_build():
    space = NasSegmSpace()
    rng = np.random.default_rng(1)
    for _ in range(2):
        body = space.build(space.sample(rng), 1)
        assert body(torch.randn(2, 1, 24, 20)).shape == (2, 32, 6, 5)


def test_gradients_reach_the_encoder():
    space = NasSegmSpace(**TINY, n_templates=1, n_layers=2)
    arch = space.encode_genotype([("sep3x3", "conv1x1", "sum")],
                                 [(0, 1, 0, 1, 2), (2, 0, 0, 2, 1)])
    body = space.build(arch, 3)
    body(torch.randn(2, 3, 32, 32)).square().mean().backward()
    for name, p in body.encoder.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in body.encoder.parameters()) > 0
    assert float(body.encoder.stem[0].weight.grad.abs().sum()) > 0


# -- strides -----------------------------------------------------------------------------------
def test_stride_only_in_the_first_n_stride_layers():
    space = NasSegmSpace(**TINY, n_layers=4, n_stride_layers=2)
    names = {d.name for d in space.dimensions}
    assert {"layer0_stride", "layer1_stride"} <= names
    assert not {"layer2_stride", "layer3_stride"} & names
    assert space["layer0_stride"].choices == (1, 2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        geno = space.decode(space.sample(rng))
        assert all(layer[4] == 1 for layer in geno.layers[2:])
    tpls = [("sep3x3", "skip", "sum")] * 3
    with pytest.raises(InvalidArchitectureError, match="layer 2 has stride 2"):
        space.encode_genotype(tpls, [(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 1, 2), (0, 1, 0, 1)])
    arch = space.encode_genotype(tpls, [(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 1)])
    with pytest.raises(InvalidArchitectureError, match=r"unknown dimensions \['layer2_stride'\]"):
        space.validate({**arch, "layer2_stride": 2})
    with pytest.raises(InvalidArchitectureError, match="layer0_stride"):
        space.validate({**arch, "layer0_stride": 4})
    assert NasSegmSpace(**TINY, n_stride_layers=0).size() * 4 == NasSegmSpace(**TINY).size()


def test_stride_two_halves_the_resolution():
    space = NasSegmSpace(**TINY, n_templates=1, n_layers=3, n_stride_layers=2)
    tpl = [("sep5x5", "gap", "sum")]
    # layer0: stride-8 input, stride 2 -> stride 16; layer1: layer0 (16) and encoder
    # stride-4 map -> resized to stride 4, stride 2 -> 8; layer2: layer1 at stride 1 -> 8
    arch = space.encode_genotype(tpl, [(1, 1, 0, 2, 2), (2, 0, 0, 1, 2), (3, 3, 0, 1)])
    body = space.build(arch, 3)
    outs = layer_outputs(body, torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape[-2:]) for o in outs] == [(4, 4), (8, 8), (8, 8)]
    outs = layer_outputs(body, torch.randn(2, 3, 30, 46))  # stride 8: 4x6; ceil halves
    assert [tuple(o.shape[-2:]) for o in outs] == [(2, 3), (4, 6), (4, 6)]
    assert body(torch.randn(2, 3, 30, 46)).shape == (2, 8, 8, 12)


# -- repeats, aggregations, zero ---------------------------------------------------------------
def test_repeats_give_exact_parameter_counts():
    space = NasSegmSpace(**TINY, n_templates=1, n_layers=1, n_stride_layers=0)
    # encoder: stem 3*4*9 + BN 8 = 116; stage 1 IR(4->4, expand 1): dw 36+8, project 16+8 = 68;
    # stage 2 IR(4->6, expand 2, hidden 8): 32+16, 72+16, 48+12 = 196;
    # stage 3 IR(6->8, expand 2, hidden 12): 72+24, 108+24, 96+16 = 340. Total 720.
    # decoder: adapt in0 (6 -> 8 channels): 48+16 = 64; in1 has 8 channels: identity;
    # per repeat conv3x3 576+16 = 592 and sep3x3 (72+16) + (64+16) = 168;
    # head over the only loose end (the layer, 8 channels): 64+16 = 80; cat merge: 128+16 = 144
    counts = {}
    for agg in ("sum", "cat"):
        for r in (1, 2, 3):
            arch = space.encode_genotype([("conv3x3", "sep3x3", agg)], [(0, 1, 0, r)])
            body = space.build(arch, 3)
            assert n_params(body.encoder) == 720
            counts[agg, r] = n_params(body)
            assert counts[agg, r] == 720 + 64 + 760 * r + 80 + (144 if agg == "cat" else 0)
            assert body(torch.randn(2, 3, 16, 16)).shape == (2, 8, 4, 4)
    assert counts["sum", 1] < counts["sum", 2] < counts["sum", 3]
    # parameter-free ops: repeats change nothing
    free = [n_params(space.build(space.encode_genotype([("skip", "zero", "sum")],
                                                       [(0, 1, 0, r)]), 3)) for r in (1, 2, 3)]
    assert free == [720 + 64 + 80] * 3


def test_more_repeats_never_fewer_params():
    space = NasSegmSpace(**TINY)
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = space.sample(rng).replace(layer0_repeats=1)
        more = arch.replace(layer0_repeats=3)
        geno = space.decode(arch)
        op1, op2, _ = geno.templates[geno.layers[0][2]]
        a, b = n_params(space.build(arch, 3)), n_params(space.build(more, 3))
        if {op1, op2} <= {"skip", "zero"}:
            assert a == b
        else:
            assert b > a


def test_cat_versus_sum():
    space = NasSegmSpace(**TINY, n_templates=1, n_layers=2, n_stride_layers=0)
    layers = [(0, 1, 0, 1), (2, 1, 0, 2)]
    bodies = {agg: space.build(space.encode_genotype([("sep3x3", "gap", agg)], layers), 3)
              for agg in ("sum", "cat")}
    # each cat layer adds a 1x1 conv 16 -> 8 (128) and its batch norm (16)
    assert n_params(bodies["cat"]) - n_params(bodies["sum"]) == 2 * 144
    assert all(isinstance(m.merge, torch.nn.Identity) for m in bodies["sum"].decoder.layers)
    assert all(m.merge[0].in_channels == 16 for m in bodies["cat"].decoder.layers)
    for body in bodies.values():
        assert body(torch.randn(2, 3, 32, 32)).shape == (2, 8, 8, 8)
    # sum is the plain sum of the two branches
    layer = bodies["sum"].decoder.layers[1].eval()
    a, b = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)  # layer 0 (stride 4), input 1 (8)
    with torch.no_grad():
        b2 = torch.nn.functional.interpolate(b, size=(8, 8), mode="bilinear",
                                             align_corners=False)
        want = layer.branches[0](a) + layer.branches[1](b2)
        torch.testing.assert_close(layer(a, b), want)


@pytest.mark.parametrize("agg", ["sum", "cat"])
def test_all_zero_template(agg):
    space = NasSegmSpace(**TINY, n_templates=2, n_layers=3)
    arch = space.encode_genotype([("zero", "zero", agg), ("sep3x3", "zero", "sum")],
                                 [(0, 1, 0, 2, 2), (2, 1, 0, 1, 2), (3, 0, 1, 1)])
    assert space.is_valid(arch)
    body = space.build(arch, 3)
    outs = layer_outputs(body, torch.randn(2, 3, 32, 32))
    assert not torch.count_nonzero(outs[0]) and not torch.count_nonzero(outs[1])
    out = body(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 8, 8, 8) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in body.parameters())
    # a space of zero ops only: every architecture is an all-zero decoder and still works
    zspace = NasSegmSpace(**TINY, ops=["zero"], n_layers=2)
    assert zspace.size() == 2**3 * (4 * 9) * 3**2 * 3**2 * 2**2
    zbody = zspace.build(zspace.sample(np.random.default_rng(0)), 3)
    assert torch.isfinite(zbody(torch.randn(2, 3, 32, 32))).all()


# -- loose ends and genotypes ------------------------------------------------------------------
def test_loose_ends_include_unused_encoder_outputs():
    space = NasSegmSpace(**TINY, n_templates=1, n_layers=3, n_stride_layers=0)
    tpl = [("conv1x1", "sep5x5", "sum")]
    arch = space.encode_genotype(tpl, [(0, 0, 0, 1), (2, 2, 0, 1), (2, 3, 0, 1)])
    geno = space.decode(arch)
    assert geno.loose_ends() == [1, 4]  # encoder stride-8 output (8 ch) and the last layer
    body = space.build(arch, 3)
    assert body.decoder.head[0].in_channels == 8 + 8
    arch = space.encode_genotype(tpl, [(0, 1, 0, 1), (0, 1, 0, 1), (0, 1, 0, 1)])
    assert space.decode(arch).loose_ends() == [2, 3, 4]
    assert space.build(arch, 3).decoder.head[0].in_channels == 3 * 8
    s = space.genotype(arch)
    assert s == ("T0=(conv1x1,sep5x5,sum) | L0=(0,1)->T0x1 L1=(0,1)->T0x1 L2=(0,1)->T0x1 | "
                 "out=cat(2,3,4)")


def test_genotype_round_trip():
    space = NasSegmSpace(**TINY)
    rng = np.random.default_rng(5)
    for _ in range(10):
        arch = space.sample(rng)
        geno = space.decode(arch)
        assert isinstance(geno, NasSegmGenotype)
        assert space.encode_genotype(geno.templates, geno.layers) == arch
        assert len(geno.templates) == 3 and len(geno.layers) == 4
        assert space.genotype(arch).count("->T") == 4
    assert Architecture.from_json(arch.to_json()) == arch


# -- validation --------------------------------------------------------------------------------
def test_invalid_architectures_name_the_dimension():
    space = NasSegmSpace(**TINY)
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(InvalidArchitectureError, match=r"'layer1_in1': 3 not in \[0, 1, 2\]"):
        space.validate(arch.replace(layer1_in1=3))
    with pytest.raises(InvalidArchitectureError, match="'layer2_tpl'"):
        space.validate(arch.replace(layer2_tpl=3))
    with pytest.raises(InvalidArchitectureError, match=r"'layer0_repeats'.*integers 1\.\.3"):
        space.validate(arch.replace(layer0_repeats=4))
    with pytest.raises(InvalidArchitectureError, match="'tpl1_op2'"):
        space.validate(arch.replace(tpl1_op2="sep7x7"))
    with pytest.raises(InvalidArchitectureError, match="'tpl0_agg'"):
        space.validate(arch.replace(tpl0_agg="psum"))
    with pytest.raises(InvalidArchitectureError, match=r"missing dimensions \['layer3_in1'\]"):
        space.validate({k: v for k, v in arch.items() if k != "layer3_in1"})
    with pytest.raises(InvalidArchitectureError, match="expected 3 templates and 4 layers"):
        space.encode_genotype([("skip", "skip", "sum")], [])
    with pytest.raises(InvalidArchitectureError, match="'layer1_in1'"):
        space.build(arch.replace(layer1_in1=3), 3)


def test_options_validation():
    with pytest.raises(ConfigError, match=r"unknown ops \['maxpool'\]"):
        NasSegmSpace(ops=["sep3x3", "maxpool"])
    with pytest.raises(ConfigError, match="duplicates"):
        NasSegmSpace(ops=["skip", "skip"])
    with pytest.raises(ConfigError, match="ops: needs at least one choice"):
        NasSegmSpace(ops=[])
    with pytest.raises(ConfigError, match=r"n_stride_layers \(5\) must be <= n_layers \(4\)"):
        NasSegmSpace(n_stride_layers=5)
    with pytest.raises(ConfigError, match="exactly 3 values"):
        NasSegmSpace(encoder_widths=[16, 24])
    with pytest.raises(ConfigError, match="must be >= 1"):
        NasSegmSpace(encoder_depths=[1, 0, 1])
    with pytest.raises(ConfigError, match="unknown field"):
        NasSegmSpace(n_cells=3)
    with pytest.raises(ConfigError, match="max_repeats"):
        NasSegmSpace(max_repeats=0)
    registered = "nas_segm" in SEARCH_SPACES
    if not registered:
        SEARCH_SPACES.register("nas_segm", NasSegmSpace)
    try:
        with pytest.raises(ConfigError, match=r"space\.options\.ops: .*unknown ops"):
            instantiate(SEARCH_SPACES, "nas_segm", {"ops": ["conv7x7"]}, where="space.options")
        space = instantiate(SEARCH_SPACES, "nas_segm", {"n_layers": 2, "n_stride_layers": 1})
        assert isinstance(space, NasSegmSpace) and space.n_layers == 2
    finally:
        if not registered:
            SEARCH_SPACES.unregister("nas_segm")


# -- search ------------------------------------------------------------------------------------
def _dummy(space: NasSegmSpace, arch: Architecture) -> Result:
    """Prefers separable ops, few repeats and low input positions; also returns a cost."""
    geno = space.decode(arch)
    score = sum(op.startswith("sep") for t in geno.templates for op in t[:2])
    score -= 0.1 * sum(layer[3] for layer in geno.layers)
    return Result.complete({"score": float(score), "cost": float(sum(space.to_decisions(arch)))})


@pytest.mark.parametrize("make", [
    lambda s, o: RandomSearch(s, o, seed=0),
    lambda s, o: RegularizedEvolution(s, o, seed=0, population=4, sample_size=2,
                                      crossover_prob=0.5),
    lambda s, o: NSGA2(s, o, seed=0, population=4),
    lambda s, o: RLController(s, o, seed=0, batch_size=2, algorithm="ppo", hidden_size=16),
], ids=["random", "evolution", "nsga2", "rl"])
def test_strategies_search_the_space(make):
    space = NasSegmSpace(**TINY)
    objective = Objective(metric="score", costs=("cost",))
    strategy = make(space, objective)
    seen = set()
    for _ in range(6):
        for arch in strategy.ask(2):
            assert space.validate(arch) == arch
            seen.add(arch.key)
            strategy.tell(arch, _dummy(space, arch))
    assert len(seen) >= 6
    space.build(arch, 3)  # the last proposal builds
