"""FID and FVD: Fréchet distances between feature statistics of real and generated frames or clips.

The feature networks are never random and never downloaded: FID takes the Inception-v3 weights the common
FID tools use (pytorch-fid's `pt_inception-2015-12-05-*.pth`, a state dict for the network below), FVD a
TorchScript I3D in the form the common FVD tools load (`i3d_torchscript.pt`, called with `rescale`, `resize`
and `return_features` switches on clips scaled to [-1, 1] at 224x224).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.checkpoint import CheckpointError, read_torch_file

FVD_CLIP_LENGTH = 16
FVD_SIZE = 224


# ------------------------------------------------------------------------------------ Inception-v3 (FID)


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # The TensorFlow graph FID was defined with leaves the zero padding out of the average.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = ConvBN(c_in, 48, 1), ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class BlockB(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        double = x
        for name in ("1", "2", "3", "4", "5"):
            double = getattr(self, f"branch7x7dbl_{name}")(double)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), double,
                          self.branch_pool(_avg_pool(x))], 1)


class BlockD(nn.Module):
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = ConvBN(c_in, 192, 1), ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    def __init__(self, c_in: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # the last block pools with max in the FID graph, the one before with average
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = ConvBN(c_in, 448, 1), ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """The Inception-v3 of the FID definition, up to its 2048-d pool features. Parameter names are those of
    pytorch-fid's weight file (its 1008-way `fc` is loaded and ignored)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) RGB in [0, 1] -> (N, 2048) features."""
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x.mean((2, 3))


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionV3:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such Inception weight file")
    state = read_torch_file(path, "Inception state dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not an Inception state dict")
    model = InceptionV3()
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if expected - given or given - expected:
        missing = sorted(expected - given)[:3] or sorted(given - expected)[:3]
        raise CheckpointError(f"{path}: not FID Inception-v3 weights (pytorch-fid format); "
                              f"parameters that do not match: {', '.join(missing)}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError:
        raise CheckpointError(f"{path}: Inception weights of the wrong shapes") from None
    return model.eval().to(device)


# ------------------------------------------------------------------------------------------ I3D (FVD)


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript I3D, as the common FVD tools use (TorchScript holds code and weights but no pickled
    Python objects)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such I3D file")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a TorchScript I3D network ({type(e).__name__})") from None


def i3d_features(i3d, clips: torch.Tensor) -> torch.Tensor:
    """clips (N, T, 3, H, W) RGB in [0, 1] -> (N, D): resized so the short side is 224, centre-cropped to
    224x224, scaled to [-1, 1], laid out (N, 3, T, 224, 224)."""
    n, t, c, h, w = clips.shape
    frames = clips.reshape(n * t, c, h, w)
    scale = FVD_SIZE / min(h, w)
    frames = F.interpolate(frames, size=(max(FVD_SIZE, round(h * scale)), max(FVD_SIZE, round(w * scale))),
                           mode="bilinear", align_corners=False)
    top, left = (frames.shape[2] - FVD_SIZE) // 2, (frames.shape[3] - FVD_SIZE) // 2
    frames = frames[:, :, top:top + FVD_SIZE, left:left + FVD_SIZE] * 2 - 1
    videos = frames.reshape(n, t, c, FVD_SIZE, FVD_SIZE).transpose(1, 2).contiguous()
    return i3d(videos, rescale=False, resize=False, return_features=True)


# ------------------------------------------------------------------------------------ Fréchet distance


class FeatureStats:
    """Running mean and covariance of feature vectors (float64 sums, so any number of batches)."""

    def __init__(self):
        self.count, self.total, self.outer = 0, None, None

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
        x = x.reshape(len(x), -1)
        if self.total is None:
            self.total, self.outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        self.count += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError("a Fréchet distance needs at least 2 samples on each side")
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """|m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^1/2). The trace of the square root is taken as that of the
    symmetric (C1^1/2 C2 C1^1/2)^1/2, which has the same eigenvalues and is stable for singular C."""
    values, vectors = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = root1 @ cov2 @ root1
    trace_root = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    return float(((mean1 - mean2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


def stats_distance(real: FeatureStats, fake: FeatureStats) -> float:
    return frechet_distance(*real.mean_cov(), *fake.mean_cov())
