"""Training: schedules, learning, exact resume, two-process data parallel, divergence, checkpoints."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

import vid2vid
from vid2vid.cli import main
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.writer import write_synthetic
from vid2vid.step import References, new_history, step
from vid2vid.train import TrainingError, train
from vid2vid.training.config import (
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    clip_length_at,
    load_train_config,
    lr_factor,
    make_generator,
    size_at,
)
from vid2vid.training.nets import init_weights

from .conftest import TINY_GENERATOR, tiny_train_config


@pytest.fixture(scope="module")
def dancers(tmp_path_factory):
    root = tmp_path_factory.mktemp("dancers")
    write_synthetic("dancers", root, sequences=2, frames=10, size=(48, 48), progress=False)
    return root


@pytest.mark.parametrize("iteration, expected", [(0, 2), (99, 2), (100, 4), (250, 8), (10_000, 8)])
def test_clip_length_doubles_up_to_the_maximum(iteration, expected):
    schedule = ScheduleConfig(max_clip_length=8, double_clip_every=100)
    assert clip_length_at(iteration, DataConfig(task="pose", clip_length=2), schedule) == expected


@pytest.mark.parametrize("iteration, expected", [(0, (128, 128)), (499, (128, 128)), (500, (256, 256)),
                                                 (2000, (512, 256))])
def test_resolution_grows_by_stage(iteration, expected):
    schedule = ScheduleConfig(size_stages=[[1000, 512, 256], [500, 256, 256]])
    assert size_at(iteration, DataConfig(task="pose", size=(128, 128)), schedule) == expected


@pytest.mark.parametrize("iteration, expected", [(0, 1.0), (50, 1.0), (75, 0.5), (100, 0.0)])
def test_learning_rate_decays_linearly(iteration, expected):
    assert lr_factor(iteration, OptimConfig(decay_start=50), ScheduleConfig(iterations=100)) == expected


def test_config_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": "fs_vid2vid", "data_root": "x", "data": {"task": "pose"},
                                    "schedule": {"iterations": 3, "epochs": 2}}))
    with pytest.raises(ValueError, match="bad.yaml: unknown training.schedule settings: epochs"):
        load_train_config(path)
    path.write_text(yaml.safe_dump({"model": "fs_vid2vid", "data_root": "x", "data": {"task": "face"},
                                    "generator": {"label_channels": 6}}))
    with pytest.raises(ValueError, match="bad.yaml: generator.label_channels is 6 but face data gives 1"):
        load_train_config(path)


def reconstruction_error(G, cfg, samples=6) -> float:
    data = DataConfig.from_dict({**cfg.data.to_dict(), "augment": False})
    clips = VideoClips(cfg.data_root, data, seed=5)
    batch = {k: torch.stack([clips[i][k] for i in range(samples)]) for k in ("labels", "images", "ref_labels",
                                                                             "ref_images")}
    G.train()  # train mode: spectral norm as in training
    history, refs, errors = new_history(G), References(batch["ref_labels"], batch["ref_images"]), []
    with torch.no_grad():
        for t in range(batch["labels"].shape[1]):
            fake = step(G, batch["labels"][:, t], history, refs).fake_images
            errors.append(float((fake - batch["images"][:, t]).abs().mean()))
            history.push(batch["labels"][:, t], fake)
    return sum(errors) / len(errors)


def test_training_learns(dancers, tmp_path):
    """A tiny few-shot model on a few built-in frames halves its reconstruction error."""
    cfg = tiny_train_config(dancers, data={"clip_length": 2}, discriminator={"temporal": {"enabled": False}},
                      loss={"weights": {"perceptual": 0, "l1": 10}},
                      optim={"lr_G": 3e-4, "lr_D": 3e-4, "ema_decay": 0.9},
                      schedule={"iterations": 120, "batch_size": 2},
                      run={"log_every": 10, "image_every": 1000, "checkpoint_every": 1000})
    torch.manual_seed(cfg.run.seed)
    initial = make_generator(cfg)
    init_weights(initial)
    before = reconstruction_error(initial, cfg)
    result = train(cfg, tmp_path / "run", progress=False)
    after = reconstruction_error(vid2vid.load_generator(result.last_checkpoint), cfg)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("gain", [0.02, 1.0])
def test_training_starts_from_the_configured_initial_gain(dancers, tmp_path, gain):
    """optim.init_gain sets the xavier-normal gain: the first checkpoint's untouched weights have its scale."""
    cfg = tiny_train_config(dancers, optim={"init_gain": gain, "lr_G": 1e-12, "lr_D": 1e-12, "ema_decay": 0},
                            schedule={"iterations": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    weight = load_file(result.last_checkpoint / "generator.safetensors")["to_image.weight"]
    fan_in, fan_out = weight.shape[1] * 9, weight.shape[0] * 9
    expected = gain * (2 / (fan_in + fan_out)) ** 0.5
    assert abs(weight.std().item() / expected - 1) < 0.35


def weights_of(folder):
    return {name: load_file(folder / name) for name in ("generator.safetensors", "model.safetensors",
                                                         "discriminators.safetensors")}


def test_resume_ends_with_the_same_weights(dancers, tmp_path):
    cfg = tiny_train_config(dancers, schedule={"iterations": 4, "batch_size": 2, "max_clip_length": 4,
                                         "double_clip_every": 2})
    straight = train(cfg, tmp_path / "straight", progress=False)

    cfg_half = tiny_train_config(dancers, schedule={"iterations": 2, "batch_size": 2, "max_clip_length": 4,
                                              "double_clip_every": 2})
    train(cfg_half, tmp_path / "resumed", progress=False)
    resumed = train(cfg, tmp_path / "resumed", resume=True, progress=False)
    assert resumed.iteration == 4
    a, b = weights_of(straight.last_checkpoint), weights_of(resumed.last_checkpoint)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    # The clip length doubled at iteration 2 in both runs.
    assert [h["clip_length"] for h in straight.history] == [3, 3, 4, 4]


def test_checkpoint_is_a_generator_folder(dancers, tmp_path):
    result = train(tiny_train_config(dancers), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "latest").read_text().strip() == "00000004"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["00000002", "00000004"]
    G = vid2vid.load_generator(result.last_checkpoint)
    state = torch.load(result.last_checkpoint / "training_state.pt", weights_only=True)
    assert state["iteration"] == 4 and "optimizer_G" in state
    assert type(G).__name__ == "FewShotGenerator"
    images = sorted((tmp_path / "run" / "images").iterdir())
    assert [p.name for p in images] == ["00000002.jpg", "00000004.jpg"]
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 4


def test_divergence_stops_with_the_last_good_checkpoint(dancers, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_train_config(dancers, schedule={"iterations": 2}), run, progress=False)
    import vid2vid.losses as losses_module
    monkeypatch.setattr(losses_module, "warp_loss", lambda warped, target, weight=None: warped.sum() * float("nan"))
    with pytest.raises(TrainingError,
                       match=r"iteration 2, frame 0: loss G/warp is nan; the last good checkpoint is .*00000002"):
        train(tiny_train_config(dancers), run, resume=True, progress=False)
    assert (run / "latest").read_text().strip() == "00000002"
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())


def test_cli_refuses_to_train_over_a_run(dancers, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_train_config(dancers, schedule={"iterations": 1}).to_dict()))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--quiet"]) == 0
    assert main(["train", "--config", str(config), "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run}: already holds a run; use --resume to continue it or --overwrite to start again"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_dict, run_dir, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    result = train(TrainConfig.from_dict(cfg_dict), run_dir, progress=False)
    state = {k: v.detach().clone() for k, v in result.generator.state_dict().items()}
    save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))
    assert not torch.distributed.is_initialized()  # train ends the group it started (a live one can abort at exit)


