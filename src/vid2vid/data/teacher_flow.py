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

from vid2vid.data import DataError, render
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


INNER_LIPS = slice(60, 68)  # dlib-68
SPLINE_SMOOTHING = 1.0  # thin-plate regulariser, in pixels^2: closed lips put two landmarks on one spot


def thin_plate_spline(points: np.ndarray, values: np.ndarray, at: np.ndarray,
                      smoothing: float = SPLINE_SMOOTHING) -> np.ndarray:
    """The thin-plate spline through values (N, D) at points (N, 2), read at `at` (M, 2): the affine part plus
    sum_i w_i U(|p - p_i|), U(r) = r^2 log r^2, with smoothing on the diagonal (Bookstein 1989; Wahba's smoothing
    spline for a positive smoothing)."""
    def kernel(a, b):
        r2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-12)), 0.0)

    n = len(points)
    p = np.concatenate([np.ones((n, 1)), points], axis=1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel(points, points) + smoothing * np.eye(n)
    system[:n, n:], system[n:, :n] = p, p.T
    coefficients = np.linalg.solve(system, np.concatenate([values, np.zeros((3, values.shape[1]))]))
    return kernel(at, points) @ coefficients[:n] + np.concatenate([np.ones((len(at), 1)), at], 1) @ coefficients[n:]


def with_forehead(points: np.ndarray) -> np.ndarray:
    """(68, 2) -> (83, 2): 15 forehead points appended, jaw points 1..15 mirrored across the line joining the
    jaw's ends at 2/3 of their distance from it (imaginaire's upper face, but across the face's own axis, so that
    it turns with a tilted head)."""
    ends = points[[0, 16]]
    axis = (ends[1] - ends[0]) / max(np.linalg.norm(ends[1] - ends[0]), 1e-6)
    jaw = points[1:16] - ends[0]
    along = jaw @ axis
    across = jaw - along[:, None] * axis
    return np.concatenate([points, ends[0] + along[:, None] * axis - across * 2 / 3])


def landmark_flow(target: np.ndarray, reference: np.ndarray, size: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward flow (H, W, 2) from a face to a reference face, target(p) ~ reference(p + flow(p)), from their
    dlib-68 landmarks (68, 2) in output pixels: a thin-plate spline through the landmark correspondences and
    their forehead points (with_forehead). Also the face (H, W) bool, the hull of the target's points where the
    flow holds, and the flow's confidence (H, W): 1 on the face but 0 inside the target's inner lips (an open
    mouth shows what a closed one does not hold)."""
    h, w = size
    target = with_forehead(np.asarray(target, np.float64))
    reference = with_forehead(np.asarray(reference, np.float64))
    flow = thin_plate_spline(target, reference - target, pixel_points(size)).reshape(h, w, 2).astype(np.float32)
    shift = 4  # sub-pixel vertices for OpenCV's polygon fills
    face, mouth = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(target * 2 ** shift).astype(np.int32)), 1, shift=shift)
    cv2.fillPoly(mouth, [np.round(target[INNER_LIPS] * 2 ** shift).astype(np.int32)], 1, shift=shift)
    return flow, face > 0, ((face > 0) & (mouth == 0)).astype(np.float32)


def pixel_points(size: tuple[int, int]) -> np.ndarray:
    """(H * W, 2) the (x, y) of every pixel of an (H, W) frame, row by row."""
    xs, ys = np.meshgrid(np.arange(size[1], dtype=np.float64), np.arange(size[0], dtype=np.float64))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


FACE_EDGE_SOFTNESS = 5  # px: the landmark warp's weight ramps from the network's flow to its own over this width


def soft_weight(region: np.ndarray) -> torch.Tensor:
    """(1, H, W) weight of a warp given on region (H, W) bool: 1 inside, 0 outside, ramping down over
    FACE_EDGE_SOFTNESS pixels inside its edge so that it meets the flow network's flow without a seam."""
    weight = cv2.blur(region.astype(np.float32), (FACE_EDGE_SOFTNESS, FACE_EDGE_SOFTNESS)) * region
    return torch.from_numpy(np.ascontiguousarray(weight))[None]


def landmark_flows(target: torch.Tensor, references: torch.Tensor, size: tuple[int, int]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A driving face's flow to each reference face from their landmarks, for generation: target (68, 2) and
    references (K, 68, 2) in output pixels -> flows (K, 2, H, W) and weights (K, 1, H, W), 1 on the target's face
    (its landmark hull, the mouth too: the lips part as the landmarks say) and 0 off it, softened at its edge so
    that the face's warp meets the flow network's around it without a seam."""
    flows, weights = [], []
    for points in references:
        flow, on_face, _ = landmark_flow(target.numpy(), points.numpy(), size)
        flows.append(torch.from_numpy(flow).permute(2, 0, 1))
        weights.append(soft_weight(on_face))
    return torch.stack(flows), torch.stack(weights)


BODY_POINTS = 25  # BODY_25: the hands are too small at these sizes to steer a warp
TORSO = (1, 2, 9, 8, 12, 5)  # neck, right shoulder, right hip, mid hip, left hip, left shoulder
LIMB_WIDTH = 0.12  # of the person's height: how wide the body is drawn around its limbs


def body_region(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: where a person of BODY_25 keypoints (25, 3) in output pixels stands: the torso's polygon, the
    limbs as thick lines, a disc for the head."""
    h, w = size
    seen = points[:, 2] > 0
    region = np.zeros((h, w), np.uint8)
    ys = points[seen, 1]
    width = max(2, int(round(LIMB_WIDTH * (np.ptp(ys) if len(ys) > 1 else h))))
    torso = [points[i, :2] for i in TORSO if seen[i]]
    if len(torso) >= 3:
        cv2.fillPoly(region, [np.round(np.array(torso)).astype(np.int32)], 1)
    for a, b in render.BODY_LIMBS:
        if seen[a] and seen[b]:
            cv2.line(region, tuple(np.round(points[a, :2]).astype(int)), tuple(np.round(points[b, :2]).astype(int)),
                     1, width)
    if seen[0] and seen[1]:
        radius = max(2, int(round(0.6 * np.linalg.norm(points[0, :2] - points[1, :2]))))
        cv2.circle(region, tuple(np.round(points[0, :2]).astype(int)), radius, 1, -1)
    return region > 0


def keypoint_flows(target: torch.Tensor, references: torch.Tensor, size: tuple[int, int]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A driving person's flow to each reference person from their keypoints, for generation: target (67, 3) and
    references (K, 67, 3) in output pixels (BODY_25 + hands, confidence 0 where unseen) -> flows (K, 2, H, W) and
    weights (K, 1, H, W): a thin-plate spline through the body points seen in both, weighted 1 on the driving
    person's body (body_region), 0 off it, softened at its edge; 0 everywhere with fewer than 4 points in common."""
    h, w = size
    driving = target.numpy().astype(np.float64)[:BODY_POINTS]
    on_body = soft_weight(body_region(driving, size))  # the same for every reference
    flows, weights = [], []
    for points in references.numpy().astype(np.float64):
        common = (driving[:, 2] > 0) & (points[:BODY_POINTS, 2] > 0)
        if common.sum() < 4:
            flows.append(torch.zeros(2, h, w))
            weights.append(torch.zeros(1, h, w))
            continue
        moved = points[:BODY_POINTS][common, :2] - driving[common, :2]
        flow = thin_plate_spline(driving[common, :2], moved, pixel_points(size)).reshape(h, w, 2).astype(np.float32)
        flows.append(torch.from_numpy(flow).permute(2, 0, 1))
        weights.append(on_body)
    return torch.stack(flows), torch.stack(weights)


def to_picture(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, what DIS reads."""
    return ((image.permute(1, 2, 0).cpu().numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)


def reference_flows(labels: torch.Tensor, images: torch.Tensor, ref_labels: torch.Tensor, ref_images: torch.Tensor,
                    task: str, landmarks: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher flow from every frame (labels (T, C, H, W), images (T, 3, H, W) in [-1, 1]) to every reference
    (K, ...): (T, K, 2, H, W) backward, frame(p) ~ reference(p + flow(p)), and its confidence (T, K, 1, H, W).

    For pose data with DensePose it reads the DensePose maps, as imaginaire's teacher does (body-surface
    coordinates match across poses where clothes' colours and lighting may not); otherwise the images. With
    landmarks (face: the frames' (T, 68, 2) and the references' (K, 68, 2) in output pixels), the flow inside each
    frame's face is the landmarks' (landmark_flow) and DIS's only around it: DIS loses a face that turns or opens
    its mouth between two frames far apart, which the landmarks follow."""
    use_densepose = task == "pose" and bool((labels[:, 2] > -1).any()) and bool((ref_labels[:, 2] > -1).any())

    def pictures(label, image):
        return [to_picture(v) for v in (label[:, :3] if use_densepose else image)]

    references = pictures(ref_labels, ref_images)
    flows, confidences = [], []
    for t, target in enumerate(pictures(labels, images)):
        pairs = [dis_flow(target, reference) for reference in references]
        if landmarks is not None:
            pairs = [inside_face(pair, landmark_flow(landmarks[0][t].numpy(), points.numpy(), target.shape[:2]))
                     for pair, points in zip(pairs, landmarks[1], strict=True)]
        flows.append(torch.stack([torch.from_numpy(f.transpose(2, 0, 1).copy()) for f, _ in pairs]))
        confidences.append(torch.stack([torch.from_numpy(c)[None] for _, c in pairs]))
    return torch.stack(flows).to(images.device), torch.stack(confidences).to(images.device)


def inside_face(outer: tuple[np.ndarray, np.ndarray], face: tuple[np.ndarray, np.ndarray, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The landmarks' flow and confidence on the face (landmark_flow), the outer (DIS) ones elsewhere."""
    (outer_flow, outer_confidence), (face_flow, on_face, face_confidence) = outer, face
    return (np.where(on_face[..., None], face_flow, outer_flow),
            np.where(on_face, face_confidence, outer_confidence).astype(np.float32))


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
