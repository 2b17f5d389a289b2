"""Frames in and out: images (OpenCV), videos (PyAV), all RGB uint8 (H, W, 3).

Every reader turns a bad file into a DataError naming it; every writer writes atomically.

Every image and video frame passes one gate before its pixels are allocated: the size its header declares
against a limit (`PixelLimit`; a server sets its own with `pixel_limit`). A 900 KB PNG may declare 30000 x 30000
pixels, 2.7 GB once decoded. Photos are turned upright by their EXIF orientation, as phones store them sideways.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from vid2vid.data import DataError
from vid2vid.data.layout import natural_key
from vid2vid.files import atomic_write_bytes, umask

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class PixelLimit:
    """The largest image or video frame read. The default takes a 48-megapixel phone photo (8000 x 6000)."""

    side: int = 16384
    pixels: int = 8192 * 8192  # 67 megapixels, 200 MB as RGB
    file_mb: float = 512.0  # an image file's size on disk
    reader: str = "vid2vid"  # who refuses, in the message: "this server" in `vid2vid serve`

    def bounds(self) -> str:
        area = f", {self.pixels / 1e6:.0f} megapixels" if self.pixels < self.side ** 2 else ""
        return f"{self.side} pixels a side{area} at most"

    def check(self, what: str, width: int, height: int) -> None:
        if max(width, height) > self.side or width * height > self.pixels:
            raise DataError(f"{what}: {width}x{height} is larger than {self.reader} takes ({self.bounds()})")


_PIXEL_LIMIT: contextvars.ContextVar[PixelLimit | None] = contextvars.ContextVar("pixel_limit", default=None)


def current_pixel_limit() -> PixelLimit:
    return _PIXEL_LIMIT.get() or PixelLimit()


@contextlib.contextmanager
def pixel_limit(limit: PixelLimit):
    """Read images and videos under limit in this thread (a server's job) until the block ends."""
    token = _PIXEL_LIMIT.set(limit)
    try:
        yield
    finally:
        _PIXEL_LIMIT.reset(token)


# EXIF orientation (tag 0x0112) -> the array operation that shows the photo upright (numpy's rot90 turns
# counter-clockwise; 6 is a phone held upright, stored turned a quarter counter-clockwise).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


def _header(path: Path, data: bytes, limit: PixelLimit) -> int:
    """Check the size the image's header declares, before any pixel is decoded; its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
                try:
                    orientation = header.getexif().get(0x0112, 1)
                except Exception:  # a broken EXIF block: the pixels may still be good, shown as stored
                    orientation = 1
    except Image.DecompressionBombError as exc:  # past Pillow's own hard limit: it gives only the pixel count
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(pixels[1]) / 1e6:.0f} megapixels" if pixels else "too many pixels"
        raise DataError(f"{path}: declares {declared}, larger than {limit.reader} takes ({limit.bounds()})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise DataError(f"{path}: not a readable image (empty or corrupt)") from None
    limit.check(str(path), width, height)
    return orientation if orientation in _UPRIGHT else 1


def _decode(path: Path) -> np.ndarray:
    """The image file's pixels, upright (any depth and channel count), after the header passed the limit."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    limit = current_pixel_limit()
    if path.stat().st_size > limit.file_mb * 2**20:
        raise DataError(f"{path}: {path.stat().st_size / 2**20:.0f} MB is larger than {limit.reader} takes for an "
                        f"image ({limit.file_mb:g} MB at most)")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: not a readable image (empty file)")
    orientation = _header(path, data, limit)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: not a readable image (empty or corrupt)")
    if orientation != 1:
        image = np.ascontiguousarray(_UPRIGHT[orientation](image))
    return image


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); grey images are repeated, alpha is dropped."""
    image = _decode(Path(path))
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_id_map(path: str | Path) -> np.ndarray:
    """A single-channel PNG of ids (class or instance) as (H, W) integers, exactly as stored."""
    path = Path(path)
    ids = _decode(path)
    if ids.ndim == 3:
        if not (np.array_equal(ids[..., 0], ids[..., 1]) and np.array_equal(ids[..., 0], ids[..., 2])):
            raise DataError(f"{path}: an id map must have one channel (got a colour image)")
        ids = ids[..., 0]
    return ids


def encode_image(path: str | Path, image: np.ndarray) -> bytes:
    """RGB (H, W, 3) or ids (H, W) -> the bytes of the format the extension names."""
    suffix = Path(path).suffix.lower()
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(suffix, array, params)
    if not ok:
        raise DataError(f"{path}: cannot encode an image as {suffix}")
    return data.tobytes()


def write_image(path: str | Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, encode_image(path, image))


def is_video(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in VIDEO_EXTENSIONS


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.stem))


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _check_video_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


class VideoInfo(NamedTuple):
    frames: int  # as the container states it, 0 if unknown
    fps: float
    height: int
    width: int


def video_info(path: str | Path) -> VideoInfo:
    """What a video's header says, without decoding a frame."""
    path = Path(path)
    _check_video_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            current_pixel_limit().check(str(path), stream.width, stream.height)
            fps = float(stream.average_rate) if stream.average_rate else 25.0
            return VideoInfo(int(stream.frames or 0), fps, stream.height, stream.width)
    except av.FFmpegError as exc:
        raise DataError(f"{path}: not a readable video ({_reason(exc)})") from None


