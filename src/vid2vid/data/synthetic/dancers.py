"""Kinds "dancers" and "turning": an articulated person with clothes, a face and hands, dancing before a backdrop,
with OpenPose BODY_25 + face-70 + hand-21 keypoints. A "turning" dancer is the "dancers" one of the same index
doing the same dance, but it turns its back to the camera for spans of frames, and its shirt's back is a garment
of its own: a reference that shows only one side cannot tell the other's colours."""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from vid2vid.data.synthetic.common import (
    _GOLDEN,
    FPS,
    Backdrop,
    Garment,
    _apply,
    _backdrop_image,
    _bone,
    _capsule,
    _ellipse,
    _garment_paint,
    _hsv,
    _local_coords,
    _pick,
    _random_garment,
    _Region,
    _rotate_scale,
    _Scene,
    _shaded_paint,
    _spline,
    _translate,
    _Wave,
)
from vid2vid.data.synthetic.face_model import _FACE_KEYS, _NEUTRAL, Face, _FaceModel, _random_face

BODY_25_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip",
                 "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe",
                 "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")


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
    back: Garment | None = None  # the shirt's back and sleeves' backs ("turning"); None: never seen


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


def _turning_identity(rng: np.random.Generator, dancer: DancerIdentity) -> DancerIdentity:
    """The dancer with a shirt back of another hue (a quarter to three quarters round the wheel from the front)."""
    hue = colorsys.rgb_to_hsv(*(c / 255 for c in dancer.shirt.colour))[0]
    return replace(dancer, back=_random_garment(rng, hue + rng.uniform(0.25, 0.75), (0.035, 0.07)))


class _Turns:
    """When a turning dancer shows its back: alternate spans of 4-8 frames facing and turned away, from a random
    phase, so that a 16-frame video shows both sides. A turn happens between two frames (no side view)."""

    def __init__(self, rng: np.random.Generator):
        self.span = int(rng.integers(4, 9))
        self.phase = int(rng.integers(0, 2 * self.span))

    def __call__(self, t: int) -> bool:
        return (t + self.phase) // self.span % 2 == 1


_BACK_VIEW_IDS = 100  # added to every region id in the back view: no pixel's flow is valid across a turn

# DensePose part indices (I) of each body, as (seen from behind, seen from the front) where DensePose has both
# (our convention for its pairs: the lower index the back); the head is one face part (23: targets' face parts
# are blanked by the few-shot generator, as in imaginaire).
_DENSEPOSE_PARTS = {"torso": (1, 2), "neck": (1, 2), "hand_r": (3, 3), "hand_l": (4, 4), "foot_l": (5, 5),
                    "foot_r": (6, 6), "thigh_r": (7, 9), "thigh_l": (8, 10), "shin_r": (11, 13), "shin_l": (12, 14),
                    "upper_l": (15, 17), "upper_r": (16, 18), "fore_l": (19, 21), "fore_r": (20, 22)}
