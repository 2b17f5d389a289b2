"""Procedural videos with exact ground truth, so that training, generation and the demo run offline.

Three kinds: "dancers" (an articulated person with OpenPose BODY_25 + face-70 + hand-21 keypoints), "street"
(a forward-driving camera in a city street with Cityscapes label ids) and "faces" (a talking head with dlib-68
landmarks). A sequence is a pure function of (kind, index, seed): its appearance ("identity") comes from one
random stream and its motion from another, so any identity can perform any sequence's motion.

Everything is drawn as regions: a region is a set of polygons in the local coordinates of a rigid body, moved
into the image by that body's transform for the frame (a 3x3 matrix: affine for people and faces, a plane's
homography for the street), and filled with a texture that is a function of the local coordinates only. A
surface point therefore keeps its colour wherever its body takes it, and the backward flow of a pixel p on body
b is M_b(t-1) M_b(t)^-1 p - p, exact. A pixel's flow is valid when the previous frame showed the same region
at that point's previous position (rounded to the nearest pixel) inside the image. Only the textures' own
interpolation and the anti-aliased one-pixel fringe at region borders separate "warp the previous frame by the
flow" from the current frame: textures are band-limited by the pixel footprint (edges are ramps 2 pixels wide,
patterns finer than 8 pixels fade towards their mean), and `parts` names the region of every pixel so that
borders can be excluded.

Pixel coordinates: x to the right, y down, pixel centres at integers (the convention of `vid2vid.nn.warp`).
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("dancers", "street", "faces")
FPS = 30.0  # frames per second the motions are designed for

# The Cityscapes label ids ("id", not "trainId") that street scenes use.
CITYSCAPES_IDS = {"ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "wall": 12, "pole": 17,
                  "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23,
                  "person": 24, "car": 26}

BODY_25_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip",
                 "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe",
                 "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")


@dataclass
class SyntheticFrame:
    """One frame and its exact labels; fields a kind has no use for are None."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    people: list[dict] | None  # dancers: OpenPose people dicts (BODY_25, face-70, hands-21; x, y, confidence)
    landmarks: np.ndarray | None  # faces: (68, 2) float32 dlib-68 points
    seg: np.ndarray | None  # street: (H, W) uint8 Cityscapes label ids
    flow: np.ndarray | None  # (H, W, 2) float32 backward flow (dx, dy): p + flow[p] is p in the previous frame
    flow_valid: np.ndarray | None  # (H, W) bool: the point was visible in the previous frame, inside the image
    parts: np.ndarray  # (H, W) uint16 id of the region drawn at each pixel (0 background), stable over a sequence


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def identity(kind: str, index: int, seed: int = 0) -> DancerIdentity | StreetLook | PortraitIdentity:
    """The appearance parameters of identity `index`: a DancerIdentity, a StreetLook or a PortraitIdentity."""
    _check(kind, index, seed)
    rng = _rng(seed, kind, index, _IDENTITY_STREAM)
    palette = _rng(seed, kind, 0, _PALETTE_STREAM)  # shared by all indices: colour wheels stepped by index
    return {"dancers": _dancer_identity, "street": _street_look, "faces": _portrait_identity}[kind](rng, palette,
                                                                                                    index)


def sequence(kind: str, index: int, frames: int, size: tuple[int, int], seed: int = 0,
             motion_index: int | None = None) -> Iterator[SyntheticFrame]:
    """Frames 0..frames-1 of identity `index` performing the motion of sequence `motion_index` (default: index).

    size is (height, width). Same arguments, same pixels; frame t does not depend on `frames`.
    """
    motion_index = index if motion_index is None else motion_index
    _check(kind, motion_index, seed)
    height, width = size
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"synthetic {kind}: need frames >= 1 and a size of at least 8x8, got {frames}, {size}")
    look = identity(kind, index, seed)
    motion_rng = _rng(seed, kind, motion_index, _MOTION_STREAM)
    if kind == "dancers":
        scene = _DancerScene(look, motion_rng, (height, width))
    elif kind == "faces":
        scene = _PortraitScene(look, motion_rng, (height, width))
    else:
        scene = _StreetScene(look, motion_rng, (height, width), (seed, motion_index))
    return _frames(scene, frames)


# --------------------------------------------------------------------------------------------------------------
# Random streams

_IDENTITY_STREAM, _MOTION_STREAM, _PALETTE_STREAM, _CHUNK_STREAM = 0, 1, 2, 3
_GOLDEN = 0.6180339887


def _check(kind: str, index: int, seed: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"synthetic data: unknown kind {kind!r}, expected one of {KINDS}")
    if index < 0 or seed < 0:
        raise ValueError(f"synthetic {kind}: index and seed must be >= 0, got {index}, {seed}")


def _rng(seed: int, kind: str, index: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, KINDS.index(kind), index, stream, *extra]))


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (255 * r, 255 * g, 255 * b)


