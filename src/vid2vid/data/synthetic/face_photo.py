"""Kind "face_photo": the built-in talking heads as a camera would film them, so that a face model trained on them
meets real photographs and videos half way (issue 31). Identity i is portrait i of kind "faces" (same face, hair
and clothes) with, drawn from a stream of its own: a backdrop cut from a real photo or video frame (the backdrops
of kind "photo", none with a person in it), a shirt that may carry a real texture, a size and place in the frame,
and the camera of kind "photo" (light across the frame, colour and brightness, blur, sensor noise, sometimes grey).
A quarter keep the portraits' own flat backdrop and camera, so that the built-in world stays in the training set.

Faces are drawn smaller than "faces" draws them and off centre, as a webcam or a photo frames a face: a face model
crops around the landmarks, and a face that fills less of the frame gives the edge maps the thicker lines (in
output pixels) of real footage (imaginaire draws them on the whole frame, one pixel wide below 512 rows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vid2vid.data import samples
from vid2vid.data.synthetic.common import _rng, _rotate_scale, _translate
from vid2vid.data.synthetic.faces import PortraitIdentity, _PortraitScene
from vid2vid.data.synthetic.photo import (
    NOISE_STREAM,
    PLAIN_SHARE,
    Camera,
    backdrop_window,
    film,
    maybe_textured,
    random_camera,
)

EDGE_MARGIN = 1.0  # pixels kept between the landmarks and the frame's edge


@dataclass(frozen=True)
class FacePhotoLook:
    """How one "face_photo" identity is filmed."""

    portrait: PortraitIdentity
    backdrop: int | None  # index into samples.backdrops(); None: the portrait's flat backdrop
    window: tuple[float, float, float, bool]  # backdrop crop: size (fraction of the largest that fits), x, y, flip
    place: tuple[float, float] | None  # head at rest (x, y): fractions of the room its motion leaves; None: "faces"
    camera: Camera | None  # None: the portraits' own (none)


def face_photo_identity(rng: np.random.Generator, portrait: PortraitIdentity) -> FacePhotoLook:
    if rng.uniform() < PLAIN_SHARE:
        return FacePhotoLook(portrait, None, (1.0, 0.5, 0.5, False), None, None)
    scale = float(rng.uniform(0.45, 1.0))
    portrait = replace(portrait, scale=scale, clothing=maybe_textured(rng, portrait.clothing, 0.5))
    backdrop = int(rng.integers(len(samples.BACKDROP_PHOTOS) + len(samples.BACKDROP_VIDEOS) * samples.VIDEO_FRAMES))
    window = (float(rng.uniform(0.35, 1.0)), float(rng.uniform()), float(rng.uniform()), bool(rng.uniform() < 0.5))
    place = (float(rng.uniform()), float(rng.uniform()))
    return FacePhotoLook(portrait, backdrop, window, place, random_camera(rng))


class _FacePhotoScene(_PortraitScene):
    def __init__(self, look: FacePhotoLook, rng: np.random.Generator, size: tuple[int, int],
                 noise_rng: np.random.Generator, turns_in_depth: bool = False):
        super().__init__(look.portrait, rng, size, turns_in_depth)
        height, width = size
        self.look = look
        self.noise_rng = noise_rng
        if look.place is not None:
            # Over every motion the landmarks of "faces" stay within 0.72 units left and right of the rest point, 0.49
            # above (the brows) and 0.76 below (the chin); the edge map's forehead lies above the brows.
            x = EDGE_MARGIN + 0.75 * self.unit + look.place[0] * (width - 1 - 2 * (EDGE_MARGIN + 0.75 * self.unit))
            top, bottom = EDGE_MARGIN + 0.8 * self.unit, height - 1 - EDGE_MARGIN - 0.8 * self.unit
            self.rest = _translate(x, top + look.place[1] * max(bottom - top, 0.0)) @ _rotate_scale(0.0, self.unit)
        if look.backdrop is not None:
            picture = samples.backdrops()[look.backdrop]
            self.background = backdrop_window(picture, look.window, size).astype(np.float64)

    def finish(self, image: np.ndarray) -> np.ndarray:
        if self.look.camera is None:
            return image
        return film(image, self.look.camera, self.noise_rng)


def face_photo_scene(look: FacePhotoLook, motion_rng: np.random.Generator, size: tuple[int, int], seed: int,
                     index: int, turns_in_depth: bool = False) -> _FacePhotoScene:
    """Kind "face_photo"'s scene, or with turns_in_depth kind "face_talk"'s (the same look, a wider talk)."""
    return _FacePhotoScene(look, motion_rng, size, _rng(seed, "face_photo", index, NOISE_STREAM), turns_in_depth)