def read_video(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame (RGB uint8); a file with no decodable frame is an error, and so is a
    frame past the pixel limit or of another size than the first (checked before it is converted)."""
    path = Path(path)
    _check_video_file(path)
    limit = current_pixel_limit()
    count, first = 0, None
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise DataError(f"{path}: not a readable video ({_reason(exc)})") from None
    try:
        with container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            limit.check(str(path), stream.width, stream.height)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                size = (frame.width, frame.height)
                limit.check(f"{path}: frame {count}", *size)
                if first is None:
                    first = size
                elif size != first:
                    raise DataError(f"{path}: frame {count} is {size[0]}x{size[1]}, the video's first frame "
                                    f"{first[0]}x{first[1]} (frames that change size are not taken; re-encode it "
                                    "at one size)")
                count += 1
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        where = f"after frame {count}" if count else "before the first frame"
        raise DataError(f"{path}: video cannot be decoded {where} ({_reason(exc)})") from None
    if count == 0:
        raise DataError(f"{path}: video holds no frames")


def read_frames(source: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(frame name, RGB frame) from a video file or a folder of images; names keep the folder's."""
    source = Path(source)
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise DataError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        first_shape = None
        for path in files:
            image = read_image(path)
            if first_shape is None:
                first_shape = image.shape
            elif image.shape != first_shape:
                raise DataError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the sequence's "
                                f"{first_shape[1]}x{first_shape[0]}")
            yield path.stem, image
    elif is_video(source):
        for index, frame in enumerate(read_video(source)):
            yield f"{index:05d}", frame
    elif source.exists():
        raise DataError(f"{source}: not a video ({', '.join(VIDEO_EXTENSIONS)}) or a folder of images")
    else:
        raise DataError(f"{source}: no such file or folder")


class VideoWriter:
    """H.264 mp4 through PyAV, written under a temporary name and renamed when closed without error."""

    def __init__(self, path: str | Path, fps: float = 25.0, crf: int = 18):
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self.container = av.open(self.tmp, mode="w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf)}
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """frame: RGB uint8 (H, W, 3); every frame must have the first frame's size."""
        h, w = frame.shape[:2]
        if self.size is None:
            # yuv420p needs even sides; pad with the edge pixels rather than resample.
            self.size = (h + h % 2, w + w % 2)
            self.stream.height, self.stream.width = self.size
        elif (h + h % 2, w + w % 2) != self.size:
            raise ValueError(f"{self.path}: frame {self.frames} is {w}x{h}, the video is {self.size[1]}x{self.size[0]}")
        if (h, w) != self.size:
            frame = np.pad(frame, ((0, self.size[0] - h), (0, self.size[1] - w), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.chmod(self.tmp, 0o666 & ~umask())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except av.FFmpegError:
            pass  # nothing was encoded; the file goes anyway
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.frames:
            self.close()
            return
        self.abort()
        if exc_type is None:
            raise ValueError(f"{self.path}: no frames to write")
