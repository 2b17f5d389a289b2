"""PyTorch datasets of paired clips: T consecutive frames with their labels and teacher flow, plus K
reference frames of the same sequence for few-shot vid2vid.

The steps for one sample follow imaginaire's data path, so that its checkpoints see the labels they were
trained on: frames are resized (smallest side), flipped, labels are rendered at that size, then a crop
(around the person, around the face, or a random/full window for street scenes) is cut and resized to
the output size. One geometry is drawn per clip and applied to every frame and label of it; each
reference gets a crop of its own (imaginaire's one crop for all K is reference_crop "together").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vid2vid.data import DataError, render
from vid2vid.data.layout import Sequence, scan
from vid2vid.data.teacher_flow import compose, dis_flow, read_flow, reference_flows, to_picture
from vid2vid.data.video import read_id_map, read_image
from vid2vid.settings import Settings

CROPS = ("person", "face", "random", "resize")


@dataclass
class DataConfig(Settings):
    """What a sample is: task, output size, clip length, references and augmentation."""

    SECTION = "data"

    task: str  # pose | face | street
    size: tuple[int, int] = (256, 256)  # output (height, width)
    clip_length: int = 4  # T; the trainer may change it between epochs
    num_references: int = 0  # K reference frames (few-shot)
    min_references: int | None = None  # training draws K per batch from min_references..num_references (None: fixed)
    max_stride: int = 1  # clips take every s-th frame, s drawn from 1..max_stride
    resize_smallest_side: int | None = None  # resize frames first (imaginaire's resize_smallest_side)
    crop: str | None = None  # person (pose), face (face), random or resize (street); None: the task's
    random_scale: float = 0.0  # random crop: window up to this fraction smaller than the output, then resized
    horizontal_flip: bool = False
    augment: bool = True  # random crop jitter, scale, flip, limb drop; off for evaluation
    num_classes: int = 35  # street: one-hot channels (Cityscapes ids)
    instance_boundaries: bool = False  # street: one more channel with instance edges (needs instance_maps)
    pose_limb_drop: float = 0.0  # pose: chance to leave out each limb and DensePose part in training (imaginaire: 0.05)
    pose_face_lines: bool = False  # pose: draw OpenPose face lines (imaginaire's remove_face_labels leaves them out)
    teacher_flow: bool = True  # return flow to the previous frame (stored, or OpenCV DIS on the fly)
    # Few-shot references: "each" cropped in its own box, as it would be alone; "together" in one box (around the
    # person in all K, or the first one's face: imaginaire's), which frames them differently for each K.
    reference_crop: str = "each"
    # pose: scale a frame down, before its labels are drawn, so that the person's crop box is the output size (as
    # in training on frames of that size); off: labels drawn at the frame's size (imaginaire's), thin once resized.
    fit_person_box: bool = False
    # pose, training: the chance that a reference is cut by the frame's bottom edge somewhere between the middle of
    # the torso and the ankles (a photo of the upper body or a person cut at the knees), the clip left whole.
    reference_cut: float = 0.0
    # pose: a reference's person box fits the whole person, estimated from the shoulders and torso when the frame
    # cuts them (render.whole_person_rows), so an upper-body photo is framed at the scale of a whole person in
    # training; the rest of the box is padded (labels with their background).
    whole_person_box: bool = False
    # face, few-shot: the teacher flow to each reference follows the landmarks on the face (a thin-plate spline
    # through the 68 correspondences, teacher_flow.landmark_flow) and DIS only around it.
    landmark_teacher: bool = False

    def __post_init__(self):
        if self.task not in ("pose", "face", "street"):
            raise ValueError(f"data task must be pose, face or street, got {self.task!r}")
        if self.crop is None:
            self.crop = {"pose": "person", "face": "face", "street": "random"}[self.task]
        if self.crop not in CROPS:
            raise ValueError(f"data crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if not 0 <= self.reference_cut <= 1:
            raise ValueError(f"data reference_cut must be a chance between 0 and 1, got {self.reference_cut}")
        if self.reference_crop not in ("each", "together"):
            raise ValueError(f"data reference_crop must be 'each' or 'together', got {self.reference_crop!r}")
        self.size = tuple(self.size)
        if self.clip_length < 1 or self.num_references < 0 or self.max_stride < 1:
            raise ValueError("clip_length and max_stride must be >= 1 and num_references >= 0")
        if self.min_references is not None and not 1 <= self.min_references <= self.num_references:
            raise ValueError(f"data min_references must be between 1 and num_references ({self.num_references}), "
                             f"got {self.min_references}")

    @staticmethod
    def task_for_label_channels(channels: int) -> str:
        """The task whose labels have this many channels (the inverse of label_channels): 6 pose, 1 face, else
        street (one-hot classes)."""
        return {6: "pose", 1: "face"}.get(channels, "street")

    @property
    def label_channels(self) -> int:
        if self.task == "pose":
            return 6  # DensePose IUV (3) + OpenPose colour map (3)
        if self.task == "face":
            return 1
        return self.num_classes + int(self.instance_boundaries)


@dataclass
class Frame:
    """One frame as read from disk, before any geometry."""
    image: np.ndarray  # (H, W, 3) uint8
    people: list | None = None  # pose: OpenPose people
    densepose: np.ndarray | None = None  # pose: IUV (H, W, 3) uint8
    landmarks: np.ndarray | None = None  # face: (68, 2)
    seg: np.ndarray | None = None  # street: (H, W) class ids
    instance: np.ndarray | None = None  # street: (H, W) instance ids
    source_size: tuple[int, int] = (0, 0)  # (H, W) of the file, kept through resize and flip


def read_frame(sequence: Sequence, index: int) -> Frame:
    files = sequence.files
    image = read_image(files["images"][index])
    frame = Frame(image, source_size=image.shape[:2])
    if "openpose" in files:
        frame.people = render.read_openpose_json(files["openpose"][index])
        render.check_people_in_frame(files["openpose"][index], frame.people, *image.shape[:2])
    if "densepose" in files:
        frame.densepose = read_image(files["densepose"][index])
    if "dlib68" in files:
        frame.landmarks = render.read_landmarks_json(files["dlib68"][index])
        # dlib places the landmarks of a face cut by the frame's edge beyond it: a wider margin than OpenPose's.
        render.check_points_in_frame(files["dlib68"][index], frame.landmarks, *image.shape[:2], margin=0.5)
    if "seg" in files:
        frame.seg = read_id_map(files["seg"][index])
    if "instance" in files:
        frame.instance = read_id_map(files["instance"][index])
    h, w = image.shape[:2]
    for name in ("densepose", "seg", "instance"):
        value = getattr(frame, name)
        if value is not None and value.shape[:2] != (h, w):
            raise DataError(f"{files[name][index]}: size {value.shape[1]}x{value.shape[0]} differs from its "
                            f"image {files['images'][index].name} ({w}x{h})")
    return frame


def resize_frame(frame: Frame, scale: float) -> Frame:
    """The whole frame scaled; keypoints move with the pixels (pixel centres stay centres)."""
    if scale == 1:
        return frame
    h, w = frame.image.shape[:2]
    size = (round(w * scale), round(h * scale))

    def nearest(a):
        return None if a is None else cv2.resize(a, size, interpolation=cv2.INTER_NEAREST)

    # Keypoints scale as imaginaire scales them (x * s, no half-pixel shift): its checkpoints saw that.
    landmarks = None if frame.landmarks is None else frame.landmarks * scale
    people = None if frame.people is None else [render.scale_person(p, (scale, scale)) for p in frame.people]
    return Frame(cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA), people, nearest(frame.densepose),
                 landmarks, nearest(frame.seg), nearest(frame.instance), frame.source_size)


def flip_frame(frame: Frame) -> Frame:
    w = frame.image.shape[1]

    def mirror(a):
        return None if a is None else np.ascontiguousarray(a[:, ::-1])

    people = None if frame.people is None else render.flip_openpose(frame.people, w)
    landmarks = None if frame.landmarks is None else render.flip_landmarks(frame.landmarks, w)
    return Frame(mirror(frame.image), people, mirror(frame.densepose), landmarks, mirror(frame.seg),
                 mirror(frame.instance), frame.source_size)


def cut_frame(frame: Frame, rows: int) -> Frame:
    """The frame's top `rows` rows, as a camera framing less of the scene would show them: keypoints below are
    undetected."""
    def top(a):
        return None if a is None else np.ascontiguousarray(a[:rows])

    people = None
    if frame.people is not None:
        people = [render.hide_points_below(p, rows - 1) for p in frame.people]
    return Frame(top(frame.image), people, top(frame.densepose), frame.landmarks, top(frame.seg), top(frame.instance),
                 frame.source_size)


def random_reference_cut(frame: Frame, rng: np.random.Generator) -> Frame:
    """The frame cut by its bottom edge at a random row between the middle of the torso and the ankles of its
    person (unchanged when those points are not seen)."""
    person = render.largest_person(frame.people or [])
    if person is None:
        return frame
    body = person.body
    seen = body[:, 2] > 0
    if not (seen[1] and seen[8]):  # neck and mid-hip
        return frame
    ankles = body[[11, 14]][seen[[11, 14]], 1]
    low = float(ankles.max()) if ankles.size else float(frame.image.shape[0] - 1)
    high = 0.5 * float(body[1, 1] + body[8, 1])
    if low <= high + 2:
        return frame
    return cut_frame(frame, int(rng.uniform(high, low)) + 1)


def person_box_scale(frame: Frame, output_height: int, whole: bool = False) -> float:
    """The scale (at most 1) that makes the person crop box of this frame output_height pixels high: the box is
    1.5 times the person's extent and at most the frame (render.person_crop_box with fit_person_box), estimated
    here from the largest person's keypoints. whole: the box of the whole person (whole_person_rows), which may
    be larger than the frame."""
    h = frame.image.shape[0]
    person = render.largest_person(frame.people or [])
    extent = 0.0
    if person is not None:
        points = np.concatenate([person.body, person.face, person.hand_left, person.hand_right])
        ys = points[points[:, 2] > 0, 1]
        extent = float(ys.max() - ys.min()) if ys.size else 0.0
    rows = render.whole_person_rows(person) if whole else None
    if rows is not None:
        return min(1.0, output_height / (1.5 * max(extent, rows[1] - rows[0])))
    box = min(h, 1.5 * extent) if extent > 0 else h / 2
    return min(1.0, output_height / box)


def border_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of an image's outermost pixels: what a whole-person box pads a photo with (the
    backdrop, mostly, not a person's edge smeared outwards)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border, axis=0)


def crop_resize(array: np.ndarray, box: render.CropBox, size: tuple[int, int], nearest: bool,
                fill: float | np.ndarray | None = None) -> np.ndarray:
    """array (H, W[, C]) cut to box, padded where the box leaves the array (with edge values, or with fill),
    and resized to size (height, width)."""
    top, bottom, left, right = box.top, box.top + box.height, box.left, box.left + box.width
    h, w = array.shape[:2]
    pad = [(max(0, -top), max(0, bottom - h)), (max(0, -left), max(0, right - w))] + [(0, 0)] * (array.ndim - 2)
    if any(p for pair in pad for p in pair):
        if fill is None:
            array = np.pad(array, pad, mode="edge")
        else:  # one value, or a colour per channel
            padded = np.empty((h + sum(pad[0]), w + sum(pad[1])) + array.shape[2:], array.dtype)
            padded[:] = fill
            padded[pad[0][0]:pad[0][0] + h, pad[1][0]:pad[1][0] + w] = array
            array = padded
        top, bottom, left, right = top + pad[0][0], bottom + pad[0][0], left + pad[1][0], right + pad[1][0]
    cut = array[top:bottom, left:right]
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.resize(cut, (size[1], size[0]), interpolation=interpolation)
    return out.reshape(size + array.shape[2:])


def crop_resize_flow(flow: np.ndarray, confidence: np.ndarray, box, size) -> tuple[np.ndarray, np.ndarray]:
    """Flow in pixels follows the crop: vectors scale with the resize."""
    scale = np.array([size[1] / box.width, size[0] / box.height], np.float32)
    return crop_resize(flow, box, size, nearest=False) * scale, crop_resize(confidence, box, size, nearest=True)


def transform_flow(flow: np.ndarray, confidence: np.ndarray, scale: float, flip: bool):
    """A stored flow through the frame resize and flip."""
    if scale != 1:
        h, w = flow.shape[:2]
        size = (round(w * scale), round(h * scale))
        flow = cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR) * scale
        confidence = cv2.resize(confidence, size, interpolation=cv2.INTER_NEAREST)
    if flip:
        flow = flow[:, ::-1] * np.array([-1, 1], np.float32)
        confidence = confidence[:, ::-1]
    return np.ascontiguousarray(flow), np.ascontiguousarray(confidence)


def keypoints_in_box(people: list, box: render.CropBox, size: tuple[int, int]) -> torch.Tensor:
    """The drawn person's BODY_25 + left hand + right hand points (67, 3) in output pixels (x, y, confidence),
    for the face and hand discriminators; zeros where a point is not detected."""
    person = render.largest_person(people)
    if person is None:
        return torch.zeros(67, 3)
    points = np.concatenate([person.body, person.hand_left, person.hand_right]).astype(np.float32)
    seen = points[:, 2] > 0
    points[seen, 0] = (points[seen, 0] - box.left) * size[1] / box.width
    points[seen, 1] = (points[seen, 1] - box.top) * size[0] / box.height
    points[~seen] = 0
    return torch.from_numpy(points)


def landmarks_in_box(landmarks: np.ndarray, box: render.CropBox, size: tuple[int, int]) -> torch.Tensor:
    """dlib-68 face landmarks (68, 2) in output pixels."""
    points = landmarks.astype(np.float32).copy()
    points[:, 0] = (points[:, 0] - box.left) * size[1] / box.width
    points[:, 1] = (points[:, 1] - box.top) * size[0] / box.height
    return torch.from_numpy(points)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) -> (C, H, W) float32."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> (3, H, W) in [-1, 1]."""
    return to_tensor(image) / 127.5 - 1


