"""Procedural videos with exact ground truth, so that training, generation and the demo run offline.

Seven kinds: "dancers" (an articulated person with OpenPose BODY_25 + face-70 + hand-21 keypoints), "street"
(a forward-driving camera in a city street with Cityscapes label ids), "faces" (a talking head with dlib-68
landmarks), "turning" (the dancers, turning their backs to the camera now and then, the shirt's back a garment
of its own) and "photo" (the dancers filmed as by a camera in the world: real backdrops and cloth textures, varied
size and place, shadow, light, blur and noise; see photo.py), "face_photo" (the portraits of "faces" filmed
so: see face_photo.py) and "face_talk" (face_photo's looks with a wider talk: the head turns in depth, left and
right and up and down, and the mouth opens wider; see faces.py). A sequence is a pure function of (kind, index,
seed): its appearance ("identity") comes from one random stream and its motion from another, so any identity
can perform any sequence's motion.

Everything is drawn as regions: a region is a set of polygons in the local coordinates of a rigid body, moved into
the image by that body's transform for the frame (a 3x3 matrix: affine for people and faces, a plane's homography
for the street and for face_talk's heads turned in depth), and filled with a texture that is a function of the local
coordinates only. A surface point therefore keeps its colour wherever its body takes it, and the backward flow of a
pixel p on body b is M_b(t-1) M_b(t)^-1 p - p, exact. A pixel's flow is valid when the previous frame showed the
same region at that point's previous position (rounded to the nearest pixel) inside the image. Only the textures'
own interpolation and the anti-aliased one-pixel fringe at region borders separate "warp the previous frame by the
flow" from the current frame: textures are band-limited by the pixel footprint (edges are ramps 2 pixels wide,
patterns finer than 8 pixels fade towards their mean), and `parts` names the region of every pixel so that borders
can be excluded.

Pixel coordinates: x to the right, y down, pixel centres at integers (the convention of `vid2vid.nn.warp`).
"""

from __future__ import annotations

from collections.abc import Iterator

from vid2vid.data.synthetic.common import (
    _IDENTITY_STREAM,
    _MOTION_STREAM,
    _PALETTE_STREAM,
    FPS,
    KINDS,
    SyntheticFrame,
    _check,
    _frames,
    _rng,
)
from vid2vid.data.synthetic.dancers import (
    BODY_25_NAMES,
    DancerIdentity,
    _dancer_identity,
    _DancerScene,
    _turning_identity,
    _Turns,
)
from vid2vid.data.synthetic.face_photo import FacePhotoLook, face_photo_identity, face_photo_scene
from vid2vid.data.synthetic.faces import PortraitIdentity, _portrait_identity, _PortraitScene
from vid2vid.data.synthetic.photo import PhotoLook, photo_identity, photo_scene
from vid2vid.data.synthetic.street import CITYSCAPES_IDS, StreetLook, _street_look, _StreetScene

__all__ = ["BODY_25_NAMES", "CITYSCAPES_IDS", "FPS", "KINDS", "DancerIdentity", "FacePhotoLook", "PhotoLook",
           "PortraitIdentity", "StreetLook", "SyntheticFrame", "identity", "sequence", "turned_away"]


def identity(kind: str, index: int, seed: int = 0
             ) -> DancerIdentity | StreetLook | PortraitIdentity | PhotoLook | FacePhotoLook:
    """The appearance parameters of identity `index`: a DancerIdentity, a StreetLook, a PortraitIdentity, a
    PhotoLook or a FacePhotoLook."""
    _check(kind, index, seed)
    rng = _rng(seed, kind, index, _IDENTITY_STREAM)
    if kind == "photo":  # the dancer of the same index, filmed in the world
        return photo_identity(rng, identity("dancers", index, seed))
    if kind == "face_photo":  # the portrait of the same index, filmed in the world
        return face_photo_identity(rng, identity("faces", index, seed))
    if kind == "face_talk":  # the face_photo look of the same index
        return identity("face_photo", index, seed)
    if kind == "turning":  # the dancer of the same index, with a shirt back of its own
        return _turning_identity(rng, identity("dancers", index, seed))
    palette = _rng(seed, kind, 0, _PALETTE_STREAM)  # shared by all indices: colour wheels stepped by index
    return {"dancers": _dancer_identity, "street": _street_look, "faces": _portrait_identity}[kind](rng, palette,
                                                                                                    index)


def turned_away(motion_index: int, frames: int, seed: int = 0) -> list[bool]:
    """Kind "turning": at which of frames 0..frames-1 the dancer doing motion `motion_index` shows its back."""
    _check("turning", motion_index, seed)
    turns = _Turns(_rng(seed, "turning", motion_index, _MOTION_STREAM))
    return [turns(t) for t in range(frames)]


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
    elif kind == "turning":  # the dance of the same index, with turns drawn from a stream of their own
        scene = _DancerScene(look, _rng(seed, "dancers", motion_index, _MOTION_STREAM), (height, width),
                             _Turns(motion_rng))
    elif kind == "photo":  # the dance of the same index
        scene = photo_scene(look, _rng(seed, "dancers", motion_index, _MOTION_STREAM), (height, width), seed, index)
    elif kind == "faces":
        scene = _PortraitScene(look, motion_rng, (height, width))
    elif kind == "face_photo":  # the talk of the same index
        scene = face_photo_scene(look, _rng(seed, "faces", motion_index, _MOTION_STREAM), (height, width), seed,
                                 index)
    elif kind == "face_talk":  # the look of face_photo, a talk of its own that turns in depth
        scene = face_photo_scene(look, motion_rng, (height, width), seed, index, turns_in_depth=True)
    else:
        scene = _StreetScene(look, motion_rng, (height, width), (seed, motion_index))
    return _frames(scene, frames)
