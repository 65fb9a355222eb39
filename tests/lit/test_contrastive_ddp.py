"""The contrastive loss under real DDP (2 gloo processes): gathered with gradients, it equals the single-process loss
on the same global batch, and so do the gradients DDP averages; ranks may hold different numbers of pairs. The
embeddings collected for retrieval metrics are the whole split's on every rank."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmattn_towers import identity_dual_encoder

from mmattn.lit import ContrastiveModule
from mmattn.lit.retrieval import PairBank

GLOBAL = 7
# Rank 0 holds 4 pairs, rank 1 holds 3: the last batch of a split need not divide evenly.
ROWS = {0: slice(0, 4), 1: slice(4, 7)}


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "vec": torch.randn(GLOBAL, 3, generator=g),
        "ids": torch.randint(0, 8, (GLOBAL, 2), generator=g),
        "match": torch.tensor([0, 1, 2, 0, 3, 1, 4]),  # duplicates across the two ranks
    }


def _module(loss: str) -> ContrastiveModule:
    torch.manual_seed(0)
    net = identity_dual_encoder(init_logit_bias=-2.0 if loss == "siglip" else None)
    return ContrastiveModule(net, loss=loss)


def _loss_and_grads(module: ContrastiveModule, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    module.zero_grad()
    a, b, match = module._pairs(batch)
    loss = module._loss(a, b, match)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters()]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        batch = _batch()
        results = {}
        for loss in ("clip", "siglip"):
            module = _module(loss)
            local = {key: value[ROWS[rank]] for key, value in batch.items()}
            value, grads = _loss_and_grads(module, local)
            # What DDP and log(sync_dist=True) do: average the ranks' values and gradients.
            dist.all_reduce(value)
            for grad in grads:
                dist.all_reduce(grad)
            results[loss] = (value / 2, [grad / 2 for grad in grads])
        bank = PairBank()
        bank.update(local["vec"], local["ids"].float(), local["match"])
        results["bank"] = bank.compute()
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gathered_loss_equals_the_single_process_loss_on_the_global_batch(tmp_path: Path) -> None:
    out = str(tmp_path / "ddp.pt")
    mp.start_processes(_worker, args=(_free_port(), out), nprocs=2, start_method="spawn")
    results = torch.load(out, weights_only=True)
    for loss in ("clip", "siglip"):
        single, single_grads = _loss_and_grads(_module(loss), _batch())
        value, grads = results[loss]
        assert torch.allclose(value, single, atol=1e-5), (loss, value, single)
        assert len(grads) == len(single_grads)
        for got, want in zip(grads, single_grads):
            assert torch.allclose(got, want, atol=1e-5), loss
        # Not trivially equal: the logit scale (and the towers) learn from these gradients.
        assert any(g.abs().sum() > 0 for g in single_grads)
    batch = _batch()
    a, b, match = results["bank"]
    assert torch.equal(a, batch["vec"]) and torch.equal(b, batch["ids"].float()) and torch.equal(match, batch["match"])