def test_two_process_data_parallel_keeps_replicas_identical(dancers, tmp_path):
    """Two CPU processes (gloo), each on its own clips: gradients are averaged, so the replicas stay equal,
    and they differ from a one-process run on half the data."""
    cfg = tiny_train_config(dancers, schedule={"iterations": 2, "batch_size": 1})
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path / "run"), str(tmp_path)), nprocs=2)
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = train(cfg, tmp_path / "single", progress=False).generator.state_dict()
    assert any(not torch.equal(a[k], single[k]) for k in a)
    assert (tmp_path / "run" / "latest").read_text().strip() == "00000002"


@pytest.mark.parametrize("recipe", ["train_fs_vid2vid_dancing", "train_fs_vid2vid_face", "train_vid2vid_street",
                                    "train_dancers_cpu", "train_faces_cpu", "train_street_cpu"])
def test_recipes_load(recipe):
    cfg = load_train_config(recipe, data_root="somewhere")
    assert cfg.data_root == "somewhere"
    assert cfg.generator_config().label_channels == cfg.data.label_channels
    if recipe.endswith("_cpu"):
        make_generator(cfg)  # the small ones are built too; the official sizes have hundreds of millions of weights


def test_perceptual_loss_with_given_vgg_weights_and_bf16_autocast(dancers, tmp_path):
    """VGG19 weights in torchvision format from a path turn the perceptual term on; bf16 autocast (here on
    CPU, as on CUDA) runs the whole step and keeps the weights finite."""
    from vid2vid.losses import VGG19Features

    vgg = tmp_path / "vgg19.pth"
    torch.save(VGG19Features().state_dict(), vgg)
    cfg = tiny_train_config(dancers, loss={"weights": {"perceptual": 10}, "vgg19_weights": str(vgg),
                                     "perceptual_scales": 1},
                      run={"precision": "bf16", "log_every": 1, "checkpoint_every": 2})
    result = train(cfg, tmp_path / "run", progress=False)
    assert all(h["loss/G/perceptual"] > 0 for h in result.history)
    assert all(torch.isfinite(p).all() for p in result.generator.parameters())


