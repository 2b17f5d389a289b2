"""The frame step both generators share, for training and for streaming generation.

`step(generator, label, history, refs)` makes one frame from the current label, the last few labels and
outputs (`history`) and, for few-shot vid2vid, the reference images; `history.push` keeps the window short.
Whether fed-back frames carry gradient is decided by the caller, where the frame is pushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vid2vid.models.fs_vid2vid import FewShotGenerator, FrameOutput
from vid2vid.models.vid2vid import Vid2VidOutput


@dataclass
class References:
    labels: torch.Tensor  # (B, K, C, H, W)
    images: torch.Tensor  # (B, K, 3, H, W)
    keypoints: torch.Tensor | None = None  # (B, K, 67, 3) pose keypoints in output pixels: fine-tuning's region Ds
    # (B, K, 68, 2) dlib-68 landmarks of face references in output pixels: the proportions a driving face is given
    # (render.FaceProportions) and the landmark warp (teacher_flow.landmark_flows)
    face_landmarks: torch.Tensor | None = None

    def to(self, device: torch.device) -> References:
        """Labels and images on the device; keypoints and landmarks stay on the host, where they are read."""
        return References(self.labels.to(device), self.images.to(device), self.keypoints, self.face_landmarks)


def references_of(labels: torch.Tensor, images: torch.Tensor, points: torch.Tensor | None, task: str) -> References:
    """One sample's references (K, ...) from VideoClips.references: its points are keypoints for pose data,
    landmarks for face data."""
    points = None if points is None else points[None]
    face = task == "face"
    return References(labels[None], images[None], None if face else points, points if face else None)


@dataclass
class History:
    """The last `size` labels and generated frames, oldest first."""
    size: int
    labels: list[torch.Tensor] = field(default_factory=list)  # each (B, C, H, W)
    images: list[torch.Tensor] = field(default_factory=list)  # each (B, 3, H, W)
    landmarks: list[torch.Tensor | None] = field(default_factory=list)  # each (68, 2) or None: the face's

    def push(self, label: torch.Tensor, image: torch.Tensor, landmarks: torch.Tensor | None = None) -> None:
        if self.size == 0:  # a per-frame model (num_prev_frames 0) keeps nothing
            return
        self.labels = (self.labels + [label])[-self.size:]
        self.images = (self.images + [image])[-self.size:]
        self.landmarks = (self.landmarks + [landmarks])[-self.size:]


def unwrap(generator: torch.nn.Module) -> torch.nn.Module:
    """The generator itself, inside a data-parallel (`.module`) or torch.compile (`._orig_mod`) wrapper."""
    for attribute in ("module", "_orig_mod"):
        generator = getattr(generator, attribute, generator)
    return generator


def is_few_shot(generator: torch.nn.Module) -> bool:
    return isinstance(unwrap(generator), FewShotGenerator)


def feeds_back(generator: torch.nn.Module, task: str) -> bool:
    """Whether rendering feeds each output back as the previous frame by default: not for few-shot face models,
    which make every frame from the references (fed back, a real face smears: docs/RESULTS.md, study 9, run 3)."""
    return not (is_few_shot(generator) and task == "face")


REFERENCE_WARPS = ("landmarks", "network")


def reference_warp_for(generator: torch.nn.Module, task: str) -> str:
    """How a reference is warped onto the driving frame by default: by the landmarks for few-shot face models
    (their flow network barely moves a real photo's mouth and head: docs/RESULTS.md, study 9, run 4), else by the
    flow network."""
    return "landmarks" if is_few_shot(generator) and task == "face" else "network"


def size_multiple(generator: torch.nn.Module) -> int:
    """Frame heights and widths must be multiples of this: the generator halves them this many times."""
    cfg = unwrap(generator).cfg
    return 2 ** (cfg.num_downsamples if is_few_shot(generator) else cfg.num_layers)


def new_history(generator: torch.nn.Module) -> History:
    return History(unwrap(generator).cfg.num_prev_frames)


def warp_branches(out: FrameOutput | Vid2VidOutput) -> tuple[list, list, list]:
    """A frame's (flows, occlusion masks, warped sources), each as [reference, previous], for either generator
    (vid2vid has no reference branch; None where a branch is absent, as on a first frame)."""
    if isinstance(out.fake_flow_maps, list):  # few-shot
        return out.fake_flow_maps, out.fake_occlusion_masks, out.warped_images
    return [None, out.fake_flow_maps], [None, out.fake_occlusion_masks], [None, out.warped_images]


def step(generator: torch.nn.Module, label: torch.Tensor, history: History, refs: References | None = None,
         landmarks: torch.Tensor | None = None) -> FrameOutput | Vid2VidOutput:
    """One frame. landmarks (68, 2), the driving face's in output pixels, with face references that carry theirs:
    the reference is warped onto the face by the landmarks (teacher_flow.landmark_flows), the flow network only
    around it; (67, 3) a driving person's keypoints, likewise with pose references. For a vid2vid model, with the
    previous frame's landmarks in the history, the previous output is warped so."""
    prev_labels = torch.stack(history.labels, dim=1) if history.labels else None
    prev_images = torch.stack(history.images, dim=1) if history.images else None
    if is_few_shot(generator):
        if refs is None:
            raise ValueError("few-shot vid2vid needs reference images")
        ref_flow = None
        if landmarks is not None and (refs.face_landmarks is not None or refs.keypoints is not None):
            from vid2vid.data.teacher_flow import keypoint_flows, landmark_flows

            size = tuple(label.shape[-2:])
            if refs.face_landmarks is not None:
                flows, weights = landmark_flows(landmarks, refs.face_landmarks[0], size)
            else:
                flows, weights = keypoint_flows(landmarks, refs.keypoints[0], size)
            ref_flow = (flows[None].to(label.device), weights[None].to(label.device))
        return generator(label, refs.labels, refs.images, prev_labels, prev_images, ref_flow=ref_flow)
    prev_flow = None
    if landmarks is not None and history.landmarks and history.landmarks[-1] is not None and prev_images is not None:
        from vid2vid.data.teacher_flow import landmark_flows

        flows, weights = landmark_flows(landmarks, history.landmarks[-1][None], tuple(label.shape[-2:]))
        prev_flow = (flows.to(label.device), weights.to(label.device))
    return generator(label, prev_labels, prev_images, prev_flow=prev_flow)