def _mix(a, b, t):
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _pick(rng: np.random.Generator, options, weights=None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


class _Wave:
    """A smooth signal between lo and hi: tanh of a sum of three sinusoids (t in frames)."""

    def __init__(self, rng: np.random.Generator, lo: float, hi: float, tempo: float, strength: float,
                 bias: float = 0.0):
        self.lo, self.hi = lo, hi
        self.freq = tempo * np.array([0.5, 1.0, 1.7]) * rng.uniform(0.85, 1.15, 3) / FPS
        self.amp = rng.normal(0.0, 1.0, 3) * strength / math.sqrt(3.0)
        self.phase = rng.uniform(0.0, 2 * math.pi, 3)
        self.bias = bias + rng.normal(0.0, 0.5)

    def __call__(self, t: float) -> float:
        x = self.bias + float(np.sum(self.amp * np.sin(2 * math.pi * self.freq * t + self.phase)))
        return self.lo + (self.hi - self.lo) * (0.5 + 0.5 * math.tanh(x))


# --------------------------------------------------------------------------------------------------------------
# Geometry: 3x3 transforms and polygons


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def _rotate_scale(degrees: float, sx: float, sy: float | None = None) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    sy = sx if sy is None else sy
    return np.array([[c * sx, -s * sy, 0.0], [s * sx, c * sy, 0.0], [0.0, 0.0, 1.0]])


def _bone(origin, degrees: float, along: float = 1.0) -> np.ndarray:
    """Frame of a limb: local x runs along the bone (direction `degrees`, clockwise on screen from the image x
    axis, scaled by `along` for foreshortening), local y across it."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[along * c, -s, origin[0]], [along * s, c, origin[1]], [0.0, 0.0, 1.0]])


def _apply(m: np.ndarray, pts) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    h = pts @ m[:2, :2].T + m[:2, 2]
    w = pts @ m[2, :2] + m[2, 2]
    return h / w[:, None]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, start: float = 0.0,
             end: float = 2 * math.pi) -> np.ndarray:
    a = np.linspace(start, end, n, endpoint=(end - start) < 2 * math.pi - 1e-9)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _capsule(length: float, r0: float, r1: float, n: int = 10) -> np.ndarray:
    """Rounded limb outline along +x from 0 to `length`, radius r0 at the start and r1 at the end."""
    a = np.linspace(-math.pi / 2, math.pi / 2, n)
    end = np.stack([length + r1 * np.cos(a), r1 * np.sin(a)], 1)
    start = np.stack([-r0 * np.cos(a), -r0 * np.sin(a)], 1)
    return np.concatenate([end, start])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _spline(points, closed: bool = False, per: int = 6) -> np.ndarray:
    """Catmull-Rom curve through `points` (they lie on it)."""
    p = np.asarray(points, np.float64)
    if closed:
        ext = np.concatenate([p[-1:], p, p[:2]])
    else:
        ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    n = len(p) if closed else len(p) - 1
    s = np.linspace(0.0, 1.0, per, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        out.append(0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s ** 2
                          + (3 * p1 - p0 - 3 * p2 + p3) * s ** 3))
    if not closed:
        out.append(p[-1:])
    return np.concatenate(out)


def _stroke(points, half_width) -> np.ndarray:
    """Outline of a thick curve through `points`, half width per point (or one value)."""
    p = np.asarray(points, np.float64)
    d = np.gradient(p, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    w = np.broadcast_to(np.asarray(half_width, np.float64), (len(p),))[:, None]
    return np.concatenate([p + n * w, (p - n * w)[::-1]])


def _clip_near(poly: np.ndarray, m: np.ndarray, near: float) -> np.ndarray:
    """The part of a local polygon whose homogeneous depth (m's last row) is at least `near`."""
    w = poly @ m[2, :2] + m[2, 2] - near
    if w.min() >= 0:
        return poly
    out = []
    for i in range(len(poly)):
        a, b, wa, wb = poly[i], poly[(i + 1) % len(poly)], w[i], w[(i + 1) % len(poly)]
        if wa >= 0:
            out.append(a)
        if (wa >= 0) != (wb >= 0):
            out.append(a + (b - a) * (wa / (wa - wb)))
    return np.array(out).reshape(-1, 2)


# --------------------------------------------------------------------------------------------------------------
# Textures: functions of local coordinates, band-limited by the pixel footprint (local units per pixel)


def _span(x, a: float, b, f):
    """Coverage of [a, b] by a box filter 2 pixels wide centred at x (f: local units per pixel)."""
    return np.clip(np.minimum(x + f, b) - np.maximum(x - f, a), 0.0, None) / (2 * f)


def _detail(period, f):
    """How much of a pattern with this period to show: all from 8 pixels, fading to its mean at 4 pixels.

    Bilinear resampling of a sinusoid of period P pixels errs by up to (2 pi / P)^2 / 8 of its amplitude: 8% at
    P = 8, so warping stays close to exact."""
    return np.clip(period / (4.0 * f) - 1.0, 0.0, 1.0)


def _bands(x, period: float, duty: float, f):
    """1 on bands duty*period wide repeating every period (band centres at multiples of period)."""
    t = (x / period + 0.5) % 1.0 - 0.5
    k = _detail(period, f)
    return k * _span(t * period, -duty * period / 2, duty * period / 2, f) + (1 - k) * duty


def _disc(r, radius: float, f):
    return np.clip(0.5 + (radius - r) / (2.0 * f), 0.0, 1.0)


def _rgb(colour) -> np.ndarray:
    return np.asarray(colour, np.float32)


def _lerp(colour, other, t):
    """Per-pixel blend of (n, 3) or (3,) colours by t (n,)."""
    c = _rgb(colour)
    return c + (_rgb(other) - c) * np.asarray(t, np.float32)[..., None]


@dataclass(frozen=True)
class Garment:
    """Cloth: a colour, an accent colour and a pattern ("solid", "stripes", "pinstripes", "dots", "checks") with
    its period in the wearer's units (stature for dancers, face units for portraits)."""

    colour: tuple[float, float, float]
    accent: tuple[float, float, float]
    pattern: str
    period: float


def _garment_paint(g: Garment, half_width: float, shade: float = 0.25) -> Callable:
    """Cloth on a part whose local x runs along it and local y across it (half_width from the axis)."""

    def paint(u, v, fu, fv):
        p = g.period
        if g.pattern == "stripes":
            c = _bands(u, p, 0.5, fu)
        elif g.pattern == "pinstripes":
            c = _bands(v, p * 0.6, 0.25, fv)
        elif g.pattern == "dots":
            k = _detail(p, np.maximum(fu, fv))
            du, dv = (u / p + 0.5) % 1.0 - 0.5, (v / p + 0.5) % 1.0 - 0.5
            c = k * _disc(np.hypot(du, dv) * p, 0.25 * p, np.maximum(fu, fv)) + (1 - k) * math.pi * 0.0625
        elif g.pattern == "checks":
            a, b = _bands(u, p, 0.5, fu), _bands(v, p, 0.5, fv)
            c = 0.5 * (a + b)
        else:
            c = np.zeros_like(u)
        col = _lerp(g.colour, g.accent, c)
        return col * (1.0 - shade * np.clip(v / half_width, -1, 1) ** 2)[:, None]

    return paint


def _shaded_paint(colour, half_width: float) -> Callable:
    """A plain colour, darker towards the sides of a part whose local y runs across it (like a cylinder)."""

    def paint(u, v, fu, fv):
        return _rgb(colour) * (1.0 - 0.2 * np.clip(v / half_width, -1, 1) ** 2)[:, None]

    return paint


# --------------------------------------------------------------------------------------------------------------
# Rendering: regions composited back to front, then flow and its validity


@dataclass
class _Region:
    id: int  # stable over the sequence, > 0
    key: object  # the body whose transform moves it
    polygons: list  # (N, 2) arrays in the body's local coordinates; their union is the region
    paint: object  # an RGB triple or paint(u, v, fu, fv) -> (n, 3)
    cls: int = 0  # Cityscapes id (street)
    clip: list | None = None  # polygons (same coordinates) the region is intersected with


_SUPER = 4  # coverage is found by filling at 4x resolution and averaging 4x4 blocks
_LAST_OF_SPAN = np.ones((2, 2), np.uint8)


def _coverage(polys: list, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """uint8 coverage (0-255) of the union of image-coordinate polygons over the box at (x0, y0), w x h.

    A fine pixel counts when its centre is inside. cv2.fillPoly rounds a span's ends to the nearest pixel and
    fills both: moved half a fine pixel right and down, then eroded by the last pixel of each span, that is
    exactly the fine pixels from ceil(start) to floor(end)."""
    mask = np.zeros((h * _SUPER, w * _SUPER), np.uint8)
    for p in polys:
        if len(p) < 3:
            continue
        # Fine pixel centres at k + 0.5 in image units * _SUPER, plus the half pixel; 4 fractional bits.
        q = _SUPER * (p - (x0, y0) + 0.5) * 16.0
        cv2.fillPoly(mask, [np.round(q).astype(np.int32)], 255, cv2.LINE_8, 4)
    mask = cv2.erode(mask, _LAST_OF_SPAN, anchor=(0, 0))
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)


def _local_coords(g: np.ndarray, xs: np.ndarray, ys: np.ndarray):
    """Local coordinates of pixels (g: image -> local) and the footprint of a pixel along each local axis."""
    a = g[0, 0] * xs + g[0, 1] * ys + g[0, 2]
    b = g[1, 0] * xs + g[1, 1] * ys + g[1, 2]
    if g[2, 0] == 0.0 and g[2, 1] == 0.0:  # affine: the last row stays (0, 0, 1)
        return a.astype(np.float32), b.astype(np.float32), math.hypot(g[0, 0], g[0, 1]), math.hypot(g[1, 0], g[1, 1])
    w = g[2, 0] * xs + g[2, 1] * ys + g[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = a / w, b / w
        fu = np.hypot(g[0, 0] - u * g[2, 0], g[0, 1] - u * g[2, 1]) / np.abs(w)
        fv = np.hypot(g[1, 0] - v * g[2, 0], g[1, 1] - v * g[2, 1]) / np.abs(w)
    # A pixel on the horizon (partly covered by a plane that ends short of it) maps to infinity: make it a far,
    # finite point whose footprint fades every pattern.
    far = 1e6
    u, v = (np.nan_to_num(c, nan=far, posinf=far, neginf=-far).clip(-far, far).astype(np.float32) for c in (u, v))
    fu, fv = (np.nan_to_num(c, nan=far, posinf=far).clip(1e-9, far).astype(np.float32) for c in (fu, fv))
    return u, v, fu, fv


def _owned(alpha: np.ndarray) -> np.ndarray:
    """Pixels a region claims in `parts` and `seg`: those it covers at least half, and where a row or column of
    it never reaches half (a thin or tiny thing: a far pole, a dancer's eye), that line's most covered pixel."""
    own = alpha >= 128
    for axis in (1, 0):
        peak = alpha.max(axis)
        thin = np.nonzero((peak >= 32) & (peak < 128))[0]
        if len(thin):
            at = alpha.argmax(axis)[thin]
            own[(thin, at) if axis == 1 else (at, thin)] = True
    return own


class _Scene:
    """What _frames draws: size, a static background (H, W, 3) float, regions(t), matrix(key, t) (3x3 local ->
    image for any frame, also one where the body is hidden), labels(t) -> (people, landmarks)."""

    classes = False  # whether seg is produced (from the regions' cls)
    background_class = 0

    def finish(self, image: np.ndarray) -> np.ndarray:
        return image


def _draw(scene: _Scene, t: int):
    """Composite the scene's regions at frame t: image (H, W, 3) float, slot map (index into regions, 0 none)."""
    height, width = scene.size
    image = scene.background.copy()
    slot = np.zeros((height, width), np.int32)
    regions = scene.regions(t)
    matrices = [scene.matrix(r.key, t) for r in regions]
    inverses = np.linalg.inv(np.stack(matrices)) if regions else np.zeros((0, 3, 3))
    for k, (r, m) in enumerate(zip(regions, matrices, strict=True), 1):
        local = [p for p in r.polygons if len(p) >= 3]
        if not local:
            continue
        pts = _apply(m, np.concatenate(local) if len(local) > 1 else local[0])
        ends = np.cumsum([len(p) for p in local])
        polys = [pts[e - len(p):e] for p, e in zip(local, ends, strict=True)]
        x0, y0 = max(int(math.floor(pts[:, 0].min())) - 1, 0), max(int(math.floor(pts[:, 1].min())) - 1, 0)
        x1, y1 = min(int(math.ceil(pts[:, 0].max())) + 2, width), min(int(math.ceil(pts[:, 1].max())) + 2, height)
        if x1 <= x0 or y1 <= y0:
            continue
        alpha = _coverage(polys, x0, y0, x1 - x0, y1 - y0)
        if r.clip is not None:
            clip = _coverage([_apply(m, p) for p in r.clip if len(p) >= 3], x0, y0, x1 - x0, y1 - y0)
            alpha = (alpha.astype(np.uint16) * clip // 255).astype(np.uint8)
        mask = alpha > 0
        a = alpha[mask].astype(np.float32) * np.float32(1 / 255)
        if len(a) == 0:
            continue
        if callable(r.paint):
            ys, xs = np.nonzero(mask)
            u, v, fu, fv = _local_coords(inverses[k - 1], xs + float(x0), ys + float(y0))
            colour = np.asarray(r.paint(u, v, fu, fv), np.float32)
        else:
            colour = _rgb(r.paint)
        patch = image[y0:y1, x0:x1]
        under = patch[mask]
        patch[mask] = under + (colour - under) * a[:, None]
        slot[y0:y1, x0:x1][_owned(alpha)] = k
    return image, slot, regions, inverses


def _frames(scene: _Scene, frames: int) -> Iterator[SyntheticFrame]:
    height, width = scene.size
    prev_parts = None
    for t in range(frames):
        image, slot, regions, inverses = _draw(scene, t)
        ids = np.array([0] + [r.id for r in regions], np.int64)
        parts = ids[slot].astype(np.uint16)
        flow = valid = None
        if t > 0:
            before = np.stack([np.eye(3)] + [scene.matrix(r.key, t - 1) for r in regions])
            back = before @ np.concatenate([np.eye(3)[None], inverses])  # (K+1, 3, 3): image now -> before
            # These image-to-image maps are near the identity: scaled to back[2, 2] = 1 they are well
            # conditioned, and float32 gives positions to ~1e-4 pixel.
            back = (back / np.abs(back[:, 2:3, 2:3])).reshape(-1, 9).astype(np.float32)
            f = back[slot]  # (H, W, 9)
            x = np.arange(width, dtype=np.float32)[None, :]
            y = np.arange(height, dtype=np.float32)[:, None]
            w = f[..., 6] * x + f[..., 7] * y + f[..., 8]
            ok = w > 1e-6  # the point was in front of the camera
            w = np.where(ok, w, 1.0)
            qx = (f[..., 0] * x + f[..., 1] * y + f[..., 2]) / w
            qy = (f[..., 3] * x + f[..., 4] * y + f[..., 5]) / w
            flow = np.where(ok[..., None], np.stack([qx - x, qy - y], -1), 0.0).astype(np.float32)
            inside = ok & (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
            ix = np.clip(np.rint(qx), 0, width - 1).astype(np.intp)
            iy = np.clip(np.rint(qy), 0, height - 1).astype(np.intp)
            valid = inside & (prev_parts[iy, ix] == parts)
        image = scene.finish(image)
        seg = None
        if scene.classes:
            classes = np.array([scene.background_class] + [r.cls for r in regions], np.uint8)
            seg = classes[slot]
        people, landmarks = scene.labels(t)
        yield SyntheticFrame(image=np.clip(np.rint(image), 0, 255).astype(np.uint8), people=people,
                             landmarks=landmarks, seg=seg, flow=flow, flow_valid=valid, parts=parts)
        prev_parts = parts


# --------------------------------------------------------------------------------------------------------------
# Backdrops (static, so their flow is exactly zero)


@dataclass(frozen=True)
class Backdrop:
    """A static background: "plain", "vertical" or "diagonal" gradient, or "room" (wall above a floor)."""

    style: str
    colour: tuple[float, float, float]
    other: tuple[float, float, float]


def _backdrop_image(b: Backdrop, size: tuple[int, int], floor_y: float | None = None) -> np.ndarray:
    y, x = _unit_grid(size)
    if b.style == "plain":
        t = np.zeros_like(x)
    elif b.style == "vertical":
        t = y
    elif b.style == "diagonal":
        t = 0.5 * (x + y)
    else:  # room: the wall darkens downwards, a floor below floor_y, a soft skirting line between
        fy = (floor_y if floor_y is not None else 0.8 * size[0]) / size[0]
        wall = _lerp(b.colour, _mix(b.colour, (0, 0, 0), 0.25), np.clip(0.35 * y / fy, 0, 1))
        ground = _lerp(b.other, _mix(b.other, (255, 255, 255), 0.15), np.clip((y - fy) / (1 - fy), 0, 1))
        return _lerp(wall, ground, np.clip((y - fy) * size[0] / 1.5 + 0.5, 0, 1))
    return _lerp(b.colour, b.other, t)


def _unit_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of pixel centres as fractions of the image height and width, each (H, W)."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return y / height, x / width


def _random_backdrop(rng: np.random.Generator, styles=("plain", "vertical", "diagonal")) -> Backdrop:
    h = rng.uniform()
    colour = _hsv(h, rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.95))
    other = _hsv(h + rng.uniform(-0.15, 0.15), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.9))
    return Backdrop(_pick(rng, styles), colour, other)


# --------------------------------------------------------------------------------------------------------------
# Faces (talking heads, and the heads of dancers)

# Mean dlib-68 shape (as published with OpenFace's align_dlib.py), made left-right symmetric below.
_DLIB_MEAN = np.array([
    (0.0792, 0.3392), (0.0829, 0.4570), (0.0968, 0.5756), (0.1221, 0.6919), (0.1687, 0.8003), (0.2398, 0.8957),
    (0.3257, 0.9771), (0.4223, 1.0433), (0.5318, 1.0608), (0.6413, 1.0398), (0.7381, 0.9723), (0.8244, 0.8896),
    (0.8948, 0.7925), (0.9394, 0.6815), (0.9611, 0.5622), (0.9706, 0.4418), (0.9712, 0.3221), (0.1638, 0.2492),
    (0.2178, 0.2043), (0.2913, 0.1924), (0.3675, 0.2036), (0.4393, 0.2331), (0.5864, 0.2281), (0.6602, 0.1959),
    (0.7375, 0.1824), (0.8132, 0.1928), (0.8708, 0.2353), (0.5153, 0.3186), (0.5162, 0.3962), (0.5171, 0.4738),
    (0.5182, 0.5532), (0.4337, 0.6041), (0.4755, 0.6208), (0.5207, 0.6343), (0.5659, 0.6188), (0.6071, 0.6016),
    (0.2524, 0.3311), (0.2987, 0.3026), (0.3557, 0.3030), (0.4037, 0.3387), (0.3525, 0.3500), (0.2968, 0.3505),
    (0.6313, 0.3341), (0.6791, 0.2965), (0.7360, 0.2947), (0.7829, 0.3213), (0.7403, 0.3418), (0.6850, 0.3437),
    (0.3532, 0.7462), (0.4146, 0.7191), (0.4777, 0.7068), (0.5227, 0.7171), (0.5698, 0.7054), (0.6352, 0.7157),
    (0.6995, 0.7394), (0.6394, 0.8052), (0.5764, 0.8354), (0.5254, 0.8417), (0.4764, 0.8375), (0.4138, 0.8100),
    (0.3801, 0.7500), (0.4780, 0.7451), (0.5234, 0.7489), (0.5711, 0.7433), (0.6724, 0.7442), (0.5725, 0.7766),
    (0.5240, 0.7834), (0.4776, 0.7785)])
_MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
                   + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
                   + [64, 63, 62, 61, 60, 67, 66, 65])


def _face_template() -> np.ndarray:
    """Symmetric dlib-68 shape with the mouth closed; face units: origin between the eyes and the mouth."""
    p = _DLIB_MEAN - (0.525, 0.5)
    mirrored = p[_MIRROR] * (-1.0, 1.0)
    p = 0.5 * (p + mirrored)
    gap = p[[65, 66, 67], 1].mean() - p[[61, 62, 63], 1].mean() - 0.004
    p[[55, 56, 57, 58, 59, 65, 66, 67], 1] -= gap  # close the mean shape's parted lips
    return p


_TEMPLATE = _face_template()


@dataclass(frozen=True)
class Face:
    """A face's look: shape factors (1 = the mean dlib shape), colours and hair style."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair_style: str  # short, bangs, side, long, bun, afro, buzz
    jaw_width: float
    chin: float
    eye_size: float
    eye_spacing: float
    nose_length: float
    mouth_width: float
    lip_thickness: float
    brow_thickness: float
    fringe: float  # hairline height between the brows (0) and the crown (1)


_SKIN_TONES = [(255, 224, 200), (243, 205, 176), (234, 190, 150), (220, 170, 125), (198, 140, 100),
               (170, 115, 80), (140, 90, 60), (105, 68, 46), (80, 52, 38)]
_HAIR_COLOURS = [(28, 24, 24), (60, 40, 28), (100, 66, 40), (140, 100, 60), (205, 170, 105), (230, 210, 160),
                 (150, 65, 35), (175, 175, 180), (60, 85, 175), (185, 70, 135)]
_HAIR_WEIGHTS = [5, 5, 4, 3, 3, 1.5, 2, 1.5, 0.5, 0.5]
_IRIS_COLOURS = [(70, 45, 28), (105, 72, 40), (60, 110, 165), (75, 125, 85), (120, 130, 140)]
_HAIR_STYLES = ("short", "bangs", "side", "long", "bun", "afro", "buzz")


def _random_face(rng: np.random.Generator, skin_step: float) -> Face:
    tone = (skin_step + rng.uniform(-0.08, 0.08)) % 1.0 * (len(_SKIN_TONES) - 1)
    i = int(tone)
    skin = _mix(_SKIN_TONES[i], _SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)], tone - i)
    lips = _mix(skin, (170, 60, 70), rng.uniform(0.35, 0.6)) if rng.uniform() < 0.85 else (190, 30, 60)
    return Face(skin=skin, hair=_pick(rng, _HAIR_COLOURS, _HAIR_WEIGHTS), iris=_pick(rng, _IRIS_COLOURS), lips=lips,
                hair_style=_pick(rng, _HAIR_STYLES, [3, 2, 2, 3, 1, 1, 1]), jaw_width=rng.uniform(0.88, 1.1),
                chin=rng.uniform(0.9, 1.12), eye_size=rng.uniform(0.85, 1.2), eye_spacing=rng.uniform(0.94, 1.06),
                nose_length=rng.uniform(0.88, 1.12), mouth_width=rng.uniform(0.85, 1.15),
                lip_thickness=rng.uniform(0.75, 1.35), brow_thickness=rng.uniform(0.7, 1.4),
                fringe=rng.uniform(0.25, 0.6))


@dataclass(frozen=True)
class _Expression:
    blink: float = 0.0  # 0 open, 1 closed
    mouth_open: float = 0.0  # face units the lower lip drops
    mouth_width: float = 1.0
    brow_raise: float = 0.0
    gaze: tuple[float, float] = (0.0, 0.0)


_NEUTRAL = _Expression()
_FACE_KEYS = ("head", "jaw", "brow", "gaze_r", "gaze_l")  # gaze_r: the person's right eye, image left


class _FaceModel:
    """A face drawn in face units (x right, y down, origin near the nose; the face is about 0.9 wide)."""

    def __init__(self, face: Face):
        self.face = face
        p = _TEMPLATE.copy()
        jaw = p[0:17]
        jaw[:, 0] *= face.jaw_width
        jaw[:, 1] = np.where(jaw[:, 1] > 0, jaw[:, 1] * face.chin, jaw[:, 1])
        for eye in (slice(36, 42), slice(42, 48)):
            c = p[eye].mean(0)
            p[eye] = c * (face.eye_spacing, 1.0) + (p[eye] - c) * face.eye_size
        p[17:27, 0] *= face.eye_spacing
        nose_top = p[27, 1]
        p[27:36, 1] = nose_top + (p[27:36, 1] - nose_top) * face.nose_length
        mouth_shift = (face.nose_length - 1.0) * (p[33, 1] - nose_top) / face.nose_length * 0.6
        p[48:68, 1] += mouth_shift
        p[48:68, 0] *= face.mouth_width
        line = p[[60, 61, 62, 63, 64], 1].mean()
        for outer in (49, 50, 51, 52, 53, 55, 56, 57, 58, 59):
            p[outer, 1] = line + (p[outer, 1] - line) * face.lip_thickness
        self.neutral = p
        self.eye_centres = (p[36:42].mean(0), p[42:48].mean(0))
        self.iris_radius = 0.19 * (p[39, 0] - p[36, 0])
        self.skull = (0.0, 0.5 * (p[0, 1] + p[16, 1]), 0.5 * (p[16, 0] - p[0, 0]), 0.57)  # centre, radii

    def landmarks(self, e: _Expression) -> np.ndarray:
        p = self.neutral.copy()
        for up, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
            gap = p[lo, 1] - p[up, 1]
            p[up, 1] += 0.9 * e.blink * gap
            p[lo, 1] -= 0.08 * e.blink * gap
        p[17:27, 1] -= e.brow_raise
        mx = 0.5 * (p[48, 0] + p[54, 0])
        p[48:68, 0] = mx + (p[48:68, 0] - mx) * e.mouth_width
        d = e.mouth_open
        p[[48, 54, 60, 64], 1] += 0.35 * d
        p[[55, 56, 57, 58, 59, 65, 66, 67], 1] += d
        p[[61, 62, 63], 1] -= 0.1 * d
        p[4:13, 1] += d * np.array([0.1, 0.25, 0.45, 0.6, 0.65, 0.6, 0.45, 0.25, 0.1])
        return p

    def offsets(self, e: _Expression) -> dict:
        """Where each sub-body's origin sits in head coordinates."""
        (rx, ry), (lx, ly) = self.eye_centres
        gx, gy = e.gaze
        return {"head": (0.0, 0.0), "jaw": (0.0, e.mouth_open), "brow": (0.0, -e.brow_raise),
                "gaze_r": (rx + gx, ry + gy), "gaze_l": (lx + gx, ly + gy)}

    def pupils(self, e: _Expression) -> np.ndarray:
        off = self.offsets(e)
        return np.array([off["gaze_r"], off["gaze_l"]])

    def ears(self) -> np.ndarray:
        p = self.neutral
        return np.array([[p[0, 0] - 0.015, p[0, 1] + 0.1], [p[16, 0] + 0.015, p[16, 1] + 0.1]])

    def regions(self, e: _Expression, first_id: int) -> tuple[list, list]:
        """(regions behind the neck, regions in front); their bodies are named by _FACE_KEYS."""
        f = self.face
        p = self.landmarks(e)
        off = self.offsets(e)

        def region(n, key, polys, paint, clip=None):
            dx, dy = off[key]
            move = [np.asarray(q) - (dx, dy) for q in polys]
            cl = None if clip is None else [np.asarray(q) - (dx, dy) for q in clip]
            return _Region(first_id + n, key, move, paint, clip=cl)

        cx, cy, rx, ry = self.skull
        hair_paint = _hair_paint(f.hair, cy, ry)
        skin_outline = np.concatenate([_spline(p[0:17]), _ellipse(cx, cy, rx, ry, 24, 0.0, -math.pi)[1:-1]])
        back, front = [], []
        if f.hair_style == "long":
            top = _ellipse(cx, cy, rx * 1.12, ry * 1.1, 20, 0.0, -math.pi)
            w = rx * 1.22
            bottom = [(-w, p[8, 1] + 0.35), (-w * 0.7, p[8, 1] + 0.45), (w * 0.7, p[8, 1] + 0.45),
                      (w, p[8, 1] + 0.35)]
            back.append(region(0, "head", [np.concatenate([top[::-1], bottom[::-1]])], hair_paint))
        ears = self.ears()
        front.append(region(1, "head", [_ellipse(x, y, 0.06, 0.11, 16) for x, y in ears], _mul(f.skin, 0.9)))
        front.append(region(2, "head", [skin_outline], _face_shaded_paint(f.skin, f.lips)))
        sclera = (238.0, 236.0, 230.0)
        pupil = (18.0, 16.0, 20.0)
        for side, (eye, key) in enumerate(((slice(36, 42), "gaze_r"), (slice(42, 48), "gaze_l"))):
            outline = _spline(p[eye], closed=True, per=5)
            ex, ey = off[key]
            front.append(region(3 + side, "head", [outline], sclera))
            front.append(region(5 + side, key, [_ellipse(ex, ey, self.iris_radius, self.iris_radius, 20)],
                                _iris_paint(f.iris, self.iris_radius), clip=[outline]))
            front.append(region(7 + side, key, [_ellipse(ex, ey, 0.42 * self.iris_radius, 0.42 * self.iris_radius,
                                                         14)], pupil, clip=[outline]))
            upper = _spline(p[eye][[0, 1, 2, 3]], per=5)
            front.append(region(9 + side, "head", [_stroke(upper - (0, 0.006), 0.009)], _mul(f.hair, 0.5)))
        brow_colour = _mix(f.hair, (30, 25, 22), 0.35)
        for side, sl in enumerate((slice(17, 22), slice(22, 27))):
            th = 0.017 * f.brow_thickness * np.array([0.6, 1.0, 1.0, 0.85, 0.55])
            front.append(region(11 + side, "brow", [_stroke(_spline(p[sl], per=4), np.repeat(th, 4)[:17])],
                                brow_colour))
        front.append(region(13, "head", [_stroke(_spline(p[27:31], per=4), 0.007)], _mul(f.skin, 0.86)))
        nostrils = [_ellipse(p[i, 0], p[i, 1] - 0.01, 0.017, 0.009, 12) for i in (32, 34)]
        front.append(region(14, "head", [_stroke(_spline(p[31:36], per=4), 0.008)] + nostrils, _mul(f.skin, 0.62)))
        inner_up = _spline(p[[60, 61, 62, 63, 64]], per=5)
        inner_lo = _spline(p[[64, 65, 66, 67, 60]], per=5)
        interior = np.concatenate([inner_up, inner_lo[1:-1]])
        front.append(region(15, "head", [interior], (95.0, 32.0, 38.0)))
        teeth = _rect(p[61, 0] - 0.03, p[62, 1] - 0.02, p[63, 0] + 0.03, p[62, 1] + 0.028)
        front.append(region(16, "head", [teeth], (236.0, 232.0, 220.0), clip=[interior]))
        upper_lip = np.concatenate([_spline(p[48:55], per=5), _spline(p[[64, 63, 62, 61, 60]], per=5)])
        lower_lip = np.concatenate([_spline(p[[54, 55, 56, 57, 58, 59, 48]], per=5), inner_lo[::-1]])
        front.append(region(17, "head", [upper_lip], f.lips))
        front.append(region(18, "jaw", [lower_lip], _mul(f.lips, 1.06)))
        hair = _hair_front(f, self.skull, p)
        if hair:
            colour = _mix(f.hair, f.skin, 0.45) if f.hair_style == "buzz" else f.hair
            front.append(region(19, "head", hair, _hair_paint(colour, cy, ry)))
        return back, front


def _mul(colour, k):
    return tuple(min(255.0, c * k) for c in colour)


def _face_shaded_paint(skin, lips):
    blush = _mix(skin, lips, 0.5)

    def paint(u, v, fu, fv):
        cheeks = np.exp(-((np.abs(u) - 0.25) ** 2 + (v - 0.18) ** 2) / (2 * 0.07 ** 2)) * 0.3
        col = _lerp(skin, blush, cheeks)
        return col * (1.0 - 0.15 * np.clip(np.abs(u) / 0.45, 0, 1) ** 4 + 0.04 * np.clip(-v, 0, 1))[:, None]

    return paint


def _hair_paint(colour, cy, ry):
    def paint(u, v, fu, fv):
        k = _detail(0.06, np.maximum(fu, fv))
        strands = 0.08 * k * np.sin(u * (2 * math.pi / 0.06) + 4.0 * np.sin(v * 6.0))
        shine = 0.22 * np.exp(-((v - (cy - 0.75 * ry)) / 0.08) ** 2)
        return _rgb(colour) * (1.0 + strands + shine)[:, None]

    return paint


def _iris_paint(colour, radius):
    def paint(u, v, fu, fv):
        r = np.hypot(u, v) / radius
        return _rgb(colour) * (1.05 - 0.45 * np.clip(r, 0, 1) ** 3)[:, None]

    return paint


def _hair_front(f: Face, skull, p) -> list:
    """Hair over the skull: an outer arc and a hairline, varying by style."""
    cx, cy, rx, ry = skull
    style = f.hair_style
    brow_y = p[17:27, 1].min()
    crown = cy - ry
    fringe = brow_y - 0.02 - f.fringe * (brow_y - crown) * 0.8
    temple = (cy - 0.02, rx * 0.97)
    if style == "bangs":
        fringe = brow_y - 0.035
        line = [(temple[1], temple[0]), (rx * 0.8, fringe), (0.0, fringe + 0.01), (-rx * 0.8, fringe),
                (-temple[1], temple[0])]
    elif style == "side":
        line = [(temple[1], temple[0]), (rx * 0.55, fringe - 0.05), (-rx * 0.15, fringe + 0.06),
                (-rx * 0.7, brow_y - 0.04), (-temple[1], temple[0] + 0.02)]
    else:
        line = [(temple[1], temple[0]), (rx * 0.75, fringe + 0.02), (0.0, fringe), (-rx * 0.75, fringe + 0.02),
                (-temple[1], temple[0])]
    if style == "afro":
        a = np.linspace(0.35, -math.pi - 0.35, 60)
        r = 1.0 + 0.035 * np.sin(13 * a)
        outer = np.stack([cx + rx * 1.38 * r * np.cos(a), cy - 0.05 + ry * 1.25 * r * np.sin(a)], 1)
    else:
        grow = 1.03 if style == "buzz" else 1.08
        outer = _ellipse(cx, cy, rx * grow, ry * (grow + 0.02), 28, 0.12, -math.pi - 0.12)
    polys = [np.concatenate([outer, _spline(line[::-1], per=5)])]
    if style == "bun":
        polys.append(_ellipse(cx, crown - 0.08, 0.17, 0.15, 20))
    return polys


# --------------------------------------------------------------------------------------------------------------
# Talking heads ("faces")


@dataclass(frozen=True)
class PortraitIdentity:
    face: Face
    backdrop: Backdrop
    clothing: Garment
    neckline: str  # round or v
    scale: float  # face size relative to the image


def _random_garment(rng: np.random.Generator, hue: float, period: tuple[float, float]) -> Garment:
    colour = _hsv(hue, rng.uniform(0.4, 0.9), rng.uniform(0.35, 0.9))
    if rng.uniform() < 0.5:
        accent = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0))
    else:
        accent = _mix(colour, (255, 255, 255) if sum(colour) < 380 else (0, 0, 0), rng.uniform(0.45, 0.7))
    pattern = _pick(rng, ("solid", "stripes", "pinstripes", "dots", "checks"), [3, 3, 1.5, 2, 1.5])
    return Garment(colour, accent, pattern, float(rng.uniform(*period)))


