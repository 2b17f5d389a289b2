"""The defects found by the second review of training against imaginaire (issue 33).

Each test names in its docstring the revert it was seen failing with."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from tests.conftest import tiny_train_config
from vid2vid.data.datasets import VideoClips
from vid2vid.data.writer import write_synthetic
from vid2vid.train import to_device, train, train_clip
from vid2vid.training import TrainingError
from vid2vid.training.distributed import average_gradients
from vid2vid.training.frame_step import check_finite
from vid2vid.training.nets import build_nets

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
    # Left alive, the group aborted rank 1 at exit now and then (SIGABRT: "terminate called without an active
    # exception"), as train() did before it ended its group on the way out.
    torch.distributed.destroy_process_group()


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


# ------------------------------------------------------------- 2. a clip schedule longer than the data


def test_2_a_clip_schedule_longer_than_the_data_is_capped_at_setup(tmp_path):
    """8-frame sequences, 1 reference, clips doubling every iteration from 2 towards 16: they grow 2, 4, 7 (the
    longest clip the data holds), said in one warning at setup and written in the run's config.yaml, which a
    resume reads. Reverted the cap: "clips of 8 frames need longer sequences (longest: 8)" at iteration 2, after
    the first checkpoint; and again on resume."""
    data = tmp_path / "dancers"
    write_synthetic("dancers", data, sequences=2, frames=8, size=(32, 32), progress=False)
    cfg = tiny_train_config(data, data={"clip_length": 2, "num_references": 1},
                            schedule={"iterations": 4, "batch_size": 1, "max_clip_length": 16, "double_clip_every": 1},
                            run={"log_every": 1, "image_every": 100, "checkpoint_every": 1})
    with pytest.warns(UserWarning) as warned:
        result = train(cfg, tmp_path / "run", progress=False)
    assert [str(w.message) for w in warned if "clips grow" in str(w.message)] == [
        f"{data}: the longest sequence has 8 frames, so clips grow to 7 frames (K = 1 references besides), not to "
        "max_clip_length 16; the run's config.yaml says 7"]
    assert [h["clip_length"] for h in result.history] == [2, 4, 7, 7]
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["schedule"]["max_clip_length"] == 7


# ------------------------------------------------------------------ 3. a zero weight turns its part off


@pytest.fixture(scope="module")
def dancers(tmp_path_factory):
    root = tmp_path_factory.mktemp("review2_dancers")
    write_synthetic("dancers", root, sequences=2, frames=10, size=(32, 32), progress=False)
    return root


def _batch(cfg, samples: int = 2) -> dict:
    clips = VideoClips(cfg.data_root, cfg.data, seed=3)
    items = [clips[i] for i in range(samples)]
    return {k: torch.stack([item[k] for item in items]) for k in items[0] if torch.is_tensor(items[0][k])}


def _weights(module: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """A module's weights: its parameters, not spectral norm's u and v buffers, which move on every forward."""
    return {} if module is None else {k: v.detach().clone() for k, v in module.named_parameters()}


def _one_iteration(dancers, weights: dict) -> tuple:
    cfg = tiny_train_config(dancers, loss={"weights": {"perceptual": 0, **weights}})
    torch.manual_seed(0)
    nets = build_nets(cfg, torch.device("cpu"), None)
    before = {name: _weights(getattr(nets.D, name)) for name in ("image", "temporal", "face")}
    record = train_clip(nets, _batch(cfg), cfg)
    changed = {name: any(not torch.equal(v, _weights(getattr(nets.D, name))[k]) for k, v in was.items())
               for name, was in before.items() if was}
    return nets, set(record.means()), changed


def test_3_every_gan_weight_at_work_trains_its_discriminator(dancers):
    """The recipe's weights: every D is built, updated (its weights move, not only its u/v buffers) and gives G
    its GAN and feature-matching terms. Deleting the D's optimizer step fails here (the weights stay put), which
    a comparison of state dicts missed (spectral norm's u and v change on every forward)."""
    nets, names, changed = _one_iteration(dancers, {})
    assert changed == {"image": True, "temporal": True, "face": True}
    assert {"G/gan_image", "G/fm_image", "G/gan_temporal0", "G/fm_temporal0", "D_image/real", "D_temporal0/fake",
            "G/flow", "G/warp", "G/mask"} <= names


@pytest.mark.parametrize("weights, gone, absent", [
    ({"temporal_gan": 0}, "temporal", {"G/gan_temporal0", "G/fm_temporal0", "D_temporal0/real"}),
    ({"gan": 0}, "image", {"G/gan_image", "G/fm_image", "D_image/real", "D_image/fake"}),
    ({"region_gan": 0}, "face", {"G/gan_face", "G/fm_face", "D_face/real"}),
])
def test_3_a_zero_gan_weight_builds_no_discriminator_and_adds_no_term(dancers, weights, gone, absent):
    """imaginaire gates each D on its weight. Reverted the gate in `Discriminators`: with temporal_gan 0 the
    temporal D was built and trained, and G/fm_temporal0 still reached G at weight 10 (feature_matching)."""
    nets, names, changed = _one_iteration(dancers, weights)
    assert getattr(nets.D, gone) is None
    assert not names & absent, names & absent
    assert all(changed.values()) and gone not in changed  # the other Ds still train


def test_3_zero_feature_matching_flow_and_every_gan_weight_skip_their_work(dancers, monkeypatch):
    """feature_matching 0: no real frame through any D in G's phase; flow, warp and mask 0: no flow terms; every
    GAN weight 0: no D at all and no D optimizer, and training still runs (L1 and flow-free)."""
    from vid2vid import losses

    nets, names, _ = _one_iteration(dancers, {"feature_matching": 0})
    assert not any(n.startswith("G/fm_") for n in names) and "G/gan_image" in names
    called = []
    monkeypatch.setattr(losses, "flow_terms", lambda *a, **k: called.append(1))
    _, names, _ = _one_iteration(dancers, {"flow": 0, "warp": 0, "mask": 0})
    assert called == [] and not names & {"G/flow", "G/warp", "G/mask"}
    monkeypatch.undo()
    nets, names, changed = _one_iteration(dancers, {"gan": 0, "temporal_gan": 0, "region_gan": 0})
    assert nets.opt_D is None and changed == {} and not any(n.startswith("D") for n in names)
    assert "G/total" in names and "G/flow" in names


# ------------------------------------------------------------------------ 6. the flow heads' dtype


def test_6_a_float64_flow_network_stays_float64_and_autocast_gives_fp32():
    """Reverted `x.to(the heads' dtype)` to `x.float()`: the float64 network failed in its heads, "Input type
    (float) and bias type (double) should be the same"."""
    from vid2vid.models.flow import FlowNetwork

    torch.manual_seed(0)
    net = FlowNetwork(label_channels=6, image_channels=3, num_filters=8, max_filters=16, num_downsamples=2,
                      num_res_blocks=1).double()
    labels, images = torch.rand(1, 6, 16, 16, dtype=torch.float64), torch.rand(1, 3, 16, 16, dtype=torch.float64)
    flow, mask = net(labels, images)
    assert flow.dtype == mask.dtype == torch.float64
    single = FlowNetwork(label_channels=6, image_channels=3, num_filters=8, max_filters=16, num_downsamples=2,
                         num_res_blocks=1)
    single.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flow32, mask32 = single(labels.float(), images.float())
    assert flow32.dtype == mask32.dtype == torch.float32


# ------------------------------------------------------------------ 5. missing VGG19 weights stop training


def test_5_training_without_vgg19_weights_is_an_error_unless_asked(dancers, tmp_path, monkeypatch, capsys):
    """A config weighing the perceptual loss, no VGG19 weights in the hub cache: `vid2vid train` stops at once
    with one line saying where the weights go and how to train without them; `--no-perceptual` trains, and
    its run's config.yaml says perceptual 0. Reverted `required` (the old warning): the run trained without
    the term, exit 0, one warning line among the progress output."""
    from vid2vid.cli import main

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cfg = tiny_train_config(dancers, loss={"weights": {"perceptual": 10}},
                            schedule={"iterations": 2, "batch_size": 1})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
    args = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: no VGG19 weights at {tmp_path / 'hub' / 'checkpoints' / 'vgg19-dcbb9e9d.pth'}, and the "
                   "config weighs the perceptual loss: download https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
                   " there, or name the file in loss.vgg19_weights, or train with --no-perceptual "
                   "(loss.weights.perceptual: 0)")
    assert not (tmp_path / "run").exists()
    assert main([*args, "--no-perceptual"]) == 0
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["loss"]["weights"]["perceptual"] == 0


