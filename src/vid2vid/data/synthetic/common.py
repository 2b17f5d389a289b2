"""What the three kinds share: random streams, colours, 2-D geometry, textures, regions and the renderer that
turns a scene into frames with exact flow, and the backdrops of the people (dancers and portraits)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

# Appended, never reordered: a kind's index seeds its streams.
KINDS = ("dancers", "street", "faces", "turning", "photo", "face_photo", "face_talk")

FPS = 30.0  # frames per second the motions are designed for


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
    densepose: np.ndarray | None = None  # turning: (H, W, 3) uint8 DensePose IUV decoded to RGB (V, U, I)


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
    """Cloth: a colour, an accent colour and a pattern ("solid", "stripes", "pinstripes", "dots", "checks", or
    "texture": a grey tile from a real photo, tiled, mixing colour (0) and accent (1)) with its period in the
    wearer's units (stature for dancers, face units for portraits): the width of a stripe pair or of a tile."""

    colour: tuple[float, float, float]
    accent: tuple[float, float, float]
    pattern: str
    period: float
    texture: np.ndarray | None = field(default=None, compare=False, repr=False)  # (n, n) float in [0, 1]


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
        elif g.pattern == "texture":
            c = _tile(g.texture, u / p, v / p)
        else:
            c = np.zeros_like(u)
        col = _lerp(g.colour, g.accent, c)
        return col * (1.0 - shade * np.clip(v / half_width, -1, 1) ** 2)[:, None]

    return paint


def _tile(tile: np.ndarray, u, v) -> np.ndarray:
    """A tiling grey picture sampled bilinearly at (u, v) in tiles (one tile per unit along each axis)."""
    n = tile.shape[0]
    x, y = np.asarray(u, np.float64) * n - 0.5, np.asarray(v, np.float64) * n - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    i0, j0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    top = tile[j0, i0] * (1 - fx) + tile[j0, i1] * fx
    bottom = tile[j1, i0] * (1 - fx) + tile[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


def _shaded_paint(colour, half_width: float) -> Callable:
    """A plain colour, darker towards the sides of a part whose local y runs across it (like a cylinder)."""

    def paint(u, v, fu, fv):
        return _rgb(colour) * (1.0 - 0.2 * np.clip(v / half_width, -1, 1) ** 2)[:, None]

    return paint


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

    def densepose(self, t: int, slot: np.ndarray, regions: list, inverses: np.ndarray) -> np.ndarray | None:
        """A DensePose IUV map of frame t from the slot map of _draw, for kinds that have one."""
        return None


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
                             landmarks=landmarks, seg=seg, flow=flow, flow_valid=valid, parts=parts,
                             densepose=scene.densepose(t, slot, regions, inverses))
        prev_parts = parts


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


def _random_garment(rng: np.random.Generator, hue: float, period: tuple[float, float]) -> Garment:
    colour = _hsv(hue, rng.uniform(0.4, 0.9), rng.uniform(0.35, 0.9))
    if rng.uniform() < 0.5:
        accent = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0))
    else:
        accent = _mix(colour, (255, 255, 255) if sum(colour) < 380 else (0, 0, 0), rng.uniform(0.45, 0.7))
    pattern = _pick(rng, ("solid", "stripes", "pinstripes", "dots", "checks"), [3, 3, 1.5, 2, 1.5])
    return Garment(colour, accent, pattern, float(rng.uniform(*period)))