def test_init_from_starts_a_new_stage_from_a_checkpoints_networks(dancers, tmp_path):
    """run.init_from: the generator, its average and the discriminators of a training checkpoint start the run
    at iteration 0 with fresh optimizers. With both rates 0 the trained networks stay exactly stage 1's (and
    differ from a fresh start's); the optimizers count only this stage's steps; the average starts from stage
    1's average (ema_decay 0.5: half of it remains after one update, so it is not a fresh copy of G)."""
    first = train(tiny_train_config(dancers), tmp_path / "first", progress=False).last_checkpoint
    frozen = {"lr_G": 0.0, "lr_D": 0.0, "ema_decay": 0.5, "ema_start": 0}
    second = train(tiny_train_config(dancers, optim=frozen, schedule={"iterations": 1, "batch_size": 2},
                                     run={"init_from": str(first), "checkpoint_every": 1}),
                   tmp_path / "second", progress=False).last_checkpoint
    fresh = train(tiny_train_config(dancers, optim=frozen, schedule={"iterations": 1, "batch_size": 2},
                                    run={"checkpoint_every": 1}), tmp_path / "fresh", progress=False).last_checkpoint
    assert second.name == "00000001"
    before, after, scratch = weights_of(first), weights_of(second), weights_of(fresh)
    for name in ("generator.safetensors", "discriminators.safetensors"):
        # Spectral norm's power iteration moves u and v on every training forward, whatever the rate.
        weights = [k for k in before[name] if not k.endswith(("._u", "._v"))]
        assert all(torch.equal(before[name][k], after[name][k]) for k in weights), name
        assert not all(torch.equal(before[name][k], scratch[name][k]) for k in weights), name
    g_before, g_after = before["generator.safetensors"], after["model.safetensors"]
    key = next(k for k in g_after if k.endswith("to_image.weight"))
    trained = g_before[next(k for k in g_before if k.endswith("to_image.weight"))]
    # Three frame updates at decay 0.5: the stage-1 average keeps 1/8 beside 7/8 of the (frozen) trained weights.
    expected = before["model.safetensors"][key] / 8 + trained * 7 / 8
    assert torch.allclose(g_after[key], expected, atol=1e-6)
    state = torch.load(second / "training_state.pt", weights_only=True)
    assert state["iteration"] == 1 and state["average_updates"] == 3
    # Fresh optimizers: at most this stage's three frame updates (the previous-frame branch skips frame 0).
    assert max(int(s["step"]) for s in state["optimizer_G"]["state"].values()) == 3


def test_init_from_a_missing_checkpoint_is_one_line(dancers, tmp_path):
    with pytest.raises(vid2vid.checkpoint.CheckpointError, match="cannot start from this checkpoint"):
        train(tiny_train_config(dancers, run={"init_from": str(tmp_path / "nowhere")}), tmp_path / "run",
              progress=False)