def _portrait_identity(rng: np.random.Generator, palette: np.random.Generator, index: int) -> PortraitIdentity:
    base = palette.uniform(size=3)
    face = _random_face(rng, base[0] + 0.37 * index)
    return PortraitIdentity(face=face, backdrop=_random_backdrop(rng),
                            clothing=_random_garment(rng, base[1] + _GOLDEN * index, (0.08, 0.16)),
                            neckline=_pick(rng, ("round", "v")), scale=float(rng.uniform(0.9, 1.08)))


class _PortraitScene(_Scene):
    def __init__(self, ident: PortraitIdentity, rng: np.random.Generator, size: tuple[int, int]):
        height, width = size
        self.size = size
        self.model = _FaceModel(ident.face)
        self.ident = ident
        self.background = _backdrop_image(ident.backdrop, size)
        unit = 0.44 * min(height, width) * ident.scale
        self.rest = _translate((width - 1) / 2, 0.45 * height) @ _rotate_scale(0.0, unit)
        self.unit = unit
        tempo = rng.uniform(0.25, 0.6)
        self.turn = _Wave(rng, -12.0, 12.0, tempo, 1.5)
        self.shift = (_Wave(rng, -0.1, 0.1, tempo, 1.5), _Wave(rng, -0.06, 0.06, tempo, 1.5))
        self.zoom = _Wave(rng, -0.06, 0.06, tempo * 0.7, 1.5)
        self.nod = _Wave(rng, -0.04, 0.04, tempo * 1.5, 1.0)
        blinks = np.cumsum(rng.uniform(1.5, 5.0, 512)) * FPS
        self.blinks = blinks - blinks[0] + rng.uniform(0.2, 2.0) * FPS
        self.syllable = (rng.uniform(2.5, 4.5) / FPS, rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.4) / FPS)
        self.phrase = _Wave(rng, 0.0, 1.0, 0.25, 2.0, bias=0.8)
        self.open_max = rng.uniform(0.05, 0.085)
        self.width = _Wave(rng, 0.9, 1.12, 0.8, 1.0)
        self.brow = _Wave(rng, 0.0, 0.03, 0.3, 1.5, bias=-1.0)
        self.gaze = (_Wave(rng, -0.5, 0.5, 0.3, 1.5), _Wave(rng, -0.25, 0.25, 0.3, 1.0))
        self.expression = functools.lru_cache(maxsize=4)(self._expression)
        self.head = functools.lru_cache(maxsize=4)(self._head)
        self.regions = functools.lru_cache(maxsize=2)(self._regions)

    def _expression(self, t: int) -> _Expression:
        i = np.searchsorted(self.blinks, t)
        near = min(abs(t - self.blinks[max(i - 1, 0)]), abs(self.blinks[min(i, len(self.blinks) - 1)] - t))
        blink = math.exp(-(near / 2.2) ** 2)
        f, ph, wobble = self.syllable
        syl = 0.5 + 0.5 * math.sin(2 * math.pi * f * t + ph + 0.9 * math.sin(2 * math.pi * wobble * t))
        talk = self.phrase(t)
        r = self.model.iris_radius
        return _Expression(blink=blink, mouth_open=self.open_max * talk * syl ** 1.5, mouth_width=self.width(t),
                           brow_raise=self.brow(t), gaze=(self.gaze[0](t) * r, self.gaze[1](t) * r))

    def _head(self, t: int) -> np.ndarray:
        pivot = 0.45  # turn about the neck, below the mouth
        return (self.rest @ _translate(self.shift[0](t), self.shift[1](t) + self.nod(t) + pivot)
                @ _rotate_scale(self.turn(t), 1.0 + self.zoom(t)) @ _translate(0.0, -pivot))

    def matrix(self, key, t: int) -> np.ndarray:
        if key == "body":
            return self.rest
        off = self.model.offsets(self.expression(t))[key]
        return self.head(t) @ _translate(*off)

    def _regions(self, t: int) -> list:
        m = self.model
        back, front = m.regions(self.expression(t), 10)
        p = m.neutral
        jaw_y = p[8, 1]
        neck_w = 0.2 * self.ident.face.jaw_width
        neck = _Region(1, "body", [_rect(-neck_w, 0.0, neck_w, jaw_y + 0.55)], _shaded_paint(
            _mul(self.ident.face.skin, 0.85), neck_w))
        shoulder_y = jaw_y + 0.3
        collar = jaw_y + (0.45 if self.ident.neckline == "v" else 0.36)
        shirt = np.array([(-neck_w - 0.03, shoulder_y - 0.02), (-0.6, shoulder_y + 0.07), (-1.0, shoulder_y + 0.22),
                          (-1.25, 3.0), (1.25, 3.0), (1.0, shoulder_y + 0.22), (0.6, shoulder_y + 0.07),
                          (neck_w + 0.03, shoulder_y - 0.02), (0.0, collar)])
        cloth = _Region(2, "body", [shirt], _garment_paint(self.ident.clothing, 1.3, shade=0.15))
        return back + [neck, cloth] + front

    def labels(self, t: int):
        lm = _apply(self.head(t), self.model.landmarks(self.expression(t))).astype(np.float32)
        return None, lm


