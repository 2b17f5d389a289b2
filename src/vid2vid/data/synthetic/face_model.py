"""The face: a dlib-68 template that moves with an expression (jaw, brows, gaze), its regions (skin, eyes, irises,
brows, lips, hair, ears) and their paints. Portraits are faces; dancers wear one as their head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vid2vid.data.synthetic.common import _detail, _ellipse, _lerp, _mix, _pick, _rect, _Region, _rgb, _spline, _stroke

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
        back, front = [], []
        if f.hair_style == "long":
            back.append(region(0, "head", [self._long_hair(p)], _hair_paint(f.hair, cy, ry)))
        front.append(region(1, "head", self._ears(), _mul(f.skin, 0.9)))
        front.append(region(2, "head", [self._skin_outline(p)], _face_shaded_paint(f.skin, f.lips)))
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
            front.append(region(19, "head", hair, _hair_paint(self._hair_colour(), cy, ry)))
        return back, front

    def back_regions(self, e: _Expression, first_id: int) -> list:
        """The head seen from behind, all drawn over the neck and the body: ears, then hair over the whole head
        (skull and face outline, with long hair hanging down the back); bodies as in regions()."""
        f = self.face
        p = self.landmarks(e)
        _, cy, _, ry = self.skull
        head = [self._skin_outline(p)] + _hair_front(f, self.skull, p)
        if f.hair_style == "long":
            head.append(self._long_hair(p))
        return [_Region(first_id + 1, "head", self._ears(), _mul(f.skin, 0.9)),
                _Region(first_id, "head", head, _hair_paint(self._hair_colour(), cy, ry))]

    # Shapes in head coordinates that the front and the back view share.
    def _skin_outline(self, p: np.ndarray) -> np.ndarray:
        cx, cy, rx, ry = self.skull
        return np.concatenate([_spline(p[0:17]), _ellipse(cx, cy, rx, ry, 24, 0.0, -math.pi)[1:-1]])

    def _long_hair(self, p: np.ndarray) -> np.ndarray:
        """Long hair behind the head, down past the chin."""
        cx, cy, rx, ry = self.skull
        top = _ellipse(cx, cy, rx * 1.12, ry * 1.1, 20, 0.0, -math.pi)
        w = rx * 1.22
        bottom = [(-w, p[8, 1] + 0.35), (-w * 0.7, p[8, 1] + 0.45), (w * 0.7, p[8, 1] + 0.45), (w, p[8, 1] + 0.35)]
        return np.concatenate([top[::-1], bottom[::-1]])

    def _ears(self) -> list:
        return [_ellipse(x, y, 0.06, 0.11, 16) for x, y in self.ears()]

    def _hair_colour(self):
        f = self.face
        return _mix(f.hair, f.skin, 0.45) if f.hair_style == "buzz" else f.hair


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