_DENSEPOSE_HEAD = 23
_DENSEPOSE_UV_SCALE = 2.0  # U, V = 0.5 + 2 x the part's local coordinates (stature units), clipped to [0, 1]


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
    def __init__(self, ident: DancerIdentity, rng: np.random.Generator, size: tuple[int, int],
                 turns: _Turns | None = None):
        height, width = size
        self.turns = turns
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
        self.front_view = self._build_regions(back_view=False)
        self.back_view = self._build_regions(back_view=True) if turns is not None else None

    def turned(self, t: int) -> bool:
        return self.turns is not None and self.turns(t)

    # -- shapes (fixed in each part's local frame)
    def _build_regions(self, back_view: bool) -> list[_Region]:
        """The parts in drawing order. Seen from behind, the pose is mirrored (see _pose), so the same shapes
        serve; the shirt shows its back (sleeves included: a two-coloured top) and the head its hair, drawn over
        the body."""
        d = self.ident
        skin = d.face.skin
        shirt = d.back if back_view else d.shirt
        b = d.build
        arm_r = (0.031 * b, 0.026 * b, 0.021 * b)
        leg_r = (0.05 * b, 0.037 * b, 0.027 * b)
        regions: list[_Region] = []
        behind, over = ([], self.face.back_regions(_NEUTRAL, 60)) if back_view else self.face.regions(_NEUTRAL, 60)
        regions += behind
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
        regions.append(_Region(43, "torso", [torso], _garment_paint(shirt, sh)))
        regions += over
        for i, s, x in _SIDES:
            n = 44 + 8 * i
            skin_arm = _shaded_paint(skin, arm_r[0])
            sleeve = _garment_paint(shirt, arm_r[0] * 1.15)
            long = d.sleeves == "long"
            regions.append(_Region(n, "upper_" + x, [_capsule(d.upper_arm, arm_r[0], arm_r[1])],
                                   sleeve if long else skin_arm))
            if d.sleeves == "short":
                regions.append(_Region(n + 1, "upper_" + x, [_capsule(d.upper_arm * 0.5, arm_r[0] * 1.2,
                                                                      arm_r[0] * 1.15)], sleeve))
            regions.append(_Region(n + 2, "fore_" + x, [_capsule(d.forearm, arm_r[1] * (1.1 if long else 1.0),
                                                                 arm_r[2] * (1.1 if long else 1.0))],
                                   _garment_paint(shirt, arm_r[1] * 1.1) if long else _shaded_paint(skin, arm_r[1])))
            palm, fingers = _hand_shape(s)
            regions.append(_Region(n + 3, "hand_" + x, [palm] + fingers, _shaded_paint(skin, 0.03)))
        return [replace(r, id=r.id + _BACK_VIEW_IDS) for r in regions] if back_view else regions

    def regions(self, t: int) -> list:
        return self.back_view if self.turned(t) else self.front_view

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
        # Seen from behind, the person's right is on the image right: the front view mirrored about the body's axis.
        place = _translate(self.centre + m.sway(t) * self.px, self.ground - sole * self.px) @ np.diag(
            [-self.px if self.turned(t) else self.px, self.px, 1.0])
        return {k: place @ v for k, v in frames.items()}

    def densepose(self, t: int, slot: np.ndarray, regions: list, inverses: np.ndarray) -> np.ndarray | None:
        """Turning dancers: the IUV map of the drawn parts (a pixel's part is the body that owns it in `parts`),
        so that a label tells front from back where the pose's lines alone cannot (on the torso)."""
        if self.turns is None:
            return None
        out = np.zeros((*slot.shape, 3), np.uint8)
        side = 0 if self.turned(t) else 1
        for k in np.unique(slot[slot > 0]):
            region = regions[k - 1]
            ys, xs = np.nonzero(slot == k)
            u, v, _, _ = _local_coords(inverses[k - 1], xs.astype(np.float64), ys.astype(np.float64))
            scale = _DENSEPOSE_UV_SCALE * (_HEAD_UNIT if region.key in _FACE_KEYS else 1.0)
            out[ys, xs, 2] = _DENSEPOSE_HEAD if region.key in _FACE_KEYS else _DENSEPOSE_PARTS[region.key][side]
            out[ys, xs, 1] = np.rint(np.clip(0.5 + scale * u, 0, 1) * 255)
            out[ys, xs, 0] = np.rint(np.clip(0.5 + scale * v, 0, 1) * 255)
        return out

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
        body_seen, face_seen = np.ones(len(body)), np.ones(len(face))
        if self.turned(t):  # from behind, as OpenPose sees it: no face, no nose, no eyes (the ears stay)
            body_seen[[0, 15, 16]] = 0.0
            face_seen[:] = 0.0

        def flat(points, seen=None):
            seen = np.ones(len(points)) if seen is None else seen
            return (np.concatenate([points * seen[:, None], seen[:, None]], 1)).astype(np.float32).ravel().tolist()

        person = {"pose_keypoints_2d": flat(body, body_seen), "face_keypoints_2d": flat(face, face_seen),
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