# --------------------------------------------------------------------------------------------------------------
# Dancers


@dataclass(frozen=True)
class DancerIdentity:
    """A dancer's look. Lengths are in units of stature (heel to crown of a standing person)."""

    face: Face
    stature: float  # fraction of min(height, width)
    torso: float
    shoulder: float  # half widths
    hip: float
    waist: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    build: float  # limb thickness factor
    head: float  # head size factor
    shirt: Garment
    sleeves: str  # none, short, long
    bottoms: Garment
    bottoms_style: str  # trousers, shorts, skirt
    shoes: tuple[float, float, float]
    backdrop: Backdrop


def _dancer_identity(rng: np.random.Generator, palette: np.random.Generator, index: int) -> DancerIdentity:
    base = palette.uniform(size=4)
    face = _random_face(rng, base[0] + 0.37 * index)
    shirt_hue = base[1] + _GOLDEN * index + rng.uniform(-0.04, 0.04)
    shirt = _random_garment(rng, shirt_hue, (0.035, 0.07))
    bottoms = _random_garment(rng, shirt_hue + rng.uniform(0.25, 0.75), (0.04, 0.08))
    if rng.uniform() < 0.4:
        bottoms = Garment(_hsv(rng.uniform(0.55, 0.65), rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.5)),
                          bottoms.accent, "solid", bottoms.period)  # denim-like
    backdrop = Backdrop("room", _hsv(base[2] + _GOLDEN * index * 0.5 + rng.uniform(-0.1, 0.1),
                                     rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.95)),
                        _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.6)))
    build = rng.uniform(0.85, 1.25)
    return DancerIdentity(
        face=face, stature=float(rng.uniform(0.6, 0.68)), torso=rng.uniform(0.27, 0.305),
        shoulder=rng.uniform(0.1, 0.125) * math.sqrt(build), hip=rng.uniform(0.065, 0.085) * math.sqrt(build),
        waist=rng.uniform(0.07, 0.09) * build, upper_arm=rng.uniform(0.16, 0.18), forearm=rng.uniform(0.14, 0.155),
        thigh=rng.uniform(0.235, 0.255), shin=rng.uniform(0.225, 0.245), build=build,
        head=rng.uniform(0.92, 1.08), shirt=shirt, sleeves=_pick(rng, ("none", "short", "long"), [1, 2, 2]),
        bottoms=bottoms, bottoms_style=_pick(rng, ("trousers", "shorts", "skirt"), [3, 1.5, 1.5]),
        shoes=_hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.1, 0.8)), backdrop=backdrop)


