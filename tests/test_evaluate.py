"""Evaluation: Fréchet distances, the FID Inception and FVD I3D loaders, keypoint error, `vid2vid evaluate`."""

import json

import numpy as np
import pytest
import torch

from vid2vid import fid
from vid2vid.checkpoint import CheckpointError
from vid2vid.cli import main
from vid2vid.evaluate import keypoint_distance, reference_indices

from .conftest import train_on_tiny_dancers


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    mean1, mean2 = rng.normal(size=4), rng.normal(size=4)
    var1, var2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # Diagonal covariances: |m1 - m2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    expected = ((mean1 - mean2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert fid.frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    # Rotating both distributions the same way changes nothing; a full covariance against itself is 0.
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = fid.frechet_distance(q @ mean1, q @ np.diag(var1) @ q.T, q @ mean2, q @ np.diag(var2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-6)
    a = rng.normal(size=(4, 4))
    assert abs(fid.frechet_distance(mean1, a @ a.T, mean1, a @ a.T)) < 1e-9


def test_feature_stats_stream_in_batches():
    x = np.random.default_rng(1).normal(size=(50, 3))
    stats = fid.FeatureStats()
    for chunk in np.array_split(x, 7):
        stats.add(torch.from_numpy(chunk))
    mean, cov = stats.mean_cov()
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        fid.FeatureStats().mean_cov()


def test_inception_weights_load_in_pytorch_fid_format(tmp_path):
    """A state dict with pytorch-fid's parameter names loads; features are 2048-d and the file's values are
    used; other files are refused in one line."""
    torch.manual_seed(0)
    made = fid.InceptionV3()
    state = {k: v for k, v in made.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    loaded = fid.load_inception(path)
    images = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        expected = made.eval()(images)
        got = loaded(images)
    assert got.shape == (2, 2048)
    torch.testing.assert_close(got, expected)

    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not FID Inception-v3 weights"):
        fid.load_inception(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable"):
        fid.load_inception(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no such"):
        fid.load_inception(tmp_path / "missing.pth")


class TinyI3D(torch.nn.Module):
    """Stands in for the TorchScript I3D: same call, (N, 3, T, 224, 224) in [-1, 1] -> (N, 8)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, 3, stride=4)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        assert x.shape[1:] == (3, 16, 224, 224) and x.min() >= -1 and x.max() <= 1
        assert not rescale and not resize and return_features
        return self.conv(x).mean((2, 3, 4))


def make_i3d(path):
    torch.manual_seed(0)
    torch.jit.script(TinyI3D()).save(str(path))
    return path


def test_i3d_features_take_clips_in_the_common_layout(tmp_path):
    i3d = fid.load_i3d(make_i3d(tmp_path / "i3d.pt"))
    features = fid.i3d_features(i3d, torch.rand(3, 16, 3, 32, 48))
    assert features.shape == (3, 8)
    with pytest.raises(CheckpointError, match="not a TorchScript"):
        (tmp_path / "bad.pt").write_bytes(b"nope")
        fid.load_i3d(tmp_path / "bad.pt")


def test_keypoint_distance_and_reference_indices():
    driving = np.array([[10, 10, 1], [20, 20, 1], [0, 0, 0]], float)
    detected = np.array([[13, 14, 0.9], [20, 20, 0], [5, 5, 1]], float)
    assert keypoint_distance(detected, driving) == pytest.approx(5.0)  # only the first point is in both
    assert keypoint_distance(detected[:, :][[1]], driving[[1]]) is None
    landmarks = np.array([[1.0, 1.0], [2.0, 2.0]])
    assert keypoint_distance(np.array([[1, 1, 1], [2, 5, 1]], float), landmarks) == pytest.approx(1.5)
    assert reference_indices(10, 1) == [0]
    assert reference_indices(9, 2) == [0, 4]
    with pytest.raises(ValueError, match="K = 5"):
        reference_indices(4, 5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    return root, train_on_tiny_dancers(root, heldout_sequences=2, heldout_frames=18, references=True)


def test_evaluate_writes_metrics_report_and_strips(trained, tmp_path, capsys):
    root, checkpoint = trained
    torch.manual_seed(0)
    torch.save(fid.InceptionV3().state_dict(), tmp_path / "inception.pth")
    out = tmp_path / "report"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root / "heldout"), "--references",
            str(root / "refs"), "--K", "1", "2", "-o", str(out), "--inception", str(tmp_path / "inception.pth"),
            "--i3d", str(make_i3d(tmp_path / "i3d.pt")), "--no-pose-error", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "K=1: psnr" in printed and "K=2: psnr" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["results"]) == {"K=1", "K=2"}
    for summary in report["results"].values():
        assert summary["frames"] == 36
        assert set(summary["sequences"]) == {"dancers0100_motion0101", "dancers0101_motion0102"}
        assert 5 < summary["psnr"] < 40 and 0 < summary["ssim"] < 1
        assert summary["warping_error"] > 0 and summary["fid"] > 0
        assert summary["fvd_clips"] == 2 and summary["fvd"] is not None
    assert 0 < report["ground_truth"]["warping_error"] < 2  # exact synthetic motion: the flow warps it almost exactly
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # per-frame PSNR, scores against K, two strips
    assert "http" not in page.replace('lang="en"', "")  # self-contained: nothing fetched
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "report.html", "frames_K1.png",
                                               "scores_against_k.png"}

    # An existing report is kept without --overwrite, replaced with it.
    before = (out / "metrics.json").read_bytes()
    assert main(args) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
    assert main(args[:-6] + ["--no-pose-error", "--quiet", "--overwrite", "--max-frames", "4"]) == 0
    assert json.loads((out / "metrics.json").read_text())["results"]["K=1"]["frames"] == 8
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_evaluate_rejects_random_feature_networks_and_bad_input(trained, tmp_path, capsys):
    root, checkpoint = trained
    base = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root / "heldout"), "--no-pose-error",
            "--quiet"]
    (tmp_path / "bad.pth").write_bytes(b"\x80not a state dict")
    assert main(base + ["-o", str(tmp_path / "r1"), "--inception", str(tmp_path / "bad.pth")]) == 2
    assert "bad.pth: not a readable Inception state dict" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "r2"), "--sequence", "nobody"]) == 2
    assert "no sequence nobody" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "r3"), "--K", "99"]) == 2
    assert "K = 99" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3"))
    # Without feature networks FID and FVD are left out and the report says why.
    assert main(base + ["-o", str(tmp_path / "r4"), "--max-frames", "3"]) == 0
    report = json.loads((tmp_path / "r4" / "metrics.json").read_text())
    assert "fid" not in report["results"]["K=1"]
    assert any("FID left out" in n for n in report["notes"])
    assert any("evaluated sequence itself" in n for n in report["notes"])


def test_person_colour_histograms_bin_rgb_in_fours_and_intersect():
    from vid2vid.evaluate import PersonColours

    red = np.tile(np.array([[250, 10, 10]], np.uint8), (10, 1))
    half = np.concatenate([red[:5], np.tile(np.array([[10, 10, 250]], np.uint8), (5, 1))])
    h_red, h_half = PersonColours.histogram(red), PersonColours.histogram(half)
    assert h_red.shape == (64,) and h_red.sum() == pytest.approx(1.0)
    assert h_red[(3 * 4 + 0) * 4 + 0] == 1.0  # 250 // 64 = 3 in R, 0 in G and B
    assert np.minimum(h_red, h_half).sum() == pytest.approx(0.5)  # half the pixels share the bin
    assert np.minimum(h_red, h_red).sum() == pytest.approx(1.0)
