"""Study 6: a real photo of a person as the one reference, re-posed by a built-in motion.

For each photo (scikit-image's astronaut and camera by default, or files given with --photo), each model and
fine-tuning off / on, the photo is the K = 1 reference of `vid2vid generate` driven by a built-in motion (held-out
dancer 1001's, 32 frames at 64x64, never trained on), and the output is scored as `vid2vid evaluate` scores pose:
- pose found: the share of output frames on which MediaPipe finds a person;
- pose error: the mean distance of its body points to the driving pose, as a fraction of the frame height, over
  the frames where one is found (the ground truth of the same motion is scored alike, for scale);
- colours: the photo's person and backdrop are told apart by MediaPipe's person segmentation; the output's person
  pixels likewise (frames upscaled 4x for it, else the driving pose's drawn pixels); each set becomes a colour
  histogram (4 x 4 x 4 RGB bins) and the output person's is compared with the photo person's and the photo
  backdrop's by histogram intersection (1: the same colours, 0: none shared). The output wears the photo person's
  colours when the first is the larger.

    python studies/study6_real_photos.py --model before=OLD_MODEL_DIR --model after=src/vid2vid/shipped/dancers_cpu

Results: studies/results/real_photos/table.md (and .json), strips of frames per photo and model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from common import HELD_OUT_INDEX, RESULTS, synth, threads

from vid2vid.data import samples
from vid2vid.data.datasets import VideoClips
from vid2vid.data.layout import scan
from vid2vid.data.video import read_image, write_image
from vid2vid.evaluate import KeypointDetector, PersonColours, keypoint_distance
from vid2vid.generate import data_config_for, generate, load_for_inference

OUT = RESULTS / "real_photos"
SIZE = (64, 64)
FRAMES = 32
MOTION = HELD_OUT_INDEX + 1


def driving_items(checkpoint: str, root: Path) -> list[dict]:
    model = load_for_inference(checkpoint, torch.device("cpu"))
    cfg = data_config_for(checkpoint, model, None)
    return list(VideoClips(root, cfg).stream(scan(root, cfg.task)[0]))


def score(frames: list[np.ndarray], items: list[dict], detector: KeypointDetector) -> dict:
    errors = []
    for frame, item in zip(frames, items, strict=True):
        found = detector(frame)
        distance = None if found is None else keypoint_distance(found, item["keypoints"].numpy())
        if distance is not None:
            errors.append(distance / frame.shape[0])
    return {"pose_found": len(errors) / len(frames), "pose_error": float(np.mean(errors)) if errors else None}


def strip(frames: list[np.ndarray], picks: list[int]) -> np.ndarray:
    return np.concatenate([frames[i] for i in picks], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="a few-shot checkpoint to score (repeat: before=..., after=...)")
    parser.add_argument("--photo", action="append", type=Path, help="photo files (default: astronaut, camera)")
    parser.add_argument("--finetune", type=int, default=100, help="steps of the fine-tuned arms (0: none)")
    parser.add_argument("--augment", nargs="+", default=["roll", "photo"], help="fine-tuning augmentations")
    parser.add_argument("--backdrops", nargs="+", default=["photo"], choices=["photo", "plain"],
                        help="reference photo as it is, and/or its person on a plain wall (--reference-backdrop)")
    parser.add_argument("--no-feedback", action="store_true",
                        help="every frame from the photo alone, not from the previous output (generate --no-feedback)")
    parser.add_argument("--reference-warp", choices=["landmarks", "network"], default="network",
                        help="warp the photo onto the driving pose by the keypoints (a thin-plate spline on the "
                             "body) or by the flow network (generate --reference-warp)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    threads()
    photos = {p.stem: p for p in args.photo} if args.photo else {n: samples.photo_path(n) for n in samples.PEOPLE}
    models = dict(m.split("=", 1) for m in args.model)
    out = args.out
    driving = synth("dancers", out / "data" / "driving", sequences=1, frames=FRAMES, size=SIZE, first_index=MOTION)
    detector, colours = KeypointDetector("pose"), PersonColours()
    truth = [read_image(p) for p in scan(driving, "pose")[0].files["images"]]
    items = driving_items(next(iter(models.values())), driving)
    rows = [{"photo": "ground truth", "model": "-", "backdrop": "-", "finetune": 0, "augment": "-",
             **score(truth, items, detector)}]
    picks = np.linspace(0, FRAMES - 1, 6).round().astype(int).tolist()
    strips = {}
    for photo_name, photo_path in photos.items():
        photo = read_image(photo_path)
        for model_name, checkpoint in models.items():
            arms = [(b, 0, "-") for b in args.backdrops]
            arms += [(b, args.finetune, a) for b in args.backdrops for a in args.augment if args.finetune]
            for backdrop, steps, augment in arms:
                name = (f"{photo_name}_{model_name}_ft{steps}" + (f"_{augment}" if steps else "")
                        + ("_plain" if backdrop == "plain" else "") + ("_nofeedback" if args.no_feedback else "")
                        + ("_keypointwarp" if args.reference_warp == "landmarks" else ""))
                arm = out / "arms" / name
                if not (arm / "frames").is_dir():
                    arm.mkdir(parents=True, exist_ok=True)
                    generate(checkpoint, driving, arm / "result.mp4", [photo_path], frames_dir=arm / "frames",
                             finetune_steps=steps, finetune_augment="roll" if augment == "-" else augment,
                             reference_backdrop=backdrop, overwrite=True, progress=False,
                             feedback=not args.no_feedback, reference_warp=args.reference_warp)
                frames = [read_image(p) for p in sorted((arm / "frames").glob("*.png"))]
                row = {"photo": photo_name, "model": model_name, "backdrop": backdrop, "finetune": steps,
                       "augment": augment,
                       **score(frames, items, detector), **colours.match(photo, frames, [i["label"] for i in items])}
                rows.append(row)
                print(json.dumps(row))
                strips[name] = strip(frames, picks)
        labels = [((i["label"][3:].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8) for i in items]
        reference = cv2.resize(photo, (SIZE[1] * photo.shape[1] // photo.shape[0], SIZE[0]),
                               interpolation=cv2.INTER_AREA)
        rows_of = [strip(labels, picks)] + [strips[k] for k in strips if k.startswith(photo_name + "_")]
        width = max(r.shape[1] for r in rows_of + [reference])
        picture = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                  for r in [reference] + rows_of])
        write_image(out / f"strip_{photo_name}.png", picture)
    (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| photo | model | backdrop | fine-tuning (augmentation) | pose found | pose error | "
             "colours: person / backdrop |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        error = "-" if r["pose_error"] is None else f"{r['pose_error']:.3f}"
        colour = "-" if "person_match" not in r else f"{r['person_match']:.2f} / {r['backdrop_match']:.2f}"
        tuning = f"{r['finetune']} ({r['augment']})" if r["finetune"] else "0"
        lines.append(f"| {r['photo']} | {r['model']} | {r['backdrop']} | {tuning} | {100 * r['pose_found']:.0f}% | "
                     f"{error} | {colour} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