class _DancerMotion:
    """Joint angles (degrees) and sway as smooth functions of the frame index."""

    def __init__(self, rng: np.random.Generator):
        tempo = rng.uniform(0.25, 0.6)
        arms, legs, body = rng.uniform(0.5, 1.5), rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2)
        self.abduct = [_Wave(rng, 0.0, 165.0, tempo, arms * 1.5, bias=-0.5) for _ in range(2)]
        self.elbow = [_Wave(rng, -25.0, 140.0, tempo, arms * 1.5, bias=-0.4) for _ in range(2)]
        self.wrist = [_Wave(rng, -25.0, 25.0, tempo, 1.0) for _ in range(2)]
        self.spread = [_Wave(rng, 0.0, 25.0, tempo, legs, bias=-0.6) for _ in range(2)]
        self.squat = _Wave(rng, 0.0, 40.0, tempo, legs * 1.5, bias=-1.2)
        self.lean = _Wave(rng, -14.0, 14.0, tempo, body)
        self.tilt = _Wave(rng, -14.0, 14.0, tempo, body)
        self.sway = _Wave(rng, -0.05, 0.05, tempo, body * 1.5)
        self.step = (rng.uniform(0.0, 1.0) ** 0.5 * 60.0 if rng.uniform() < 0.75 else 0.0,
                     tempo * rng.uniform(0.8, 1.6) / FPS, rng.uniform(0, 2 * math.pi))

    def lift(self, side: int, t: float) -> float:
        amp, freq, phase = self.step
        s = math.sin(2 * math.pi * freq * t + phase + (0.0 if side == 0 else math.pi))
        return amp * max(s, 0.0) ** 2 + self.squat(t)


_SIDES = ((0, 1.0, "r"), (1, -1.0, "l"))  # (index, s, suffix): s = +1 for the person's right (image left)
_HEAD_UNIT = 0.105  # stature units per face unit
_HEAD_ANCHOR = (0.0, 0.42)  # where the neck enters the head, in face units


class _DancerScene(_Scene):
    def __init__(self, ident: DancerIdentity, rng: np.random.Generator, size: tuple[int, int]):
        height, width = size
        self.size = size
        self.ident = ident
        self.px = ident.stature * min(height, width)
        self.ground = 0.955 * height
        self.centre = (width - 1) / 2
        self.motion = _DancerMotion(rng)
        self.face = _FaceModel(ident.face)
        self.background = _backdrop_image(ident.backdrop, size, floor_y=self.ground - 0.1 * height)
        self.pose = functools.lru_cache(maxsize=4)(self._pose)
        self.foot = _ellipse(0.036, 0.0, 0.042, 0.03, 20)  # shoe, in the foot's frame (x from the ankle down)
        self._build_regions()

    # -- shapes (fixed in each part's local frame)
    def _build_regions(self) -> None:
        d = self.ident
        skin = d.face.skin
        b = d.build
        arm_r = (0.031 * b, 0.026 * b, 0.021 * b)
        leg_r = (0.05 * b, 0.037 * b, 0.027 * b)
        regions: list[_Region] = []
        back, front = self.face.regions(_NEUTRAL, 60)
        regions += back
        for i, _, x in _SIDES:
            n = 10 + 10 * i
            legs = d.bottoms_style == "trousers"
            shin_paint = _garment_paint(d.bottoms, leg_r[1] * 1.1) if legs else _shaded_paint(skin, leg_r[1])
            thigh_paint = _garment_paint(d.bottoms, leg_r[0] * 1.1) if legs else _shaded_paint(skin, leg_r[0])
            regions.append(_Region(n, "shin_" + x, [_capsule(d.shin, leg_r[1] * (1.1 if legs else 1.0),
                                                             leg_r[2] * (1.15 if legs else 1.0))], shin_paint))
            regions.append(_Region(n + 1, "foot_" + x, [self.foot], _shaded_paint(d.shoes, 0.03)))
            regions.append(_Region(n + 2, "thigh_" + x, [_capsule(d.thigh, leg_r[0] * (1.1 if legs else 1.0),
                                                                  leg_r[1] * (1.1 if legs else 1.0))], thigh_paint))
            if d.bottoms_style == "shorts":
                regions.append(_Region(n + 3, "thigh_" + x, [_capsule(d.thigh * 0.55, leg_r[0] * 1.15,
                                                                      leg_r[0] * 1.1)],
                                       _garment_paint(d.bottoms, leg_r[0] * 1.15)))
        hw = d.hip + leg_r[0]
        pelvis = _spline([(-0.03, -hw * 0.95), (0.1, -d.waist), (0.1, d.waist), (-0.03, hw * 0.95),
                          (-0.06, 0.0)], closed=True)
        regions.append(_Region(40, "torso", [pelvis], _garment_paint(d.bottoms, hw)))
        if d.bottoms_style == "skirt":
            length = 0.16 + 0.08 * (d.build - 0.85)
            flare = hw + 0.07
            skirt = np.concatenate([_spline([(0.1, -d.waist * 1.05), (0.02, -hw * 1.05), (-length, -flare)], per=5),
                                    _spline([(-length, -flare), (-length - 0.02, 0.0), (-length, flare)], per=5)[1:],
                                    _spline([(-length, flare), (0.02, hw * 1.05), (0.1, d.waist * 1.05)], per=5)[1:]])
            regions.append(_Region(41, "torso", [skirt], _garment_paint(d.bottoms, flare)))
        regions.append(_Region(42, "neck", [_capsule(0.07, 0.028 * b, 0.026 * b)], _shaded_paint(skin, 0.028 * b)))
        sh = d.shoulder
        half = [(0.04, d.hip * 1.1), (0.12, d.waist), (0.19, sh * 0.88), (d.torso - 0.035, sh),
                (d.torso + 0.005, sh * 0.55), (d.torso + 0.012, 0.0)]
        torso = _spline([(u, -v) for u, v in half[:-1]] + [half[-1]] + [(u, v) for u, v in half[-2::-1]],
                        closed=True, per=5)
        regions.append(_Region(43, "torso", [torso], _garment_paint(d.shirt, sh)))
        regions += front
        for i, s, x in _SIDES:
            n = 44 + 8 * i
            skin_arm = _shaded_paint(skin, arm_r[0])
            sleeve = _garment_paint(d.shirt, arm_r[0] * 1.15)
            long = d.sleeves == "long"
            regions.append(_Region(n, "upper_" + x, [_capsule(d.upper_arm, arm_r[0], arm_r[1])],
                                   sleeve if long else skin_arm))
            if d.sleeves == "short":
                regions.append(_Region(n + 1, "upper_" + x, [_capsule(d.upper_arm * 0.5, arm_r[0] * 1.2,
                                                                      arm_r[0] * 1.15)], sleeve))
            regions.append(_Region(n + 2, "fore_" + x, [_capsule(d.forearm, arm_r[1] * (1.1 if long else 1.0),
                                                                 arm_r[2] * (1.1 if long else 1.0))],
                                   _garment_paint(d.shirt, arm_r[1] * 1.1) if long else _shaded_paint(skin, arm_r[1])))
            palm, fingers = _hand_shape(s)
            regions.append(_Region(n + 3, "hand_" + x, [palm] + fingers, _shaded_paint(skin, 0.03)))
        self.regions_list = regions

    def regions(self, t: int) -> list:
        return self.regions_list

    # -- pose
    def _pose(self, t: int) -> dict:
        d, m = self.ident, self.motion
        up = -90.0 + m.lean(t)  # torso direction, degrees clockwise from the image x axis
        frames = {"torso": _bone((0.0, 0.0), up)}  # local x up the spine, local y to the image right
        torso = frames["torso"]
        for i, s, x in _SIDES:
            shoulder = _apply(torso, [(d.torso - 0.03, -s * d.shoulder)])[0]
            a = m.abduct[i](t)
            e = a + m.elbow[i](t)
            frames["upper_" + x] = _bone(shoulder, up + 180 + s * a)
            frames["fore_" + x] = _bone(_apply(frames["upper_" + x], [(d.upper_arm, 0)])[0], up + 180 + s * e)
            frames["hand_" + x] = _bone(_apply(frames["fore_" + x], [(d.forearm, 0)])[0],
                                        up + 180 + s * (e + m.wrist[i](t)))
            hip = _apply(torso, [(0.0, -s * d.hip)])[0]
            lift = math.radians(min(m.lift(i, t), 75.0))
            spread = m.spread[i](t)
            frames["thigh_" + x] = _bone(hip, 90 + s * spread, math.cos(lift))
            knee = _apply(frames["thigh_" + x], [(d.thigh, 0)])[0]
            frames["shin_" + x] = _bone(knee, 90 + s * 0.3 * spread, math.cos(0.35 * lift))
            ankle = _apply(frames["shin_" + x], [(d.shin, 0)])[0]
            frames["foot_" + x] = _bone(ankle, 90 + s * (0.3 * spread + 8.0))
        tilt = m.tilt(t)
        neck = _apply(torso, [(d.torso, 0.0)])[0]
        frames["neck"] = _bone(neck, up + 0.4 * tilt)
        top = _apply(frames["neck"], [(0.06, 0.0)])[0]
        unit = _HEAD_UNIT * d.head
        frames["head"] = (_translate(*top) @ _rotate_scale(up + 90 + tilt, unit)
                          @ _translate(-_HEAD_ANCHOR[0], -_HEAD_ANCHOR[1]))
        sole = max(_apply(frames["foot_" + x], self.foot)[:, 1].max() for _, _, x in _SIDES)
        place = _translate(self.centre + m.sway(t) * self.px, self.ground - sole * self.px) @ np.diag(
            [self.px, self.px, 1.0])
        return {k: place @ v for k, v in frames.items()}

    def matrix(self, key, t: int) -> np.ndarray:
        if key in _FACE_KEYS:
            return self.pose(t)["head"] @ _translate(*self.face.offsets(_NEUTRAL)[key])
        return self.pose(t)[key]

    def labels(self, t: int):
        pose = self.pose(t)
        d = self.ident

        def at(key, pts):
            return _apply(pose[key], pts)

        lm = at("head", self.face.landmarks(_NEUTRAL))
        body = np.zeros((25, 2))
        body[0] = lm[30]
        body[1] = at("torso", [(d.torso, 0.0)])[0]
        body[8] = at("torso", [(0.0, 0.0)])[0]
        body[15], body[16] = lm[36:42].mean(0), lm[42:48].mean(0)
        body[17], body[18] = at("head", self.face.ears())
        for _, s, x in _SIDES:
            first = 2 if s > 0 else 5
            body[first] = at("upper_" + x, [(0.0, 0.0)])[0]
            body[first + 1] = at("fore_" + x, [(0.0, 0.0)])[0]
            body[first + 2] = at("hand_" + x, [(0.0, 0.0)])[0]
            hip = 9 if s > 0 else 12
            body[hip] = at("thigh_" + x, [(0.0, 0.0)])[0]
            body[hip + 1] = at("shin_" + x, [(0.0, 0.0)])[0]
            body[hip + 2] = at("foot_" + x, [(0.0, 0.0)])[0]
            toes = 22 if s > 0 else 19
            body[toes:toes + 3] = at("foot_" + x, [(0.062, -s * 0.014), (0.056, s * 0.02), (0.022, 0.0)])
        face = np.concatenate([lm, at("head", self.face.pupils(_NEUTRAL))])
        hands = {x: at("hand_" + x, _hand_keypoints(s)) for _, s, x in _SIDES}

        def flat(points):
            return np.concatenate([points, np.ones((len(points), 1))], 1).astype(np.float32).ravel().tolist()

        person = {"pose_keypoints_2d": flat(body), "face_keypoints_2d": flat(face),
                  "hand_left_keypoints_2d": flat(hands["l"]), "hand_right_keypoints_2d": flat(hands["r"])}
        return [person], None


