"""Data-parallel building blocks: sharded loaders and batch norm over the global batch."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from nastk.data.loaders import make_loader
from nastk.nn.elastic import ElasticBatchNorm2d
from nastk.nn.sync_batchnorm import global_statistics, synchronize_batchnorm
from nastk.training.data_parallel import DataParallel


def test_shards_of_a_shuffled_loader_together_are_its_batches():
    data = TensorDataset(torch.arange(50.0), torch.arange(50))
    whole = [x.tolist() for x, _ in make_loader(None, data, 12, shuffle=True, drop_last=True,
                                                generator=torch.Generator().manual_seed(3))]
    shards = [[x.tolist() for x, _ in make_loader(None, data, 12, shuffle=True, drop_last=True,
                                                  generator=torch.Generator().manual_seed(3),
                                                  shard=(r, 3))] for r in range(3)]
    assert len(whole) == 4 and all(len(s) == 4 for s in shards)
    for i, batch in enumerate(whole):
        assert shards[0][i] + shards[1][i] + shards[2][i] == batch
        assert [len(s[i]) for s in shards] == [4, 4, 4]


def test_uneven_shards_and_their_loss_scale():
    dps = [DataParallel(rank=r, world=3) for r in range(3)]
    losses = torch.rand(10, generator=torch.Generator().manual_seed(0))
    shards = [losses[dp.shard(10)] for dp in dps]
    assert [len(s) for s in shards] == [3, 3, 4]
    # the workers' scaled shard means, averaged, are the global batch's mean loss
    scaled = [dp.loss_scale(len(s), 10) * s.mean() for dp, s in zip(dps, shards, strict=True)]
    assert float(sum(scaled) / 3) == pytest.approx(float(losses.mean()), rel=1e-6)
    assert DataParallel(rank=1, world=2).loss_scale(4, 8) == 1.0  # equal shards: unscaled


def _bn_pair(seed: int):
    torch.manual_seed(seed)
    ref = ElasticBatchNorm2d(6)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
        ref.running_mean.uniform_(-1, 1)
    return ref


def _worker(rank: int, world: int, init: str, x: torch.Tensor, g: torch.Tensor,
            out: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        bn = _bn_pair(0)
        net = torch.nn.Sequential(bn)
        assert synchronize_batchnorm(net) == 1
        n = x.shape[0] // world
        xs = x[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        with global_statistics(None):
            y = net(xs)
            # the loss of the global batch is the mean over workers of the shard losses
            (y * g[rank * n:(rank + 1) * n]).sum().backward()
        dist.all_reduce(bn.weight.grad)  # the workers' shares sum to the whole batch's
        grads = [torch.zeros_like(xs.grad) for _ in range(world)]
        dist.all_gather(grads, xs.grad)
        ys = [torch.zeros_like(y) for _ in range(world)]
        dist.all_gather(ys, y.detach().contiguous())
        if rank == 0:
            out["y"] = torch.cat(ys)
            out["grad"] = torch.cat(grads)
            out["weight_grad"] = bn.weight.grad.clone()
            out["running_mean"] = bn.running_mean.clone()
            out["running_var"] = bn.running_var.clone()
            # outside the block the layer is plain batch norm again (rank 0 evaluates alone)
            out["plain"] = net(x[:4, :4]).detach()
    finally:
        dist.destroy_process_group()


def _run(rank, world, init, x, g, path):
    out: dict = {}
    _worker(rank, world, init, x, g, out)
    if rank == 0:
        torch.save(out, path)


@pytest.mark.slow
def test_global_batchnorm_equals_one_batchnorm_over_the_whole_batch():
    torch.manual_seed(1)
    x = torch.randn(8, 4, 5, 5) * 2 + 3  # 4 of the layer's 6 channels active
    g = torch.randn(8, 4, 5, 5)
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'store')}"
        result = os.path.join(tmp, "out.pt")
        mp.spawn(_run, args=(2, init, x, g, result), nprocs=2, join=True)
        got = torch.load(result, weights_only=True)
    ref = _bn_pair(0)
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    (y * g).sum().backward()
    assert torch.allclose(got["y"], y.detach(), atol=1e-5)
    assert torch.allclose(got["grad"], xr.grad, atol=1e-5)
    assert torch.allclose(got["weight_grad"], ref.weight.grad, atol=1e-4)
    assert torch.allclose(got["running_mean"], ref.running_mean, atol=1e-6)
    assert torch.allclose(got["running_var"], ref.running_var, atol=1e-5)
    plain = _bn_pair(0)
    assert torch.allclose(got["plain"], plain(x[:4, :4]), atol=1e-6)


# -- the trainer as one of two workers, in float64 ---------------------------------------------
SPACE = {"name": "ofa_mbv3", "options": {"stages": [8, 16], "final_channels": 32}}
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 240, "image_size": 16,
                    "num_classes": 4}}
#: float64: the workers' sums over the global batch differ from one worker's only in order
#: (~1e-16 relative), too little to move an activation across a ReLU's kink, so the weights
#: agree to rounding after every step (largest difference measured over 6 steps: 2.5e-14)
FLOAT64_ATOL = 1e-9


def _trained_weights(rank: int, world: int, steps: int, sync: bool = True) -> dict:
    from nastk.config.compose import build_supernet_model
    from nastk.config.schema import SupernetConfig, parse_config
    from nastk.training.supernet import PhaseSampler, SupernetTrainer

    torch.set_num_threads(1)
    cfg = parse_config({"name": "dp", "seed": 3, "space": SPACE, "task": TASK,
                        "training": {"epochs": 1, "batch_size": 24, "n_random": 1,
                                     "lr": 0.05, "sync_batchnorm": sync}}, "test",
                       SupernetConfig)
    torch.manual_seed(cfg.seed)
    model = build_supernet_model(cfg)
    model.net.double()
    dp = DataParallel(rank, world) if world > 1 else None
    trainer = SupernetTrainer(model, cfg.training, seed=cfg.seed, data_parallel=dp)
    sampler = PhaseSampler(model, None)
    loader = trainer._loader(0)
    assert len(loader) >= steps
    for step, (x, y) in zip(range(steps), loader, strict=False):
        assert len(x) == 24 // world
        trainer.train_step(x.double(), y, sampler, trainer.step_rng(step))
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def _train_worker(rank, world, init, steps, path, sync):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        weights = _trained_weights(rank, world, steps, sync)
        if rank == 0:
            torch.save(weights, path)
    finally:
        dist.destroy_process_group()


def _two_workers(steps: int, sync: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "two.pt")
        mp.spawn(_train_worker, args=(2, f"file://{os.path.join(tmp, 'store')}", steps, path,
                                      sync), nprocs=2, join=True)
        return torch.load(path, weights_only=True)


def _largest_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - v).abs().max()) for k, v in b.items() if v.is_floating_point())


@pytest.mark.slow
def test_two_workers_with_half_batches_train_the_weights_of_one_with_the_whole():
    steps = 6  # the epoch's 6 batches of 24 (144 training images)
    one = _trained_weights(0, 1, steps)
    worst = _largest_difference(_two_workers(steps, sync=True), one)
    assert worst < FLOAT64_ATOL, worst
    # with batch norm per worker (sync_batchnorm false, the default) each worker normalises
    # 12 images, not 24: another function, as documented
    assert _largest_difference(_two_workers(steps, sync=False), one) > 1e-4
    # the steps changed the weights by far more than the tolerance
    fresh = _trained_weights(0, 1, 0)
    assert _largest_difference(one, fresh) > 1e-2