def test_init_from_an_exported_model_trains_on_without_spectral_norm(dancers, tmp_path):
    """A generator with spectral norm off starts from the averaged generator's folded weights (a shipped model's
    folder holds only those): with rates 0 its trained weights are exactly the exported ones, and the
    discriminators, which the folder lacks, start afresh. With spectral norm on, such a folder is one line."""
    first = train(tiny_train_config(dancers), tmp_path / "first", progress=False).last_checkpoint
    exported = tmp_path / "exported"
    exported.mkdir()
    for name in ("model.safetensors", "model.json"):
        (exported / name).write_bytes((first / name).read_bytes())
    plain = {**TINY_GENERATOR, "spectral_norm": False}
    frozen = {"lr_G": 0.0, "lr_D": 0.0}
    second = train(tiny_train_config(dancers, generator=plain, optim=frozen,
                                     schedule={"iterations": 1, "batch_size": 2},
                                     run={"init_from": str(exported), "checkpoint_every": 1}),
                   tmp_path / "second", progress=False).last_checkpoint
    folded, trained = load_file(str(first / "model.safetensors")), load_file(str(second / "generator.safetensors"))
    assert set(trained) <= set(folded) and all(torch.equal(trained[k], folded[k]) for k in trained)
    fresh = load_file(str(second / "discriminators.safetensors"))
    stage1 = load_file(str(first / "discriminators.safetensors"))
    assert not all(torch.equal(fresh[k], stage1[k]) for k in fresh if not k.endswith(("._u", "._v")))
    with pytest.raises(vid2vid.checkpoint.CheckpointError, match="spectral_norm false"):
        train(tiny_train_config(dancers, run={"init_from": str(exported)}), tmp_path / "third", progress=False)


def test_blur_feedback_is_a_gaussian_of_a_drawn_sigma_per_sample():
    """schedule.feedback_blur: each fed-back frame is blurred by a normalised Gaussian of sigma = U(0, max) per
    sample, drawn from torch's generator: a point of light spreads into exp(-d^2 / 2 sigma^2) / Z along rows and
    columns, its total kept; 0 returns the frames untouched."""
    from vid2vid.train import blur_feedback
    frames = torch.zeros(2, 3, 21, 21)
    frames[:, :, 10, 10] = 1.0
    assert blur_feedback(frames, 0.0) is frames
    torch.manual_seed(3)
    sigma = torch.rand(2) * 1.5
    torch.manual_seed(3)
    blurred = blur_feedback(frames, 1.5)
    for i in range(2):
        d = torch.arange(-5, 6, dtype=torch.float32)
        g = torch.exp(-d ** 2 / (2 * sigma[i] ** 2))
        g = g / g.sum()
        expected = torch.zeros(21, 21)
        expected[5:16, 5:16] = g[:, None] * g[None, :]
        for c in range(3):
            assert torch.allclose(blurred[i, c], expected, atol=1e-6)
    assert torch.allclose(blurred.sum((2, 3)), torch.ones(2, 3), atol=1e-5)


def test_train_clip_feeds_back_the_blurred_frame_and_judges_the_one_made(dancers, monkeypatch):
    """The history (what the next frame warps) gets the blurred frame; the temporal D's window, the frame made."""
    import vid2vid.train as train_module
    from vid2vid.training.nets import build_nets

    cfg = tiny_train_config(dancers, schedule={"iterations": 1, "batch_size": 2, "feedback_blur": 1.0})
    nets = build_nets(cfg, torch.device("cpu"), None, 1)
    batch = next(iter(torch.utils.data.DataLoader(VideoClips(dancers, cfg.data), batch_size=2)))
    fed, judged = [], []
    real_step = train_module.step

    def spy(generator, label, history, refs=None):
        fed.append([image.clone() for image in history.images])
        return real_step(generator, label, history, refs)
    real_update = train_module.update_discriminators

    def spy_d(nets, batch, t, out, past, *args):
        judged.append([p.clone() for p in past])
        return real_update(nets, batch, t, out, past, *args)
    monkeypatch.setattr(train_module, "step", spy)
    monkeypatch.setattr(train_module, "update_discriminators", spy_d)
    train_module.train_clip(nets, batch, cfg)
    made = judged[-1]  # the frames as generated, before the last
    assert len(made) == 2 and len(fed[1]) == 1
    assert not torch.allclose(fed[1][0], made[0])  # the previous frame fed back is not the one made ...
    assert torch.allclose(fed[1][0].mean(), made[0].mean(), atol=0.02)  # ... but that frame blurred
