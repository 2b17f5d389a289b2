"""The defects found by the second review of training against imaginaire (issue 33).

Each test names in its docstring the revert it was seen failing with."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from vid2vid.training import TrainingError
from vid2vid.training.distributed import average_gradients
from vid2vid.training.frame_step import check_finite

# ------------------------------------------------------------------- 1. data parallel and unused parameters


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


IDLE_UPDATES = 30  # updates in which the second layer is used by nobody, before every rank uses it


def _two_layers() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"always": torch.nn.Linear(4, 4), "late": torch.nn.Linear(4, 4),
                                 "rank0": torch.nn.Linear(4, 4)})
    return model, torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999))


def _loss(model, x: torch.Tensor, update: int, rank0_samples: torch.Tensor) -> torch.Tensor:
    """The mean over samples of a per-sample loss: `late` joins after IDLE_UPDATES; `rank0` is used on the
    samples flagged (all of them on rank 0's half of the global batch, none on rank 1's)."""
    y = model["always"](x)
    if update >= IDLE_UPDATES:
        y = model["late"](y)
    y = torch.where(rank0_samples[:, None], model["rank0"](y), y)
    return (y ** 2).mean()


def _batches(updates: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 4, generator=generator) for _ in range(updates)]


def _train(rank: int, world: int, updates: int) -> dict:
    """`updates` Adam steps on this rank's share of each global batch of 4 samples; the state afterwards."""
    model, optimizer = _two_layers()
    for update, x in enumerate(_batches(updates)):
        share = x.chunk(world)[rank]
        flags = torch.arange(4).chunk(world)[rank] < 2  # samples 0 and 1: rank 0's half
        optimizer.zero_grad(set_to_none=True)
        _loss(model, share, update, flags).backward()
        average_gradients(list(model.parameters()), world)
        optimizer.step()
    steps = {name: float(optimizer.state[p]["step"]) if p in optimizer.state else 0.0
             for name, p in model.named_parameters()}
    return {"weights": {k: v.clone() for k, v in model.state_dict().items()}, "steps": steps}


def _train_worker(rank, world, port, updates, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo")
    torch.save(_train(rank, world, updates), os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_1_two_processes_step_what_one_process_steps(tmp_path):
    """Two gloo processes on halves of each batch against one process on the whole batch: the same Adam step
    counts (a layer nobody used is never stepped), the same weights. Reverted the used flags (unused gradients
    all-reduced as zeros): `late` had 31 Adam steps against 1, and its first real step was 2.8 times the learning
    rate (0.028; one process: 0.01, the learning rate, as Adam's first step is; after 3000 idle updates, 30
    times)."""
    updates = IDLE_UPDATES + 1
    mp.spawn(_train_worker, args=(2, _free_port(), updates, str(tmp_path)), nprocs=2)
    single = _train(0, 1, updates)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["steps"] == single["steps"], got["steps"]
        for name, want in single["weights"].items():
            torch.testing.assert_close(got["weights"][name], want, atol=1e-5, rtol=1e-5, msg=name)
    assert single["steps"]["late.weight"] == 1 and single["steps"]["always.weight"] == updates
    assert single["steps"]["rank0.weight"] == updates  # used on half of every batch: every update
    fresh, _ = _two_layers()
    first_step = (single["weights"]["late.weight"] - fresh.state_dict()["late.weight"]).abs().max()
    assert abs(float(first_step) - 1e-2) < 1e-4  # Adam's first step: the learning rate


# ------------------------------------------------------------------------ 4. a NaN on one rank stops them all


def _nan_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    # A short timeout, so that the revert fails in seconds rather than hanging for the default 30 minutes.
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=20))
    loss = torch.tensor(float("nan") if rank == 1 else 0.5)
    terms = {"G/warp": loss, "G/l1": torch.tensor(0.1), "G/total": loss + 0.1}
    try:
        check_finite(terms, "G/total", "iteration 7, frame 3", Path("run/checkpoints/00000006"), world)
        torch.distributed.all_reduce(torch.zeros(3))  # the gradients' all-reduce that came next
        outcome = "went on"
    except TrainingError as exc:
        outcome = str(exc)
    except RuntimeError as exc:  # gloo's timeout
        outcome = f"timed out: {type(exc).__name__}"
    Path(out_dir, f"rank{rank}.txt").write_text(outcome)


def test_4_a_nan_on_one_rank_stops_every_rank_with_the_same_line(tmp_path):
    """Rank 1's loss is NaN, rank 0's is finite. Reverted the agreement (each rank checked its own terms):
    rank 1 stopped, rank 0 went on to the gradients' all-reduce and waited there until the process group's
    timeout."""
    mp.spawn(_nan_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    want = ("training stopped at iteration 7, frame 3: loss G/warp is nan on rank 1; the last good checkpoint is "
            "run/checkpoints/00000006")
    assert [Path(tmp_path, f"rank{r}.txt").read_text() for r in range(2)] == [want, want]


def test_4_one_process_names_the_first_term_that_is_not_finite():
    terms = {"G/l1": torch.tensor(0.1), "G/warp": torch.tensor(float("inf")), "G/total": torch.tensor(float("inf"))}
    with pytest.raises(TrainingError, match=r"^training stopped at here: loss G/warp is inf; no checkpoint yet$"):
        check_finite(terms, "G/total", "here", None)
    check_finite({"G/l1": torch.tensor(0.1), "G/total": torch.tensor(0.1)}, "G/total", "here", None)