# ------------------------------------------------------------- the average's count survives a resume


def test_a_resume_past_ema_start_averages_as_the_uninterrupted_run(dancers, tmp_path):
    """ema_start 4 frame updates: the average copies for the first 4 and averages from the 5th, so a resume at
    iteration 2 (6 updates done) must carry on averaging. Reverted the restore of `average_updates` in
    `load_checkpoint`: the resumed average went back to copying, and model.safetensors differed from the
    uninterrupted run's (the resume tests ran 12 updates against ema_start 500, inside the copy phase, and
    never saw it)."""
    from safetensors.torch import load_file

    def config(iterations):
        return tiny_train_config(dancers, data={"clip_length": 3}, optim={"ema_start": 4},
                                 schedule={"iterations": iterations, "batch_size": 1},
                                 run={"log_every": 1, "image_every": 100, "checkpoint_every": 2})

    straight = train(config(4), tmp_path / "straight", progress=False)
    train(config(2), tmp_path / "resumed", progress=False)
    resumed = train(config(4), tmp_path / "resumed", resume=True, progress=False)
    a = load_file(straight.last_checkpoint / "model.safetensors")
    b = load_file(resumed.last_checkpoint / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    g = load_file(straight.last_checkpoint / "generator.safetensors")
    assert any(not torch.equal(a[k], g[k]) for k in a if k in g)  # past ema_start: an average, not a copy


# ---------------------------------------------------------------------------- the loader's time in the log


def test_the_log_says_how_long_each_iteration_waited_for_its_data(dancers, tmp_path, monkeypatch):
    """`data_wait_s`: the seconds an iteration spent waiting for the loader, a share of the iteration's time. A
    loader made 0.2 s slower an item shows up there."""
    import vid2vid.train as training

    slow = training.VideoClips.__getitem__

    def slower(self, index):
        time.sleep(0.2)
        return slow(self, index)

    monkeypatch.setattr(training.VideoClips, "__getitem__", slower)
    cfg = tiny_train_config(dancers, schedule={"iterations": 2, "batch_size": 1},
                            run={"log_every": 1, "image_every": 100, "checkpoint_every": 2})
    result = train(cfg, tmp_path / "run", progress=False)
    for entry in result.history:
        assert 0.2 <= entry["data_wait_s"] < 1 / entry["iterations_per_s"], entry
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["data_wait_s"] for line in logged] == [entry["data_wait_s"] for entry in result.history]


