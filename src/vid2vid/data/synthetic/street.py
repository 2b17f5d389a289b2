"""Kind "street": a camera driving forward down a city street (road, sidewalks, facades, trees, cars, people,
signs, traffic lights) with Cityscapes label ids."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vid2vid.data.synthetic.common import (
    _CHUNK_STREAM,
    _GOLDEN,
    FPS,
    _bands,
    _clip_near,
    _detail,
    _disc,
    _ellipse,
    _hsv,
    _lerp,
    _mix,
    _pick,
    _rect,
    _Region,
    _rgb,
    _rng,
    _Scene,
    _shaded_paint,
    _span,
    _spline,
    _unit_grid,
)
from vid2vid.data.synthetic.face_model import _HAIR_COLOURS, _SKIN_TONES

# The Cityscapes label ids ("id", not "trainId") that street scenes use.
CITYSCAPES_IDS = {"ego vehicle": 1, "road": 7, "sidewalk": 8, "building": 11, "wall": 12, "pole": 17,
                  "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23,
                  "person": 24, "car": 26}


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