def spread_references(others: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """k frame indices drawn from others, one from each of k equal runs of it, in a random order: the
    references of a sample then come from apart in the video (poses and views that differ), and its first j
    for any j (the trainer's K per batch) are as spread as j random runs."""
    if k == 0:
        return []
    picks = [int(run[rng.integers(len(run))]) for run in np.array_split(np.asarray(others), k)]
    return [picks[i] for i in rng.permutation(k)]


class Framing:
    """How a frame becomes a model input, by the data config: its labels drawn, the frame scaled and cut at a
    box (the person, the face, a random or whole window) and resized to the output size. VideoClips frames its
    training clips and references so; generation and live mode frame driving frames one by one (DrivingFramer)."""

    def __init__(self, cfg: DataConfig, root: Path | None = None):
        self.cfg = replace(cfg)  # our own copy: the trainer changes clip length and size as it goes
        self.root = root

    def reference_boxes(self, frames: list[Frame], labels: list[np.ndarray], rng: np.random.Generator | None,
                        face_scale: tuple[float, float]) -> list[render.CropBox]:
        """The box of each reference frame: its own (reference_crop "each") or one around all ("together")."""
        if self.cfg.reference_crop == "together":
            return [self.crop_box(frames, labels, rng, face_scale, reference=True)] * len(frames)
        return [self.crop_box([f], [x], rng, face_scale, reference=True) for f, x in zip(frames, labels, strict=True)]

    def crop_references(self, frames: list[Frame], labels: list[np.ndarray], boxes: list[render.CropBox]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (K, C, H, W) and images (K, 3, H, W) of reference frames, each cut at its box."""
        # A whole-person box beyond a cut person: no limb drawn there (pose labels' background is -1), the photo
        # padded with its backdrop's colour.
        return self.crop_frames(frames, labels, boxes, self.whole_references)

    def crop_frames(self, frames: list[Frame], labels: list[np.ndarray], boxes: list[render.CropBox], whole: bool
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (N, C, H, W) and images (N, 3, H, W) cut at their boxes; whole: a box beyond the frame is padded
        with the labels' background and the image's border colour (else with edge values)."""
        size, nearest = self.cfg.size, self.nearest_labels
        return (torch.stack([to_tensor(crop_resize(x, b, size, nearest, -1.0 if whole else None))
                             for x, b in zip(labels, boxes, strict=True)]),
                torch.stack([image_to_tensor(crop_resize(f.image, b, size, False,
                                                         border_colour(f.image) if whole else None))
                             for f, b in zip(frames, boxes, strict=True)]))

    @property
    def nearest_labels(self) -> bool:
        return self.cfg.task != "face"  # imaginaire resizes face edge maps bilinearly, the others nearest

    def scale_for(self, source_size: tuple[int, int]) -> float:
        """The resize_smallest_side scale of a frame whose file is source_size (H, W)."""
        side = self.cfg.resize_smallest_side
        return 1.0 if side is None else side / min(source_size)

    @property
    def whole_references(self) -> bool:
        """Whether a reference's box fits the whole person (whole_person_box; a driving clip's box is the person
        it shows: one framed whole too was tried and lost study 6's photos, docs/RESULTS.md)."""
        return self.cfg.whole_person_box and self.cfg.task == "pose"

    def fit_scale(self, frame: Frame, reference: bool = False) -> float:
        """fit_person_box: the scale that brings this frame's person box to the output size (1 when off)."""
        if not (self.cfg.fit_person_box and self.cfg.task == "pose"):
            return 1.0
        return person_box_scale(frame, self.cfg.size[0], whole=reference and self.whole_references)

    def fit(self, frames: list[Frame]) -> list[Frame]:
        """Frames cropped with one box, scaled alike by the first one's fit_scale."""
        scale = self.fit_scale(frames[0]) if frames else 1.0
        return [resize_frame(f, scale) for f in frames]

    def render(self, frame: Frame, rng: np.random.Generator | None, dropped_parts: tuple[int, ...]) -> np.ndarray:
        """The frame's label map (H, W, C) float32 at the working size."""
        cfg = self.cfg
        h, w = frame.image.shape[:2]
        if cfg.task == "pose":
            person = render.largest_person(frame.people)
            pose = render.draw_openpose(person, h, w, with_face=cfg.pose_face_lines, drop_prob=cfg.pose_limb_drop,
                                        rng=rng if cfg.pose_limb_drop > 0 else None)
            if frame.densepose is None:
                densepose = np.full((h, w, 3), -1, np.float32)  # what DensePose's background encodes to
            else:
                densepose = render.densepose_to_label(frame.densepose, dropped_parts)
            return np.concatenate([densepose, render.label_to_float(pose, signed=True)], axis=2)
        if cfg.task == "face":
            edges = render.draw_face_edges(frame.landmarks, h, w)
            return render.label_to_float(edges[:, :, None], signed=False)
        one_hot = render.segmentation_one_hot(frame.seg, cfg.num_classes)
        if cfg.instance_boundaries:
            if frame.instance is None:
                raise DataError(f"{self.root}: instance_boundaries is on but there is no instance_maps/ folder")
            return np.concatenate([one_hot, render.instance_boundaries(frame.instance)[:, :, None]], axis=2)
        return one_hot

    def crop_box(self, frames: list[Frame], labels: list[np.ndarray], rng: np.random.Generator | None,
                 face_scale: tuple[float, float], reference: bool = False) -> render.CropBox:
        """One box for a group of frames (the clip, or the references), in working pixels."""
        cfg = self.cfg
        h, w = frames[0].image.shape[:2]
        if cfg.crop == "person":
            scale, offset = render.random_person_crop_jitter(rng, reference) if rng is not None else (1.5, (0, 0))
            has_densepose = frames[0].densepose is not None
            # imaginaire takes the pixels where the DensePose channels are positive; without DensePose, the
            # OpenPose drawing (anything above its -1 background).
            foreground = np.stack([x[:, :, :3] > 0 if has_densepose else (x[:, :, 3:] > -1).any(axis=2)
                                   for x in labels])
            if has_densepose:
                foreground = foreground.any(axis=3)
            whole = None
            if reference and self.whole_references and len(frames) == 1:
                whole = render.whole_person_rows(render.largest_person(frames[0].people or []))
            return render.person_crop_box(foreground, cfg.size[1] / cfg.size[0], scale, offset,
                                          min_frame_share=0.0 if cfg.fit_person_box else 0.5, whole_rows=whole)
        if cfg.crop == "face":
            offset = render.random_face_crop_jitter(rng, face_scale)[0] if rng is not None else (0.0, 0.0)
            return render.face_crop_box(frames[0].landmarks, (h, w), offset, face_scale)
        if cfg.crop == "resize":
            return render.CropBox(0, 0, h, w)
        # random: a window of the output's aspect ratio, as large as fits, made smaller by up to random_scale
        scale = min(h / cfg.size[0], w / cfg.size[1])
        if rng is not None and cfg.random_scale > 0:
            scale /= 1 + rng.uniform(0, cfg.random_scale)
        ch, cw = round(cfg.size[0] * scale), round(cfg.size[1] * scale)
        top = int(rng.integers(0, h - ch + 1)) if rng is not None else (h - ch) // 2
        left = int(rng.integers(0, w - cw + 1)) if rng is not None else (w - cw) // 2
        return render.CropBox(top, left, ch, cw)


class DrivingFramer:
    """Driving frames framed one after another for generation: the scale and crop box found on the first frame
    (as imaginaire's inference does) kept for the ones after it, until `reset`."""

    def __init__(self, framing: Framing):
        self.framing = framing
        self.reset()

    def reset(self) -> None:
        """Frame the next frame afresh (live mode: the person has left and come back)."""
        self.scale = self.box = None

    def __call__(self, frame: Frame) -> dict:
        """label (C, H, W), image (3, H, W) and the keypoints (pose) or landmarks (face) in output pixels."""
        framing, size = self.framing, self.framing.cfg.size
        self.scale = framing.fit_scale(frame) if self.scale is None else self.scale
        frame = resize_frame(frame, self.scale)
        label = framing.render(frame, None, ())
        if self.box is None:
            self.box = framing.crop_box([frame], [label], None, (1.0, 1.0))
        labels, images = framing.crop_frames([frame], [label], [self.box], whole=False)
        item = {"label": labels[0], "image": images[0]}
        if frame.people is not None:
            item["keypoints"] = keypoints_in_box(frame.people, self.box, size)
        if frame.landmarks is not None:
            item["landmarks"] = landmarks_in_box(frame.landmarks, self.box, size)
        return item


class VideoClips(Framing, Dataset):
    """Clips from a dataset folder; item i is a random clip, drawn from a generator seeded by (seed, epoch, i).

    Items are dicts: labels (T, C, H, W), images (T, 3, H, W) in [-1, 1], flow (T, 2, H, W) backward to the
    previous clip frame and flow_confidence (T, 1, H, W) (zero for the first frame), ref_labels and ref_images
    (K, ...) when K > 0 with ref_flow (T, K, 2, H, W) and ref_flow_confidence (T, K, 1, H, W) from each frame to each
    reference, keypoints (T, 67, 3) for pose data (BODY_25 + hands in output pixels), and the
    sequence name and frame names.
    """

    def __init__(self, root: str | Path, cfg: DataConfig, seed: int = 0, length: int | None = None):
        super().__init__(cfg, Path(root))
        self.seed = seed
        self.epoch = 0
        self.sequences = scan(root, cfg.task)
        longest = max(len(s) for s in self.sequences)
        if longest < cfg.clip_length + cfg.num_references:
            raise DataError(f"{root}: the longest sequence has {longest} frames; clips of {cfg.clip_length} "
                            f"frames with {cfg.num_references} references need {cfg.clip_length + cfg.num_references}")
        self.length = length or sum(len(s) for s in self.sequences)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_clip_length(self, clip_length: int) -> None:
        longest = max(len(s) for s in self.sequences)
        if clip_length + self.cfg.num_references > longest:
            raise DataError(f"{self.root}: clips of {clip_length} frames need longer sequences (longest: {longest})")
        self.cfg.clip_length = clip_length

    def choose(self, rng: np.random.Generator) -> tuple[Sequence, list[int], list[int]]:
        """A sequence, the clip's frame indices and the references' (disjoint from the clip)."""
        cfg = self.cfg
        stride = int(rng.integers(1, cfg.max_stride + 1))
        span = (cfg.clip_length - 1) * stride + 1
        if not any(len(s) >= span + cfg.num_references for s in self.sequences):
            stride, span = 1, cfg.clip_length
        candidates = [s for s in self.sequences if len(s) >= span + cfg.num_references]
        sequence = candidates[int(rng.integers(len(candidates)))]
        start = int(rng.integers(0, len(sequence) - span + 1))
        clip = list(range(start, start + span, stride))
        others = [i for i in range(len(sequence)) if i < start or i >= start + span]
        return sequence, clip, spread_references(others, cfg.num_references, rng)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """Sample `item`: an index, or (index, K) to load only the first K of its num_references references (the
        trainer's sampler says the K of each iteration, so that no reference is loaded, cut and given teacher
        flows only to be dropped). The references kept are the same either way."""
        index, k = item if isinstance(item, tuple) else (item, self.cfg.num_references)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sequence, clip, refs = self.choose(rng)
        return self.load(sequence, clip, refs[:k], rng)

    def load(self, sequence: Sequence, clip: list[int], refs: list[int], rng: np.random.Generator | None) -> dict:
        """The sample for given frame indices; rng None means no random augmentation."""
        cfg = self.cfg
        augment = rng if cfg.augment else None
        flip = bool(cfg.horizontal_flip and augment is not None and augment.random() < 0.5)
        dropped = render.sample_dropped_parts(augment, cfg.pose_limb_drop) if augment is not None else ()
        face_scale = render.random_face_crop_jitter(augment)[1] if augment is not None else (1.0, 1.0)
        frames = [self.working_frame(sequence, i, flip) for i in clip]
        frames = self.fit(frames)
        for i, frame in zip(clip[1:], frames[1:], strict=True):
            if frame.source_size != frames[0].source_size:
                (h, w), (h0, w0) = frame.source_size, frames[0].source_size
                raise DataError(f"{sequence.files['images'][i]}: size {w}x{h} differs from the sequence's {w0}x{h0}")
        labels = [self.render(f, augment, dropped) for f in frames]
        box = self.crop_box(frames, labels, augment, face_scale)
        clip_labels, clip_images = self.crop_frames(frames, labels, [box] * len(frames), whole=False)
        sample = {
            "labels": clip_labels,
            "images": clip_images,
            "sequence": sequence.name,
            "frames": [sequence.frames[i] for i in clip],
        }
        if cfg.task == "pose":
            sample["keypoints"] = torch.stack([keypoints_in_box(f.people, box, cfg.size) for f in frames])
        if cfg.teacher_flow:
            sample["flow"], sample["flow_confidence"] = self.flows(sequence, clip, frames, box, flip, sample)
        if refs:
            ref_frames = [self.working_frame(sequence, i, flip) for i in refs]
            if augment is not None and cfg.reference_cut > 0 and cfg.task == "pose":
                ref_frames = [random_reference_cut(f, augment) if augment.random() < cfg.reference_cut else f
                              for f in ref_frames]
            ref_frames = [resize_frame(f, self.fit_scale(f, reference=True)) for f in ref_frames]
            ref_labels = [self.render(f, augment, dropped) for f in ref_frames]
            boxes = self.reference_boxes(ref_frames, ref_labels, augment, face_scale)
            sample["ref_labels"], sample["ref_images"] = self.crop_references(ref_frames, ref_labels, boxes)
            if cfg.teacher_flow:
                landmarks = None
                if cfg.landmark_teacher and cfg.task == "face":
                    landmarks = (torch.stack([landmarks_in_box(f.landmarks, box, cfg.size) for f in frames]),
                                 torch.stack([landmarks_in_box(f.landmarks, b, cfg.size)
                                              for f, b in zip(ref_frames, boxes, strict=True)]))
                sample["ref_flow"], sample["ref_flow_confidence"] = reference_flows(
                    sample["labels"], sample["images"], sample["ref_labels"], sample["ref_images"], cfg.task,
                    landmarks)
        return sample

    def references(self, sequence: Sequence, indices: list[int]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Reference labels (K, C, H, W), images (K, 3, H, W) and their points in output pixels of given frames,
        without augmentation: for pose data keypoints (K, 67, 3), which give fine-tuning the face and hand boxes
        training finds on its targets; for face data landmarks (K, 68, 2), which can warp a reference onto a
        driving face (teacher_flow.landmark_flows); else None."""
        frames = [self.working_frame(sequence, i, False) for i in indices]
        frames = [resize_frame(f, self.fit_scale(f, reference=True)) for f in frames]
        labels = [self.render(f, None, ()) for f in frames]
        boxes = self.reference_boxes(frames, labels, None, (1.0, 1.0))
        ref_labels, ref_images = self.crop_references(frames, labels, boxes)
        size = self.cfg.size
        if self.cfg.task == "face":
            return ref_labels, ref_images, torch.stack([landmarks_in_box(f.landmarks, b, size)
                                                        for f, b in zip(frames, boxes, strict=True)])
        if self.cfg.task != "pose":
            return ref_labels, ref_images, None
        keypoints = [keypoints_in_box(f.people or [], b, size) for f, b in zip(frames, boxes, strict=True)]
        return ref_labels, ref_images, torch.stack(keypoints)

    def stream(self, sequence: Sequence, max_frames: int | None = None, landmarks: np.ndarray | None = None
               ) -> Iterator[dict]:
        """The frames of a sequence in order for generation, framed by a DrivingFramer, no augmentation. Items:
        label (C, H, W), image (3, H, W), frame, and the driving keypoints (pose) or landmarks (face) in output
        pixels. landmarks (T, 68, 2) in file pixels, if given, stand in for the face's own (a driving face given
        another face's proportions)."""
        framer = DrivingFramer(self)
        size = None
        for index in range(len(sequence) if max_frames is None else min(max_frames, len(sequence))):
            frame = self.working_frame(sequence, index, False, None if landmarks is None else landmarks[index])
            size = frame.source_size if size is None else size
            if frame.source_size != size:
                raise DataError(f"{sequence.files['images'][index]}: size {frame.source_size[1]}x"
                                f"{frame.source_size[0]} differs from the sequence's {size[1]}x{size[0]}")
            yield {**framer(frame), "frame": sequence.frames[index]}

    def working_frame(self, sequence: Sequence, index: int, flip: bool, landmarks: np.ndarray | None = None
                      ) -> Frame:
        frame = read_frame(sequence, index)
        if landmarks is not None:
            frame.landmarks = landmarks
        frame = resize_frame(frame, self.scale_for(frame.source_size))
        return flip_frame(frame) if flip else frame

    def flows(self, sequence: Sequence, clip: list[int], frames: list[Frame], box, flip: bool, sample: dict):
        """Backward flow of each clip frame to the clip frame before it, and its confidence."""
        cfg = self.cfg
        stored = sequence.files.get("flow")
        size = cfg.size
        flows = [np.zeros(size + (2,), np.float32)]
        confidences = [np.zeros(size, np.float32)]
        for t in range(1, len(clip)):
            steps = range(clip[t - 1] + 1, clip[t] + 1)
            if stored is not None and all(stored[i] is not None for i in steps):
                flow, confidence = None, None
                for i in steps:  # chain stored flows back across the stride
                    f, c = read_flow(stored[i], frames[t].source_size)
                    flow, confidence = (f, c) if flow is None else compose(f, flow, c, confidence)
                flow, confidence = transform_flow(flow, confidence, self.scale_for(frames[t].source_size), flip)
                flow, confidence = crop_resize_flow(flow, confidence, box, size)
            else:
                flow, confidence = dis_flow(to_picture(sample["images"][t]), to_picture(sample["images"][t - 1]))
            flows.append(flow)
            confidences.append(confidence)
        return (torch.stack([to_tensor(f) for f in flows]),
                torch.stack([torch.from_numpy(np.ascontiguousarray(c, np.float32))[None] for c in confidences]))

