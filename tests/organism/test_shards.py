"""Sharded training steps (vlmdiag.organism.supervised.Shards): a batch split into shards gives the
whole batch's gradient, and one process per shard gives bitwise what one process gives."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from vlmdiag.organism.supervised import Shards


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3),
                               torch.nn.Linear(3, 3))  # the last layer is skipped: no gradient


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randint(3, (8,), generator=g)


def _step(shards: Shards) -> tuple[list, float]:
    """One sharded step on :func:`_model`; returns (the gradients, None where unreached), loss."""
    model = _model()
    x, y = _data()
    params = list(model.parameters())
    loss = torch.zeros(())
    for part in shards.mine(list(range(len(x)))):
        logits = model[2](model[1](model[0](x[part])))
        loss = loss + shards.backward(torch.nn.functional.cross_entropy(logits, y[part]))
    loss = shards.reduce(params, loss)
    return [p.grad for p in params], loss


def test_shards_split_the_batch_in_order():
    assert Shards(2).mine(list(range(6))) == [[0, 1, 2], [3, 4, 5]]
    assert Shards(2, rank=1, world=2).mine(list(range(6))) == [[3, 4, 5]]
    assert Shards().mine([1, 2]) == [[1, 2]]
    with pytest.raises(ValueError, match="does not split into 2 equal shards"):
        Shards(2).mine([1, 2, 3])
    with pytest.raises(ValueError, match="cannot split 4 shards"):
        Shards(4, rank=0, world=2)


def test_two_shards_give_the_whole_batchs_gradient():
    whole, whole_loss = _step(Shards(1))
    sharded, sharded_loss = _step(Shards(2))
    assert sharded_loss == pytest.approx(whole_loss, rel=1e-6)
    for a, b in zip(whole, sharded):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert whole[-1] is None and whole[0] is not None


def _rank(rank: int, rendezvous: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    try:
        grads, loss = _step(Shards(2, rank=rank, world=2))
        torch.save({"grads": grads, "loss": loss}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_one_process_per_shard_is_bitwise_one_process(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, f"file://{tmp_path}/rendezvous", str(tmp_path)))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the thread count changes the rounding
    try:
        grads, loss = _step(Shards(2))
    finally:
        torch.set_num_threads(threads)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["loss"] == loss
        assert len(got["grads"]) == len(grads)
        for a, b in zip(grads, got["grads"]):
            assert (a is None and b is None) or torch.equal(a, b)