# Hand in the hand's frame: x along the forearm from the wrist, y across; s = +1 right hand (thumb at +y).
_FINGERS = ((0.012, 0.032, 8.0), (0.004, 0.036, 2.0), (-0.004, 0.033, -3.0), (-0.012, 0.026, -9.0))


def _finger_points(s: float):
    """(base, direction) of thumb, index, middle, ring, little finger."""
    out = [(np.array([0.008, s * 0.014]), math.radians(s * 42.0), 0.034)]
    for y, length, angle in _FINGERS:
        out.append((np.array([0.042, s * y]), math.radians(s * angle), length))
    return out


def _hand_keypoints(s: float) -> np.ndarray:
    """OpenPose hand-21: wrist, then base to tip of thumb, index, middle, ring, little finger."""
    pts = [np.zeros(2)]
    for i, (base, angle, length) in enumerate(_finger_points(s)):
        direction = np.array([math.cos(angle), math.sin(angle)])
        pts += [base + direction * length * k for k in ((0.0, 0.36, 0.7, 1.0) if i == 0 else (0.0, 0.45, 0.75, 1.0))]
    return np.array(pts)


def _hand_shape(s: float):
    palm = _spline([(0.0, -0.015), (0.02, -0.019), (0.045, -0.016), (0.047, 0.0), (0.045, 0.016), (0.02, 0.019),
                    (0.0, 0.015), (-0.004, 0.0)], closed=True, per=4)
    fingers = []
    for base, angle, length in _finger_points(s):
        fingers.append(_apply(_bone(base, math.degrees(angle)), _capsule(length, 0.0055, 0.0042, 8)))
    return palm, fingers



# --------------------------------------------------------------------------------------------------------------
# Street scenes: a camera driving forward along +Z. World X to the right, Y down (ground at 0), Z ahead, metres.
# Every surface is planar (ground, the two facade planes, fronto-parallel billboards, car sides), so each moves
# by a homography and the flow is exact.


@dataclass(frozen=True)
class StreetLook:
    """A street's colours: palettes that the scene's buildings and cars draw from, and the light."""

    light: str  # day, overcast, dusk
    sky: tuple  # (top, horizon) colours
    buildings: tuple  # facade colours
    trim: tuple[float, float, float]
    glass: tuple[float, float, float]
    lit: float  # fraction of windows lit
    road: tuple[float, float, float]
    sidewalk: tuple[float, float, float]
    curb: tuple[float, float, float]
    terrain: tuple[float, float, float]
    foliage: tuple[float, float, float]
    trunk: tuple[float, float, float]
    cars: tuple  # car body colours
    hood: tuple[float, float, float]
    tile: float  # paving stone size, metres


def _street_look(rng: np.random.Generator, palette: np.random.Generator, index: int) -> StreetLook:
    base = palette.uniform(size=3)
    light = _pick(rng, ("day", "overcast", "dusk"), [3, 1.5, 1])
    hue = base[0] + _GOLDEN * index
    buildings = tuple(_hsv(hue + rng.uniform(-0.12, 0.12), rng.uniform(0.08, 0.45), rng.uniform(0.45, 0.92))
                      for _ in range(5))
    sky = {"day": ((70, 125, 205), (185, 210, 235)), "overcast": ((165, 172, 182), (215, 218, 222)),
           "dusk": ((60, 70, 130), (245, 170, 120))}[light]
    cars = tuple(_pick(rng, [(30, 30, 34), (225, 225, 228), (150, 152, 158), (25, 45, 110), (140, 20, 25),
                             _hsv(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.9))]) for _ in range(6))
    grey = rng.uniform(70, 105)
    return StreetLook(
        light=light, sky=sky, buildings=buildings, trim=_hsv(hue + 0.5, rng.uniform(0, 0.3), rng.uniform(0.3, 0.95)),
        glass=_hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.45)),
        lit=float(rng.uniform(0.2, 0.5) if light == "dusk" else 0.0), road=(grey, grey, grey * 1.03),
        sidewalk=_hsv(base[1] + rng.uniform(0, 0.1), rng.uniform(0.02, 0.2), rng.uniform(0.5, 0.75)),
        curb=(170.0, 168.0, 165.0), terrain=_hsv(rng.uniform(0.2, 0.3), rng.uniform(0.35, 0.6), rng.uniform(0.35, 0.6)),
        foliage=_hsv(rng.uniform(0.22, 0.36), rng.uniform(0.4, 0.75), rng.uniform(0.25, 0.5)),
        trunk=_hsv(0.07, rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4)), cars=cars,
        hood=_pick(rng, [(25, 28, 32), (200, 200, 205), (60, 62, 70), (20, 30, 70)]),
        tile=float(rng.uniform(0.4, 0.9)))


@dataclass(frozen=True, eq=False)  # hashed by identity: a body key
class _Thing:
    kind: str  # tree, lamp, sign, light, person, car
    x: float
    z: float  # position along the street at frame 0 (or distance ahead of the camera if follow)
    speed: float = 0.0  # metres per frame along Z
    size: float = 1.0
    style: int = 0
    follow: tuple | None = None  # (amplitude, angular frequency per frame, phase): distance kept to the camera
    colours: tuple = ()  # a person's shirt, trousers, skin, hair
    trunk: float = 0.0  # a tree's trunk height

    def z_at(self, t: float, camera_z: float) -> float:
        z = self.z + self.speed * t
        if self.follow is not None:
            amp, omega, phase = self.follow
            z += camera_z + amp * math.sin(omega * t + phase)
        return z


_CHUNK = 40.0  # metres of street generated from one random stream
_NEAR = 0.5  # nearest depth drawn, metres
_FAR_OBJECTS = 120.0
_FAR_FACADES = 320.0


@dataclass(frozen=True)
class _Segment:
    z0: float
    z1: float
    kind: str  # building, vegetation, wall
    height: float
    colour: tuple
    window: tuple  # (period along the street, floor height, width duty, height duty, ground floor height)
    shop: tuple | None  # awning colour of a shop front