# ------------------------------------------------ the loader computes teacher flows only for references kept


def test_the_loader_loads_only_the_references_each_iteration_keeps(dancers, tmp_path, monkeypatch):
    """num_references 3, min_references 1: K is drawn per iteration, and the sampler tells the dataset, so the
    reference teacher flows (DIS, ~57 ms a pair at 512x256) are computed for the K kept only. The kept references
    are those the full load gives first. Reverted the sampler's K: every item computed 3 references' flows."""
    import vid2vid.data.datasets as datasets
    from vid2vid.train import references_at

    cfg = tiny_train_config(dancers, data={"num_references": 3, "min_references": 1},
                            schedule={"iterations": 6, "batch_size": 1},
                            run={"log_every": 1, "image_every": 100, "checkpoint_every": 6})
    clips = VideoClips(cfg.data_root, cfg.data, seed=cfg.run.seed)
    whole, first = clips[5], clips[(5, 1)]
    assert torch.equal(first["ref_images"], whole["ref_images"][:1])
    assert torch.equal(first["ref_flow"], whole["ref_flow"][:, :1]) and torch.equal(first["images"], whole["images"])

    flows = datasets.reference_flows
    counted = []
    monkeypatch.setattr(datasets, "reference_flows", lambda *a: counted.append(a[2].shape[0]) or flows(*a))
    train(cfg, tmp_path / "run", progress=False)
    wanted = [references_at(cfg.run.seed, iteration, cfg.data) for iteration in range(6)]
    assert counted == wanted and len(set(wanted)) > 1, (counted, wanted)


def test_keypoints_stay_on_the_host_where_the_boxes_are_read():
    """The face and hand boxes are read from the keypoints on the host each frame, in the D step and the G step:
    kept there, they cost no device sync (on a GPU each read was a copy back and a sync, twice a frame per region
    D). Everything else goes to the device. Reverted (keypoints moved too): keypoints on meta."""
    batch = {"images": torch.zeros(1, 2, 3, 4, 4), "keypoints": torch.ones(1, 2, 67, 3), "sequence": ["a"]}
    moved = to_device(batch, torch.device("meta"))
    assert moved["images"].device.type == "meta"
    assert moved["keypoints"].device.type == "cpu" and torch.equal(moved["keypoints"], batch["keypoints"])
    assert moved["sequence"] == ["a"]
