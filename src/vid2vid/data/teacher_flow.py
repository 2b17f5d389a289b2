"""Teacher optical flow for the flow loss: OpenCV's DIS, no learned weights and no CUDA.

Flow here is always backward, in pixels, (H, W, 2) as (dx, dy): frame_t(p) ~ frame_{t-1}(p + flow(p)),
the direction the generator's flow network predicts. Files: flow/SEQ/FRAME.npz holding `flow` (float16)
and `confidence` (float16 in [0, 1]) for every frame but the first.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid.data import DataError
from vid2vid.files import atomic_write_bytes


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def sample(field: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """field (H, W, C) read at p + flow(p) for every pixel p, bilinear, edges repeated."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(field.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(h, w, -1)


def dis_flow(image: np.ndarray, previous: np.ndarray, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
             ) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow from image to previous (RGB uint8 frames) and its confidence (H, W) in {0, 1}.

    Confidence is the forward-backward check of Sundaram et al. (ECCV 2010): a pixel whose backward
    flow is not undone by the forward flow at its destination is occluded or mismatched.
    """
    dis = cv2.DISOpticalFlow_create(preset)
    current, before = _grey(image), _grey(previous)
    backward = dis.calc(current, before, None)
    forward = dis.calc(before, current, None)
    forward_there = sample(forward, backward)
    mismatch = np.sum((backward + forward_there) ** 2, axis=-1)
    scale = np.sum(backward ** 2, axis=-1) + np.sum(forward_there ** 2, axis=-1)
    h, w = backward.shape[:2]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    inside = ((xs + backward[..., 0] >= 0) & (xs + backward[..., 0] <= w - 1)
              & (ys + backward[..., 1] >= 0) & (ys + backward[..., 1] <= h - 1))
    confidence = (mismatch <= 0.01 * scale + 0.5) & inside
    return backward, confidence.astype(np.float32)


def compose(later: np.ndarray, earlier: np.ndarray, later_confidence: np.ndarray,
            earlier_confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chain backward flows t -> t-1 (later) and t-1 -> t-2 (earlier) into t -> t-2."""
    earlier_there = sample(np.concatenate([earlier, earlier_confidence[..., None]], axis=-1), later)
    flow = later + earlier_there[..., :2]
    return flow, later_confidence * earlier_there[..., 2]


def to_picture(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, what DIS reads."""
    return ((image.permute(1, 2, 0).cpu().numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)


def reference_flows(labels: torch.Tensor, images: torch.Tensor, ref_labels: torch.Tensor, ref_images: torch.Tensor,
                    task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher flow from every frame (labels (T, C, H, W), images (T, 3, H, W) in [-1, 1]) to every reference
    (K, ...): (T, K, 2, H, W) backward, frame(p) ~ reference(p + flow(p)), and its confidence (T, K, 1, H, W).

    For pose data with DensePose it reads the DensePose maps, as imaginaire's teacher does (body-surface
    coordinates match across poses where clothes' colours and lighting may not); otherwise the images."""
    use_densepose = task == "pose" and bool((labels[:, 2] > -1).any()) and bool((ref_labels[:, 2] > -1).any())

    def pictures(label, image):
        return [to_picture(v) for v in (label[:, :3] if use_densepose else image)]

    references = pictures(ref_labels, ref_images)
    flows, confidences = [], []
    for target in pictures(labels, images):
        pairs = [dis_flow(target, reference) for reference in references]
        flows.append(torch.stack([torch.from_numpy(f.transpose(2, 0, 1).copy()) for f, _ in pairs]))
        confidences.append(torch.stack([torch.from_numpy(c)[None] for _, c in pairs]))
    return torch.stack(flows).to(images.device), torch.stack(confidences).to(images.device)


def write_flow(path: str | Path, flow: np.ndarray, confidence: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, flow=flow.astype(np.float16), confidence=confidence.astype(np.float16))
    atomic_write_bytes(path, buffer.getvalue())


def read_flow(path: str | Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flow (H, W, 2) float32, confidence (H, W) float32) from a flow file; size (H, W) is checked."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            flow = data["flow"].astype(np.float32)
            confidence = data["confidence"].astype(np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a flow file with 'flow' and 'confidence' arrays ({exc})") from None
    if flow.ndim != 3 or flow.shape[2] != 2 or confidence.shape != flow.shape[:2]:
        raise DataError(f"{path}: flow must be (H, W, 2) with confidence (H, W), got {flow.shape} and "
                        f"{confidence.shape}")
    if size is not None and flow.shape[:2] != tuple(size):
        raise DataError(f"{path}: flow is {flow.shape[1]}x{flow.shape[0]}, its frame {size[1]}x{size[0]}")
    if not np.isfinite(flow).all():
        raise DataError(f"{path}: flow holds NaN or infinite values")
    return flow, confidence
