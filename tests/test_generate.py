"""Generation end to end (synth -> train -> generate -> mp4), streaming memory, metrics, bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from vid2vid import metrics
from vid2vid.cli import main
from vid2vid.data.video import image_files, read_image, read_video
from vid2vid.data.writer import write_synthetic
from vid2vid.train import train

from .conftest import train_on_tiny_dancers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny few-shot model trained for two iterations on built-in dancers, and held-out data."""
    root = tmp_path_factory.mktemp("generate")
    return root, train_on_tiny_dancers(root, heldout_sequences=1, heldout_frames=40)


def render_frames(trained, out_dir, max_frames: int, *flags: str) -> list[np.ndarray]:
    """`vid2vid generate` of the held-out sequence from one reference, with flags; the PNG frames it wrote."""
    root, checkpoint = trained
    ref = str(root / "train" / "images" / "dancers0000" / "00002.png")
    assert main(["generate", "--checkpoint", str(checkpoint), "--driving", str(root / "heldout"), "--reference", ref,
                 "-o", str(out_dir.with_suffix(".mp4")), "--max-frames", str(max_frames), "--frames-dir",
                 str(out_dir), "--quiet", *flags]) == 0
    return [read_image(p) for p in image_files(out_dir)]


def test_synth_train_generate_end_to_end(trained, tmp_path, capsys):
    root, checkpoint = trained
    refs = [str(root / "train" / "images" / "dancers0000" / "00002.png"),
            str(root / "train" / "images" / "dancers0001" / "00005.png")]
    out = tmp_path / "result.mp4"
    code = main(["generate", "--checkpoint", str(checkpoint), "--driving", str(root / "heldout"), "--reference",
                 *refs, "-o", str(out), "--max-frames", "12", "--frames-dir", str(tmp_path / "frames"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "12 frames" in capsys.readouterr().out
    frames = list(read_video(out))
    assert len(frames) == 12 and frames[0].shape == (32, 32, 3)  # the size the model was trained at
    pngs = image_files(tmp_path / "frames")
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(12)]
    # The mp4 holds the PNG frames (H.264 at high quality).
    assert np.abs(frames[3].astype(int) - read_image(pngs[3]).astype(int)).mean() < 8

    side = tmp_path / "side.mp4"
    assert main(["generate", "--checkpoint", str(checkpoint), "--driving", str(root / "heldout"), "--reference",
                 refs[0], "-o", str(side), "--max-frames", "3", "--side-by-side", "--quiet"]) == 0
    frames = list(read_video(side))
    assert len(frames) == 3 and frames[0].shape == (32, 96, 3)  # labels | result | reference


def test_bf16_generation_is_close_to_fp32(trained, tmp_path):
    """--precision bf16 (autocast, also on CPU) renders the same frames up to bf16 rounding."""
    frames = {precision: render_frames(trained, tmp_path / precision, 6, "--precision", precision)
              for precision in ("fp32", "bf16")}
    psnr = [metrics.psnr(a, b) for a, b in zip(frames["bf16"], frames["fp32"], strict=True)]
    assert len(psnr) == 6 and min(psnr) > 30, psnr
    assert any(not np.array_equal(a, b) for a, b in zip(frames["bf16"], frames["fp32"], strict=True))


def test_compile_flag_runs_the_frame_step_through_torch_compile(trained, tmp_path, monkeypatch):
    """--compile hands the model to torch.compile and renders with what it returns (the build itself is the slow
    test below and serve's compiled-worker test)."""
    compiled = []

    def record(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", record)
    eager = render_frames(trained, tmp_path / "eager", 2)
    assert not compiled
    through_compile = render_frames(trained, tmp_path / "compiled", 2, "--compile")
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    assert len(through_compile) == 2
    assert all(np.array_equal(a, b) for a, b in zip(through_compile, eager, strict=True))


@pytest.mark.slow  # a torch.compile build of the whole frame step: 36 s alone to 2 minutes inside the suite, 2 cores
def test_compiled_generation_matches_eager(trained, tmp_path):
    """--compile (torch.compile of the frame step) renders the frames of the eager model."""
    eager = render_frames(trained, tmp_path / "eager", 3)
    compiled = render_frames(trained, tmp_path / "compiled", 3, "--compile")
    assert len(compiled) == 3
    for a, b in zip(compiled, eager, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # uint8 rounding of values within ~1e-5


def test_generate_refuses_to_overwrite_and_needs_references(trained, tmp_path, capsys):
    root, checkpoint = trained
    out = tmp_path / "result.mp4"
    out.write_bytes(b"precious")
    ref = str(root / "train" / "images" / "dancers0000" / "00002.png")
    args = ["generate", "--checkpoint", str(checkpoint), "--driving", str(root / "heldout"), "-o", str(out),
            "--quiet"]
    assert main(args + ["--reference", ref]) == 2
    assert capsys.readouterr().err.strip() == f"error: {out}: exists (use --overwrite to replace it)"
    assert out.read_bytes() == b"precious"
    other = tmp_path / "other.mp4"
    assert main(args[:-3] + ["-o", str(other), "--quiet"]) == 2
    assert "needs --reference images" in capsys.readouterr().err
    assert not other.exists()
    assert main(args[:-3] + ["-o", str(other), "--reference", str(tmp_path / "nope.png"), "--quiet"]) == 2
    assert "nope.png: no such reference image" in capsys.readouterr().err
    assert not other.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


MEMORY_PROBE = """
import resource, sys
from vid2vid.generate import generate
generate(sys.argv[1], sys.argv[2], sys.argv[3], [sys.argv[4]], max_frames=int(sys.argv[5]), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_streaming_memory_stays_flat(trained, tmp_path):
    """Ten times more frames: the peak resident memory grows by less than 25 MB (history only)."""
    root, checkpoint = trained
    ref = str(root / "train" / "images" / "dancers0000" / "00002.png")

    def peak_kib(frames):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(checkpoint), str(root / "heldout"),
                              str(tmp_path / f"{frames}.mp4"), ref, str(frames)],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    few, many = peak_kib(4), peak_kib(40)
    assert len(list(read_video(tmp_path / "40.mp4"))) == 40
    assert many - few < 25 * 1024, (few, many)


def test_metrics_values():
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    assert metrics.psnr(image, image) == float("inf")
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    noisy = np.clip(image.astype(int) + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
    mse = np.mean((noisy.astype(float) - image) ** 2)
    assert metrics.psnr(noisy, image) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    assert 0 < metrics.ssim(noisy, image) < 1
    assert metrics.ssim(255 - image, image) < 0


def test_warping_error_sees_flicker(trained):
    root, _ = trained
    truths = [read_image(p) for p in image_files(root / "heldout" / "images" / "dancers0100_motion0101")[:6]]
    steady = metrics.warping_error(truths, truths)
    flicker = [np.clip(t.astype(int) + (20 if i % 2 else -20), 0, 255).astype(np.uint8) for i, t in enumerate(truths)]
    assert steady < 2
    assert metrics.warping_error(flicker, truths) > 10 * steady + 20


def test_frame_strip_layout():
    from vid2vid.evaluate import Rendered, frame_strip

    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(10)]
    rendered = Rendered("s", frames, frames, frames, [None] * 10, frames[:2])
    strip = frame_strip(rendered, columns=4)
    assert strip.shape == (24, 4 * 8 + 4 + 8, 3)  # 4 columns of pose/result/truth, a gap, the references
    assert strip[0, 8 * 3, 0] == 9  # the last column shows the last frame
    assert strip[8, -1, 0] == 1 and strip[16, -1, 0] == 255  # the second reference, then white
    assert frame_strip(Rendered("s", frames, frames, frames, [None] * 10), columns=4).shape == (24, 32, 3)


def test_vid2vid_street_generation(tmp_path, capsys):
    """The vid2vid path: a street model (one training iteration) renders class-id maps into video."""
    from vid2vid.train import load_train_config

    write_synthetic("street", tmp_path / "street", sequences=1, frames=6, size=(64, 128), progress=False)
    cfg = load_train_config("train_street_cpu", data_root=str(tmp_path / "street"))
    cfg.schedule.iterations, cfg.data.clip_length, cfg.discriminator.temporal.enabled = 1, 2, False
    result = train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "street.mp4"
    assert main(["generate", "--checkpoint", str(result.last_checkpoint), "--driving", str(tmp_path / "street"),
                 "-o", str(out), "--quiet"]) == 0
    frames = list(read_video(out))
    assert len(frames) == 6 and frames[0].shape == (64, 128, 3)
    assert main(["generate", "--checkpoint", str(result.last_checkpoint), "--driving", str(tmp_path / "street"),
                 "--reference", str(tmp_path / "x.png"), "-o", str(tmp_path / "y.mp4"), "--quiet"]) == 2
    assert "--reference is for few-shot models" in capsys.readouterr().err