class _StreetScene(_Scene):
    classes = True
    background_class = CITYSCAPES_IDS["sky"]

    def __init__(self, look: StreetLook, rng: np.random.Generator, size: tuple[int, int], chunk_key: tuple):
        height, width = size
        self.size = size
        self.look = look
        self.chunk_key = chunk_key
        self.f = 0.9 * width
        self.cx, self.cy = (width - 1) / 2, 0.44 * height
        self.cam_h = rng.uniform(1.2, 1.45)
        self.speed = rng.uniform(5.0, 11.0) / FPS
        self.surge = (rng.uniform(0, 0.3) * self.speed, 2 * math.pi / (rng.uniform(6, 15) * FPS),
                      rng.uniform(0, 2 * math.pi))
        self.sway = (rng.uniform(0, 0.2), 2 * math.pi / (rng.uniform(4, 10) * FPS), rng.uniform(0, 2 * math.pi))
        self.road = (-4.8 - (2.0 if rng.uniform() < 0.25 else 0.0), 1.8 + (2.0 if rng.uniform() < 0.6 else 0.0))
        walk = (rng.uniform(2.2, 4.0), rng.uniform(2.2, 4.0))
        green = (rng.uniform(0.9, 2.0) if rng.uniform() < 0.35 else 0.0,
                 rng.uniform(0.9, 2.0) if rng.uniform() < 0.35 else 0.0)
        self.facade_x = (self.road[0] - walk[0] - green[0], self.road[1] + walk[1] + green[1])
        self.green = green
        self.tree_gap = rng.uniform(8.0, 25.0) if rng.uniform() < 0.8 else 0.0
        self.people_rate = rng.uniform(0.0, 2.0)
        self.hood = rng.uniform(0.06, 0.1) if rng.uniform() < 0.7 else 0.0
        cars, z = [], rng.uniform(10, 60)
        for _ in range(400):  # oncoming traffic
            cars.append(_Thing("car", -3.2 + rng.uniform(-0.3, 0.3), z, -rng.uniform(8, 13) / FPS,
                               rng.uniform(3.9, 4.8), int(rng.integers(6))))
            z += rng.uniform(25, 110)
        for k in range(int(rng.integers(0, 3))):  # cars ahead in the camera's lane, keeping their distance
            cars.append(_Thing("car", rng.uniform(-0.2, 0.2), 14.0 + 22.0 * k + rng.uniform(0, 12), 0.0,
                               rng.uniform(3.9, 4.8), int(rng.integers(6)),
                               follow=(rng.uniform(1, 4), 2 * math.pi / (rng.uniform(5, 12) * FPS),
                                       rng.uniform(0, 2 * math.pi))))
        self.cars = cars
        self.background = self._sky()
        self.chunk = functools.lru_cache(maxsize=64)(self._chunk)
        self.thing_regions = functools.lru_cache(maxsize=1024)(functools.partial(_thing_regions, look=look))
        self.regions = functools.lru_cache(maxsize=2)(self._regions)
        light = {"day": (1.0, 1.0, 1.0, 1.0), "overcast": (0.95, 0.97, 1.0, 0.55), "dusk": (1.0, 0.82, 0.72, 0.9)}
        r, g, b, sat = light[look.light]
        grey = np.full((3, 3), 1.0 / 3.0)
        self.tint = (sat * np.eye(3) + (1 - sat) * grey) @ np.diag([r, g, b])

    # -- camera and planes
    def camera(self, t: float) -> tuple[float, float]:
        amp, omega, phase = self.surge
        z = self.speed * t - amp / omega * (math.cos(omega * t + phase) - math.cos(phase))
        a, w, p = self.sway
        return a * math.sin(w * t + p), z

    def matrix(self, key, t: int) -> np.ndarray:
        xc, zc = self.camera(t)
        f, cx, cy, h = self.f, self.cx, self.cy, self.cam_h
        if key == "static":
            return np.eye(3)
        if key == "ground":  # local (X, Z)
            return np.array([[f, cx, -f * xc - cx * zc], [0.0, cy, f * h - cy * zc], [0.0, 1.0, -zc]])
        kind, thing = key
        if kind == "facade":  # local (Z, Y) on the plane X = thing
            return np.array([[cx, 0.0, f * (thing - xc) - cx * zc], [cy, f, f * h - cy * zc], [1.0, 0.0, -zc]])
        z = thing.z_at(t, zc)
        if kind == "side":  # local (s, Y) on the car's side facing the camera, s from its near face
            xs = thing.x - math.copysign(0.9, thing.x)
            return np.array([[cx, 0.0, f * (xs - xc) + cx * (z - zc)], [cy, f, f * h + cy * (z - zc)],
                             [1.0, 0.0, z - zc]])
        dz = max(z - zc, 1e-3)  # billboard: local (x, Y) on the plane Z = z
        return np.array([[f / dz, 0.0, cx + f * (thing.x - xc) / dz], [0.0, f / dz, cy + f * h / dz],
                         [0.0, 0.0, 1.0]])

    # -- content
    def _sky(self) -> np.ndarray:
        y, x = _unit_grid(self.size)
        t = np.clip(y / (self.cy / self.size[0]), 0, 1) ** 0.8
        sky = _lerp(self.look.sky[0], self.look.sky[1], t)
        clouds = np.clip(np.sin(9 * x + 3 * np.sin(5 * y)) * np.sin(23 * y + 2 * x) - 0.3, 0, 1)
        return _lerp(sky, (245, 245, 248), 0.5 * clouds * (1 - t))

    def _chunk(self, c: int) -> dict:
        """The street between c*_CHUNK and (c+1)*_CHUNK metres: facades, trees, poles, people, parked cars."""
        rng = _rng(self.chunk_key[0], "street", self.chunk_key[1], _CHUNK_STREAM, c + (1 << 20))
        look, z0, z1 = self.look, c * _CHUNK, (c + 1) * _CHUNK
        out = {"segments": ([], []), "things": []}
        for side in (0, 1):
            z = z0
            while z < z1 - 1e-6:
                end = min(z + rng.uniform(7, 22), z1)
                if z1 - end < 5:
                    end = z1
                kind = _pick(rng, ("building", "vegetation", "wall"), [0.75, 0.15, 0.1])
                height = {"building": rng.uniform(7, 24), "vegetation": rng.uniform(3, 9), "wall": rng.uniform(1, 2.5)}
                colour = look.buildings[int(rng.integers(len(look.buildings)))]
                window = (rng.uniform(2.2, 3.6), rng.uniform(2.9, 3.6), rng.uniform(0.35, 0.6), rng.uniform(0.4, 0.6),
                          rng.uniform(3.5, 4.5))
                shop = _hsv(rng.uniform(), 0.7, 0.7) if rng.uniform() < 0.4 else None
                out["segments"][side].append(_Segment(z, end, kind, height[kind], colour, window, shop))
                z = end
            curb = self.road[side]
            sign = -1.0 if side == 0 else 1.0
            walk_in, walk_out = curb, self.facade_x[side] - sign * self.green[side]
            if self.tree_gap:
                z = z0 + rng.uniform(0, self.tree_gap)
                while z < z1:
                    out["things"].append(_Thing("tree", curb + sign * 0.9, z, 0.0, rng.uniform(1.6, 2.8),
                                                int(rng.integers(1 << 30)), trunk=rng.uniform(1.8, 3.2)))
                    z += self.tree_gap * rng.uniform(0.7, 1.3)
            z = z0 + rng.uniform(0, 30)
            while z < z1:
                kind = _pick(rng, ("lamp", "sign", "light"), [4, 2, 1])
                out["things"].append(_Thing(kind, curb + sign * 0.45, z, 0.0, rng.uniform(0.9, 1.1),
                                            int(rng.integers(3))))
                z += rng.uniform(20, 40)
            for _ in range(rng.poisson(self.people_rate)):
                out["things"].append(_Thing(
                    "person", rng.uniform(min(walk_in, walk_out) + 0.5, max(walk_in, walk_out) - 0.5),
                    rng.uniform(z0, z1), rng.choice([-1, 1]) * rng.uniform(0.8, 1.6) / FPS, rng.uniform(1.55, 1.9),
                    colours=(_hsv(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.9)),
                             _hsv(rng.uniform(0.55, 0.7), rng.uniform(0, 0.5), rng.uniform(0.1, 0.5)),
                             _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))],
                             _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))])))
            if abs(curb) > 3.0:  # a parking lane along this curb
                z = z0 + rng.uniform(0, 6)
                while z < z1:
                    length = rng.uniform(3.9, 4.8)
                    if rng.uniform() < 0.6:
                        out["things"].append(_Thing("car", curb - sign * 1.05, z, 0.0, length,
                                                    int(rng.integers(6))))
                    z += length + rng.uniform(1.0, 8.0)
        assert len(out["things"]) < 256
        return out

    def _regions(self, t: int) -> list:
        xc, zc = self.camera(t)
        look = self.look
        # People walk slower than the camera drives, so nothing from behind the camera's chunk comes into view.
        first, last = int(math.floor(zc / _CHUNK)) - 1, int((zc + _FAR_FACADES) // _CHUNK)
        chunks = {c: self.chunk(c) for c in range(first, last + 1)}
        ids = CITYSCAPES_IDS
        out = []
        near, far = zc + _NEAR, zc + 400.0
        ground = self.matrix("ground", t)
        out.append(_Region(1, "ground", [_clip_near(_rect(self.road[0], near, self.road[1], far), ground, _NEAR)],
                           _road_paint(look, self.road), ids["road"]))
        for side, sign in ((0, -1.0), (1, 1.0)):
            curb, wall = self.road[side], self.facade_x[side]
            inner = wall - sign * self.green[side]
            out.append(_Region(2 + side, "ground", [_clip_near(_rect(min(curb, inner), near, max(curb, inner), far),
                                                               ground, _NEAR)],
                               _sidewalk_paint(look, curb), ids["sidewalk"]))
            if self.green[side]:
                out.append(_Region(4 + side, "ground", [_clip_near(_rect(min(inner, wall), near, max(inner, wall), far),
                                                                   ground, _NEAR)],
                                   _foliage_paint(look.terrain, 0.6), ids["terrain"]))
            key = ("facade", wall)
            m = self.matrix(key, t)
            segs = [s for c in sorted(chunks) for s in chunks[c]["segments"][side]
                    if s.z1 > near and s.z0 < zc + _FAR_FACADES]
            for n, kind in enumerate(("building", "vegetation", "wall")):
                mine = [s for s in segs if s.kind == kind]
                polys = [_clip_near(_rect(s.z0, -s.height, s.z1, 0.0), m, _NEAR) for s in mine]
                if not mine:
                    continue
                paint = (_facade_paint(look, mine, 0.8 if side == 0 else 1.0) if kind == "building" else
                         _foliage_paint(look.foliage, 1.0) if kind == "vegetation" else _wall_paint(look, mine))
                out.append(_Region(6 + 3 * side + n, key, polys, paint, ids[kind]))
        things = [(c, j, th) for c in chunks for j, th in enumerate(chunks[c]["things"])]
        things += [(None, j, th) for j, th in enumerate(self.cars)]
        drawn = []
        width = self.size[1]
        for c, j, th in things:
            dz = th.z_at(t, zc) - zc
            far = {"person": 0.6 * self.f, "car": _FAR_OBJECTS, "tree": _FAR_OBJECTS}.get(th.kind, 0.3 * self.f)
            if not _NEAR < dz < min(far, _FAR_OBJECTS):  # thin things end where they are a fraction of a pixel
                continue
            reach = 2.5 * th.size if th.kind == "tree" else 1.5  # half width, metres
            x = (th.x - xc) * self.f
            depth = dz + (th.size if th.kind == "car" else 0.0)
            if min(x / dz, x / depth) - reach * self.f / dz > width / 2 + 1 or \
                    max(x / dz, x / depth) + reach * self.f / dz < -width / 2 - 1:
                continue  # wholly left or right of the image
            # Ids: 1-19 ground and facades, 20.. traffic, 1000.. the things of chunk c (the same again 64 chunks,
            # 2.5 km, later), two regions each; 65535 the hood.
            side, regions = self.thing_regions(th, 20 + 2 * j if c is None else 1000 + 2 * ((c % 64) * 256 + j))
            if side is not None:
                xs = abs(th.x) - 0.9 - math.copysign(xc, th.x)
                if self.f * xs * (1.0 / dz - 1.0 / (dz + th.size)) > 0.75:  # the side is more than a sliver
                    m = self.matrix(side.key, t)
                    regions = [_Region(side.id, side.key, [_clip_near(p, m, _NEAR) for p in side.polygons],
                                       side.paint, side.cls)] + regions
            drawn.append((dz, regions))
        for _, regions in sorted(drawn, key=lambda item: -item[0]):
            out += regions
        if self.hood:
            height, width = self.size
            x = np.linspace(-1.0, width, 24)
            top = height - self.hood * height * (1 - 0.6 * ((x - self.cx) / (width / 2)) ** 2)
            hood = np.concatenate([np.stack([x, top], 1), [(width, height + 1.0), (-1.0, height + 1.0)]])
            out.append(_Region(65535, "static", [hood], _hood_paint(look, height, self.hood), ids["ego vehicle"]))
        return out

    def labels(self, t: int):
        return None, None

    def finish(self, image: np.ndarray) -> np.ndarray:
        return cv2.transform(image, self.tint.astype(np.float32))


def _noise(u, v, fu, fv, scale: float):
    """Smooth mottling in [-1, 1]-ish, detail faded by the footprint."""
    f = np.maximum(fu, fv)
    n = _detail(6.3 * scale, f) * np.sin(u / scale + 0.7 * np.sin(v / (1.3 * scale))) * np.sin(v / scale + 1.3)
    n = n + 0.5 * _detail(3.1 * scale, f) * np.sin((1.9 * u - 1.4 * v) / scale) * np.sin((1.1 * u + 2.1 * v) / scale)
    return n


def _road_paint(look: StreetLook, road: tuple) -> Callable:
    left, right = road
    marks = (228.0, 228.0, 220.0)

    def paint(u, v, fu, fv):  # u = X across the street, v = Z along it
        col = _rgb(look.road) * (1.0 + 0.05 * _noise(u, v, fu, fv, 0.25))[:, None]
        tracks = sum(np.exp(-((u - c) / 0.35) ** 2) for c in (-4.0, -2.4, -0.8, 0.8))
        col = col * (1.0 - 0.12 * tracks)[:, None]
        line = _span(u, -1.68, -1.52, fu) * _bands(v, 9.0, 0.35, fv)
        line = line + _span(u, left + 0.2, left + 0.32, fu) + _span(u, right - 0.32, right - 0.2, fu)
        if right > 3.0:
            line = line + _span(u, 1.74, 1.86, fu) * _bands(v, 3.0, 0.5, fv)
        return _lerp(col, marks, np.clip(line, 0, 1))

    return paint


def _sidewalk_paint(look: StreetLook, curb: float) -> Callable:
    def paint(u, v, fu, fv):
        grout = np.maximum(_bands(u, look.tile, 0.08, fu), _bands(v, look.tile, 0.08, fv))
        col = _rgb(look.sidewalk) * (1.0 - 0.18 * grout + 0.04 * _noise(u, v, fu, fv, 0.4))[:, None]
        return _lerp(col, look.curb, _span(np.abs(u - curb), -1.0, 0.25, fu))

    return paint


def _foliage_paint(colour, scale: float) -> Callable:
    def paint(u, v, fu, fv):
        n = _noise(u, v, fu, fv, 0.35 * scale)
        return _rgb(colour) * (1.0 + 0.22 * n)[:, None]

    return paint


def _wall_paint(look: StreetLook, segments: list) -> Callable:
    tops = np.array([s.height for s in segments], np.float32)
    starts = np.array([s.z0 for s in segments], np.float32)

    def paint(u, v, fu, fv):
        i = np.clip(np.searchsorted(starts, u, "right") - 1, 0, len(starts) - 1)
        coping = _span(-v, tops[i] - 0.2, tops[i] + 1.0, fv)
        col = _rgb(look.trim) * 0.4 + _rgb(look.sidewalk) * 0.6
        return _lerp(col * (1.0 + 0.05 * _noise(u, v, fu, fv, 0.3))[:, None], look.curb, coping)

    return paint


def _facade_paint(look: StreetLook, segments: list, shade: float) -> Callable:
    starts = np.array([s.z0 for s in segments], np.float32)
    ends = np.array([s.z1 for s in segments], np.float32)
    tops = np.array([s.height for s in segments], np.float32)
    colours = np.array([s.colour for s in segments], np.float32) * shade
    touch = np.concatenate([starts[1:] == ends[:-1], [False]])  # segment k+1 continues segment k
    before = np.where(np.concatenate([[False], touch[:-1]])[:, None], np.roll(colours, 1, 0), colours)
    after = np.where(touch[:, None], np.roll(colours, -1, 0), colours)
    period, floor, wide, tall, ground = np.array([s.window for s in segments], np.float32).T
    shops = np.array([s.shop is not None for s in segments], np.float32)
    awnings = np.array([s.shop if s.shop is not None else (0, 0, 0) for s in segments], np.float32)
    glass = _rgb(look.glass)

    def paint(u, v, fu, fv):
        i = np.clip(np.searchsorted(starts, u, "right") - 1, 0, len(starts) - 1)
        z, y = u - starts[i], -v  # along the facade from the building's start; height above the ground
        length = ends[i] - starts[i]
        inner = _span(z, 0.6, length - 0.6, fu)  # windows, shops and cornice keep off the seams
        p, fh, g = period[i], floor[i], ground[i]
        win = (_bands(z - p / 2, p, wide[i], fu) * _bands(y - g - 0.55 * fh, fh, tall[i], fv)
               * _span(y, g + 0.2, tops[i] - 0.9, fv) * inner)
        cell = np.floor(z / p) * 12.9898 + np.floor((y - g) / fh) * 78.233 + starts[i] * 0.37719
        rand = (np.sin(cell) * 43758.5453) % 1.0
        k = _detail(np.minimum(p, fh), np.maximum(fu, fv))
        pane = _lerp(glass * (0.8 + 0.4 * k * rand)[:, None], (250, 215, 130), (rand < look.lit) * k)
        wall = (colours[i] + (before[i] - colours[i]) * (1.0 - _span(z, 0.0, 1e9, fu))[:, None]
                + (after[i] - colours[i]) * (1.0 - _span(z, -1e9, length, fu))[:, None])  # seams blend
        col = _lerp(wall, pane, win)
        shop = shops[i] * _span(y, 0.3, g - 1.0, fv) * _bands(z - 2.5, 5.0, 0.72, fu) * inner
        col = _lerp(col, glass * 0.7, shop)
        col = _lerp(col, awnings[i], shops[i] * _span(y, g - 0.85, g - 0.35, fv) * inner)
        return _lerp(col, _rgb(look.trim) * shade, _span(y, tops[i] - 0.45, tops[i] + 1.0, fv) * inner)

    return paint


def _hood_paint(look: StreetLook, height: int, hood: float) -> Callable:
    def paint(u, v, fu, fv):  # image coordinates
        t = np.clip((height - v) / (hood * height), 0, 1)
        return _lerp(_rgb(look.hood) * 0.8, _mix(look.hood, look.sky[1], 0.35), t ** 2)

    return paint


def _thing_regions(th: _Thing, first: int, look: StreetLook) -> tuple[_Region | None, list]:
    """(a car's side on the plane ("side", th) or None, regions on the billboard ("bb", th)), ids from first."""
    ids = CITYSCAPES_IDS
    bb = ("bb", th)
    if th.kind == "tree":
        r, trunk_h = th.size, th.trunk
        rng = np.random.default_rng(th.style)
        crown = [_ellipse(0.0, -trunk_h - r * 0.8, r, r * 0.9, 24)]
        for _ in range(4):  # lobes on the upper half, so that below the crown there is only trunk
            a = rng.uniform(math.pi, 2 * math.pi)
            crown.append(_ellipse(0.55 * r * math.cos(a), -trunk_h - r * 0.8 + 0.45 * r * math.sin(a),
                                  r * rng.uniform(0.5, 0.75), r * rng.uniform(0.45, 0.7), 20))
        trunk = _rect(-0.15, -trunk_h - r * 0.5, 0.15, 0.0)
        return None, [_Region(first, bb, [trunk] + crown, _tree_paint(look, trunk_h - 0.1 * r), ids["vegetation"])]
    if th.kind in ("lamp", "sign", "light"):
        pole_h = {"lamp": 7.0, "sign": 2.9, "light": 4.2}[th.kind] * th.size
        polys = [_rect(-0.06, -pole_h, 0.06, 0.0)]
        if th.kind == "lamp":
            arm = -math.copysign(1.4, th.x)
            polys += [_rect(min(0, arm), -pole_h, max(0, arm), -pole_h + 0.1),
                      _ellipse(arm, -pole_h + 0.05, 0.35, 0.1, 12)]
        out = [_Region(first, bb, polys, _shaded_paint((120, 122, 126), 0.06), ids["pole"])]
        if th.kind == "sign":
            shape = [_ellipse(0.0, -pole_h - 0.3, 0.32, 0.32, 24), np.array([(-0.36, -pole_h + 0.05),
                     (0.36, -pole_h + 0.05), (0.0, -pole_h - 0.62)]), _rect(-0.3, -pole_h - 0.6, 0.3, -pole_h)]
            out.append(_Region(first + 1, bb, [shape[th.style]], _sign_paint(th.style, pole_h),
                               ids["traffic sign"]))
        if th.kind == "light":
            out.append(_Region(first + 1, bb, [_rect(-0.17, -pole_h - 0.95, 0.17, -pole_h)],
                               _traffic_light_paint(th.style, pole_h), ids["traffic light"]))
        return None, out
    if th.kind == "person":
        h = th.size
        shirt, trousers, skin, hair = th.colours
        body = [_ellipse(0.0, -0.93 * h, 0.065 * h, 0.075 * h, 16), _rect(-0.03 * h, -0.87 * h, 0.03 * h, -0.8 * h),
                _spline([(-0.13 * h, -0.8 * h), (0.13 * h, -0.8 * h), (0.12 * h, -0.5 * h), (-0.12 * h, -0.5 * h)],
                        closed=True, per=3),
                _rect(-0.11 * h, -0.52 * h, -0.01 * h, 0.0), _rect(0.01 * h, -0.52 * h, 0.11 * h, 0.0),
                _rect(-0.165 * h, -0.79 * h, -0.11 * h, -0.45 * h), _rect(0.11 * h, -0.79 * h, 0.165 * h, -0.45 * h)]
        return None, [_Region(first, bb, body, _person_paint(h, shirt, trousers, skin, hair), ids["person"])]
    near, side = _car_shapes(th)
    side_region = None
    if abs(th.x) > 1.0:
        side_region = _Region(first, ("side", th), side, _car_side_paint(th, look), ids["car"])
    return side_region, [_Region(first + 1, bb, near, _car_face_paint(th, look), ids["car"])]


def _tree_paint(look: StreetLook, trunk_top: float) -> Callable:
    leaves = _foliage_paint(look.foliage, 0.7)

    def paint(u, v, fu, fv):
        return _lerp(leaves(u, v, fu, fv), look.trunk, _span(-v, -1.0, trunk_top, fv))

    return paint


def _car_shapes(th: _Thing):
    length = th.size
    face = [_rect(-0.9, -1.0, 0.9, -0.28),
            np.array([(-0.78, -1.0), (0.78, -1.0), (0.62, -1.45), (-0.62, -1.45)]),
            _rect(-0.84, -0.3, -0.52, 0.0), _rect(0.52, -0.3, 0.84, 0.0)]
    side = [_rect(0.0, -1.0, length, -0.28),
            np.array([(0.2 * length, -1.0), (0.8 * length, -1.0), (0.68 * length, -1.45), (0.32 * length, -1.45)]),
            _ellipse(0.18 * length, -0.33, 0.33, 0.33, 20), _ellipse(0.82 * length, -0.33, 0.33, 0.33, 20)]
    return face, side


def _car_face_paint(th: _Thing, look: StreetLook) -> Callable:
    body = _rgb(look.cars[th.style])
    oncoming = th.speed < 0
    lamp = (235.0, 235.0, 215.0) if oncoming else (200.0, 25.0, 30.0)

    def paint(u, v, fu, fv):
        y = -v
        col = body * (1.0 - 0.15 * np.clip(np.abs(u) / 0.9, 0, 1) ** 2)[:, None]
        half = 0.7 - 0.14 * np.clip((y - 1.05) / 0.4, 0, 1)
        col = _lerp(col, look.glass, _span(y, 1.05, 1.4, fv) * _span(np.abs(u), -1.0, half, fu))
        col = _lerp(col, lamp, _span(np.abs(u), 0.56, 0.84, fu) * _span(y, 0.72, 0.88, fv))
        col = _lerp(col, (225, 225, 215), _span(u, -0.25, 0.25, fu) * _span(y, 0.48, 0.62, fv))
        col = _lerp(col, body * 0.5, _span(y, 0.28, 0.45, fv))
        return _lerp(col, (24, 24, 27), _span(y, -1.0, 0.3, fv))

    return paint


def _car_side_paint(th: _Thing, look: StreetLook) -> Callable:
    body = _rgb(look.cars[th.style]) * 0.85
    length = th.size

    def paint(u, v, fu, fv):
        y = -v
        col = body * (1.0 + 0.1 * np.clip((y - 0.6) / 0.4, -1, 1))[:, None]
        slope = 0.12 * length * np.clip((y - 1.05) / 0.4, 0, 1)
        win = _span(y, 1.06, 1.4, fv) * _span(u, 0.22 * length + 0.12 + slope, 0.78 * length - 0.12 - slope, fu)
        win = win * (1.0 - _span(u, 0.5 * length - 0.05, 0.5 * length + 0.05, fu))
        col = _lerp(col, look.glass, win)
        for w in (0.18 * length, 0.82 * length):
            r = np.hypot(u - w, y - 0.33)
            f = np.maximum(fu, fv)
            col = _lerp(col, (24, 24, 27), _disc(r, 0.33, f))
            col = _lerp(col, (150, 152, 155), _disc(r, 0.17, f))
        return col

    return paint


def _person_paint(h, shirt, trousers, skin, hair) -> Callable:
    def paint(u, v, fu, fv):
        y = -v / h
        f = fv / h
        col = _lerp(trousers, shirt, _span(y, 0.49, 2.0, f))
        col = _lerp(col, skin, _span(y, 0.855, 2.0, f))
        col = _lerp(col, hair, _span(y, 0.95, 2.0, f))
        col = _lerp(col, (30, 28, 26), _span(y, -1.0, 0.035, f))
        return col * (1.0 - 0.2 * np.clip(np.abs(u) / (0.15 * h), 0, 1) ** 2)[:, None]

    return paint


def _sign_paint(style: int, pole_h: float) -> Callable:
    def paint(u, v, fu, fv):
        f = np.maximum(fu, fv)
        if style == 0:  # prohibition: red ring
            r = np.hypot(u, v + pole_h + 0.3)
            return _lerp((200, 30, 35), (240, 240, 240), _disc(r, 0.22, f))
        if style == 1:  # warning: red triangle, white inside
            return _lerp((200, 30, 35), (240, 240, 240), _span(-v - pole_h, -0.02, 0.35, fv)
                         * _span(np.abs(u), -1, 0.24 - 0.55 * (-v - pole_h - 0.02), fu))
        return _lerp((20, 70, 160), (240, 240, 240), _span(u, -0.05, 0.05, fu) * _span(-v - pole_h, 0.1, 0.5, fv))

    return paint


def _traffic_light_paint(style: int, pole_h: float) -> Callable:
    lamps = ((220, 40, 30), (230, 180, 40), (40, 200, 90))

    def paint(u, v, fu, fv):
        col = np.zeros((len(u), 3)) + 30.0
        f = np.maximum(fu, fv)
        for k, lamp in enumerate(lamps):
            r = np.hypot(u, v + pole_h + 0.78 - 0.28 * k)
            on = lamp if k == style else tuple(0.3 * c for c in lamp)
            col = _lerp(col, on, _disc(r, 0.1, f))
        return col

    return paint
