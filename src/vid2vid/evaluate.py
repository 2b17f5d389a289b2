"""`vid2vid evaluate`: render held-out sequences and score them against their ground truth.

For each sequence of a prepared dataset the checkpoint renders the driving labels (few-shot models from K
reference frames, for every K asked for) and the frames are scored: PSNR and SSIM, the temporal warping error,
the pose error (keypoints detected on the results by the detector `prepare` uses, against the driving
keypoints), and FID / FVD where their feature networks are given. REPORT_DIR gets `metrics.json`, a
self-contained `report.html` (plots and frame strips inlined) and the pictures as PNG files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from vid2vid import fid, metrics
from vid2vid.data import DataError
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.layout import Sequence, scan
from vid2vid.data.video import write_image
from vid2vid.device import pick_device, pick_precision
from vid2vid.files import atomic_write_bytes, check_output_folder, refuse_overlap, replace_folder
from vid2vid.generate import data_config_for, generate_frames, label_to_uint8, load_for_inference, to_uint8
from vid2vid.step import is_few_shot, references_of


@dataclass
class Rendered:
    """One rendered sequence: uint8 RGB frames and what they are scored against."""
    name: str
    results: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    points: list[np.ndarray | None] = field(default_factory=list)  # driving keypoints/landmarks, output pixels
    references: list[np.ndarray] = field(default_factory=list)


def reference_indices(length: int, k: int) -> list[int]:
    """K frames spread evenly over a sequence of given length, the first one included."""
    if k > length:
        raise DataError(f"K = {k} references asked for, but the reference sequence has {length} frames")
    return [round(i * (length - 1) / k) for i in range(k)]


def reference_sequence(candidates: list[Sequence], name: str) -> Sequence | None:
    """The sequence of the same name, else the longest whose name starts the driving one's: references of
    `dancers0100` serve the driving sequence `dancers0100_motion0101` (the same person in another video)."""
    exact = next((s for s in candidates if s.name == name), None)
    if exact is not None:
        return exact
    prefixes = [s for s in candidates if name.startswith(s.name + "_")]
    return max(prefixes, key=lambda s: len(s.name), default=None)


def render_sequence(model, cfg: DataConfig, root: Path, sequence: Sequence, k: int | None,
                    reference_root: Path | None, device: torch.device, amp_dtype=None,
                    max_frames: int | None = None, tune: Callable | None = None, landmark_warp: bool = False
                    ) -> Rendered:
    """Render one driving sequence. Few-shot references are K frames of the matching sequence (see
    reference_sequence) in reference_root, or of the driving sequence itself; tune(model, references), when
    given, returns the model to render with (fine-tuned on those references)."""
    rendered = Rendered(sequence.name)
    refs = None
    if k is not None:
        ref_root = reference_root or root
        ref_sequence = reference_sequence(scan(ref_root, cfg.task), sequence.name)
        if ref_sequence is None:
            raise DataError(f"{ref_root}: no sequence {sequence.name} (or a prefix of it) to take references from")
        ref_labels, ref_images, ref_keypoints = VideoClips(ref_root, cfg).references(
            ref_sequence, reference_indices(len(ref_sequence), k))
        refs = references_of(ref_labels, ref_images, ref_keypoints, cfg.task)
        rendered.references = [to_uint8(x) for x in ref_images]
        if tune is not None:
            model = tune(model, refs.to(device))
    stream = VideoClips(root, cfg).stream(sequence, max_frames)
    for result, item in generate_frames(model, stream, refs, device, amp_dtype, landmark_warp=landmark_warp):
        rendered.results.append(result)
        rendered.truths.append(to_uint8(item["image"]))
        rendered.labels.append(label_to_uint8(item["label"]))
        points = item.get("keypoints", item.get("landmarks"))
        rendered.points.append(None if points is None else points.numpy())
    return rendered


def frame_strip(rendered: Rendered, columns: int = 6) -> np.ndarray:
    """Rows driving labels / result / ground truth at evenly spaced frames; then the references."""
    picks = np.linspace(0, len(rendered.results) - 1, min(columns, len(rendered.results))).round().astype(int)
    blocks = [np.concatenate([rendered.labels[i], rendered.results[i], rendered.truths[i]], axis=0) for i in picks]
    h, w = rendered.results[0].shape[:2]
    gap = np.full((3 * h, 4, 3), 255, np.uint8)
    strip = np.concatenate(blocks, axis=1)
    if not rendered.references:
        return strip
    refs = rendered.references[:3] + [np.full((h, w, 3), 255, np.uint8)] * (3 - min(3, len(rendered.references)))
    return np.concatenate([strip, gap, np.concatenate(refs, axis=0)], axis=1)


# ------------------------------------------------------------------------------------ keypoint detection


class KeypointDetector:
    """The detector `prepare` uses, on generated frames: body points (pose) or dlib-68 landmarks (face)."""

    def __init__(self, task: str):
        from vid2vid.data.keypoints import FaceExtractor, PoseExtractor

        self.task = task
        self._detector = PoseExtractor() if task == "pose" else FaceExtractor()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(N, 3) points (x, y, confidence > 0 where found), or None where nobody is found."""
        if self.task == "face":
            found = self._detector(image)
            return None if found is None else np.concatenate([found, np.ones((len(found), 1))], axis=1)
        people = self._detector(image)
        if not people:
            return None
        return np.asarray(people[0]["pose_keypoints_2d"], np.float64).reshape(-1, 3)

    def close(self) -> None:
        self._detector.close()


class PersonColours:
    """Whether a rendered person wears a photo person's colours: MediaPipe's person segmentation splits the photo
    into person and backdrop and finds the person on each output frame (upscaled 4x: it was made for larger
    pictures; on a frame where it finds under 2% of the pixels, the driving pose's drawn pixels stand in). Each
    pixel set becomes a colour histogram (BINS^3 RGB bins, summing to 1), and the output person's is compared with
    the photo person's and the photo backdrop's by histogram intersection: 1 for the same colours, 0 for none
    shared."""

    BINS = 4

    def __init__(self):
        from vid2vid.data.detector import person_segmenter

        self._segmenter = person_segmenter()

    def mask(self, image: np.ndarray, upscale: int = 1) -> np.ndarray:
        h, w = image.shape[:2]
        picture = cv2.resize(image, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
        found = self._segmenter.process(np.ascontiguousarray(picture)).segmentation_mask
        return cv2.resize(found, (w, h), interpolation=cv2.INTER_AREA) > 0.5

    @classmethod
    def histogram(cls, pixels: np.ndarray) -> np.ndarray:
        bins = (pixels.reshape(-1, 3).astype(np.int64) * cls.BINS) // 256
        index = (bins[:, 0] * cls.BINS + bins[:, 1]) * cls.BINS + bins[:, 2]
        counts = np.bincount(index, minlength=cls.BINS ** 3).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    def match(self, photo: np.ndarray, frames: list[np.ndarray], labels: list[torch.Tensor]) -> dict:
        """person_match and backdrop_match (histogram intersections of the output person's colours with the photo
        person's and backdrop's) and person_segmented (the share of frames on which the output person was
        segmented). labels: the driving pose labels (C, H, W) of the frames, channels 3.. the OpenPose map."""
        person = self.mask(photo)
        if not person.any() or person.all():
            raise ValueError("the photo's person cannot be told from its backdrop")
        pixels, segmented = [], 0
        for frame, label in zip(frames, labels, strict=True):
            mask = self.mask(frame, upscale=4)
            if mask.mean() >= 0.02:
                segmented += 1
            else:
                drawn = (label[3:] > -1).any(0).numpy().astype(np.uint8)
                mask = cv2.dilate(drawn, np.ones((3, 3), np.uint8)) > 0
            pixels.append(frame[mask])
        out = self.histogram(np.concatenate(pixels))
        return {"person_match": float(np.minimum(out, self.histogram(photo[person])).sum()),
                "backdrop_match": float(np.minimum(out, self.histogram(photo[~person])).sum()),
                "person_segmented": segmented / len(frames)}

    def close(self) -> None:
        self._segmenter.close()


def keypoint_distance(detected: np.ndarray, driving: np.ndarray) -> float | None:
    """Mean pixel distance over points present in both (driving pose points are BODY_25 first)."""
    driving = np.asarray(driving, np.float64)
    if driving.shape[1] == 2:
        driving = np.concatenate([driving, np.ones((len(driving), 1))], axis=1)
    n = min(len(detected), len(driving))
    both = (detected[:n, 2] > 0) & (driving[:n, 2] > 0)
    if not both.any():
        return None
    return float(np.linalg.norm(detected[:n][both, :2] - driving[:n][both, :2], axis=1).mean())


def pose_distances(detector: KeypointDetector, frames: list[np.ndarray], driving: list[np.ndarray | None],
                   frame_height: int) -> list[float]:
    """Keypoint error of each frame where the detector finds a person, as a fraction of the frame height."""
    distances = []
    for frame, points in zip(frames, driving, strict=True):
        found = detector(frame) if points is not None else None
        distance = None if found is None else keypoint_distance(found, points)
        if distance is not None:
            distances.append(distance / frame_height)
    return distances


# ---------------------------------------------------------------------------------------------- scoring


class Scorer:
    """Accumulates every metric for one K over the sequences."""

    def __init__(self, inception, i3d, detector: KeypointDetector | None, device: torch.device):
        self.inception, self.i3d, self.detector, self.device = inception, i3d, detector, device
        self.psnr, self.ssim, self.warp, self.pose, self.frames = [], [], [], [], 0
        self.detected = 0
        self.fid_stats, self.fvd_stats = fid.FeatureStats(), fid.FeatureStats()
        self.per_sequence = {}

    def add(self, rendered: Rendered, frame_height: int) -> None:
        psnr = [metrics.psnr(r, t) for r, t in zip(rendered.results, rendered.truths, strict=True)]
        ssim = [metrics.ssim(r, t) for r, t in zip(rendered.results, rendered.truths, strict=True)]
        warp = metrics.warping_error(rendered.results, rendered.truths)
        self.psnr += psnr
        self.ssim += ssim
        self.warp.append(warp)
        self.frames += len(psnr)
        entry = {"frames": len(psnr), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
                 "warping_error": warp, "psnr_per_frame": psnr}
        if self.detector is not None:
            distances = pose_distances(self.detector, rendered.results, rendered.points, frame_height)
            self.pose += distances
            self.detected += len(distances)
            entry["pose_error"] = float(np.mean(distances)) if distances else None
        if self.inception is not None:
            self.fid_stats.add(features(self.inception, rendered.results, self.device))
        if self.i3d is not None:
            for clip in clips_of(rendered.results):
                self.fvd_stats.add(fid.i3d_features(self.i3d, to_batch(clip, self.device)[None]))
        self.per_sequence[rendered.name] = entry

    def summary(self, real_fid: fid.FeatureStats | None, real_fvd: fid.FeatureStats | None) -> dict:
        out = {"frames": self.frames, "psnr": float(np.mean(self.psnr)), "ssim": float(np.mean(self.ssim)),
               "warping_error": float(np.mean(self.warp))}
        if self.detector is not None:
            out["pose_error"] = float(np.mean(self.pose)) if self.pose else None
            out["pose_detected"] = self.detected / max(1, self.frames)
        if real_fid is not None:
            out["fid"] = fid.stats_distance(real_fid, self.fid_stats)
        if real_fvd is not None:
            out["fvd"] = fid.stats_distance(real_fvd, self.fvd_stats) if self.fvd_stats.count >= 2 else None
            out["fvd_clips"] = self.fvd_stats.count
        out["sequences"] = self.per_sequence
        return out


def to_batch(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def features(inception, frames: list[np.ndarray], device: torch.device, batch: int = 16) -> torch.Tensor:
    return torch.cat([inception(to_batch(frames[i:i + batch], device)) for i in range(0, len(frames), batch)])


def clips_of(frames: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """Consecutive, non-overlapping FVD clips; a shorter tail is left out."""
    for start in range(0, len(frames) - fid.FVD_CLIP_LENGTH + 1, fid.FVD_CLIP_LENGTH):
        yield frames[start:start + fid.FVD_CLIP_LENGTH]


# ----------------------------------------------------------------------------------------------- report


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plots(results: dict) -> dict[str, bytes]:
    """PNG plots: per-frame PSNR of every sequence, and the scores against K where several K were run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = {}
    figure, axis = plt.subplots(figsize=(7, 3.2))
    for key, summary in results.items():
        for name, entry in summary["sequences"].items():
            axis.plot(entry["psnr_per_frame"], label=f"{key} {name}" if key != "all" else name)
    axis.set_xlabel("frame")
    axis.set_ylabel("PSNR (dB)")
    axis.set_title("PSNR per frame")
    axis.grid(alpha=0.3)
    if sum(len(s["sequences"]) for s in results.values()) <= 12:
        axis.legend(fontsize=7)
    pictures["psnr_per_frame.png"] = _png(figure)
    plt.close(figure)
    if len(results) > 1:
        ks = sorted({r["K"] for r in results.values()})
        tunings = sorted({r.get("finetune_steps", 0) for r in results.values()})
        names = [m for m in ("psnr", "ssim", "warping_error", "pose_error", "fid", "fvd")
                 if all(results[k].get(m) is not None for k in results)]
        figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3))
        for axis, name in zip(np.atleast_1d(axes), names, strict=True):
            for steps in tunings:  # one line per number of fine-tuning steps
                runs = sorted((r["K"], r[name]) for r in results.values() if r.get("finetune_steps", 0) == steps)
                axis.plot(*zip(*runs, strict=True), marker="o",
                          label=f"fine-tuned {steps} steps" if len(tunings) > 1 else None)
            axis.set_xticks(ks)
            axis.set_xlabel("K (reference images)")
            axis.set_title(name.replace("_", " "))
            axis.grid(alpha=0.3)
            if len(tunings) > 1:
                axis.legend(fontsize=7)
        figure.tight_layout()
        pictures["scores_against_k.png"] = _png(figure)
        plt.close(figure)
    return pictures


def _inline(name: str, data: bytes) -> str:
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>')


def report_html(report: dict, pictures: dict[str, bytes]) -> str:
    columns = [("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("warping_error", "warping error ↓"),
               ("pose_error", "pose error ↓"), ("pose_detected", "pose found"), ("fid", "FID ↓"),
               ("fvd", "FVD ↓")]
    shown = [(key, title) for key, title in columns if any(key in s for s in report["results"].values())]

    def cell(value):
        return "n/a" if value is None else f"{value:.4g}"

    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{s['frames']}</td>"
                   + "".join(f"<td>{cell(s.get(key))}</td>" for key, _ in shown) + "</tr>"
                   for k, s in report["results"].items())
    head = "<tr><th></th><th>frames</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in shown) + "</tr>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"])
    truth = report["ground_truth"]
    truth_pose = (f", pose error {cell(truth['pose_error'])} (found on {cell(truth['pose_detected'])} of the frames)"
                  if "pose_error" in truth else "")
    figures = "".join(_inline(name, data) for name, data in pictures.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vid2vid evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; image-rendering: pixelated; }}
figcaption {{ color: #666; font-size: 90%; }} code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>vid2vid evaluation</h1>
<p>Checkpoint <code>{html.escape(report["checkpoint"])}</code> on <code>{html.escape(report["data"])}</code>
({report["sequences"]} sequences, {report["size"][0]}x{report["size"][1]}).</p>
<table>{head}{rows}</table>
<p>The ground truth's own scores (the floors): warping error {cell(truth["warping_error"])}{truth_pose}.
{html.escape(report["units"])}</p>
<ul>{notes}</ul>
{figures}
</body></html>
"""


# ------------------------------------------------------------------------------------------------- main


def finetuning_note(tunings: list[int], lr: float | None, adversarial: bool) -> str:
    """What the fine-tuning of this evaluation did, in the words of metrics.json."""
    from vid2vid.finetune import DEFAULT_LR

    update = ("the discriminators, then the generator, with the recipe's losses" if adversarial else
              "the generator alone, L1 in place of the adversarial terms")
    steps = ", ".join(str(n) for n in tunings if n)
    return (f"fine-tuning: a copy of the model tuned for {steps} steps on each sequence's references before "
            "rendering it (vid2vid.finetune: at each step one reference drawn at random is the target, rolled and "
            f"flipped, with all K references as the few-shot set; one update of {update}, learning rate "
            f"{lr or DEFAULT_LR:g}; seconds per sequence in the results)")


def evaluate(checkpoint: str | Path, data: str | Path, out: str | Path, ks: list[int] | None = None, *,
             references: str | Path | None = None, sequences: list[str] | None = None,
             max_frames: int | None = None, size: tuple[int, int] | None = None,
             inception: str | Path | None = None, i3d: str | Path | None = None, pose_error: bool = True,
             overwrite: bool = False, device: str = "auto", progress: bool = True,
             finetune_steps: list[int] | None = None, finetune_lr: float | None = None,
             finetune_adversarial: bool = False, seed: int = 0, landmark_warp: bool = False) -> dict:
    """Score a checkpoint on held-out sequences, for each K (few-shot) and each number of fine-tuning steps
    (finetune_steps, e.g. [0, 100]: with and without, one report; a model is tuned per sequence on its
    references). landmark_warp: warp the reference (few-shot) or the previous output (vid2vid) onto each face or
    person by its landmarks (generate --reference-warp landmarks)."""
    out, data = Path(out), Path(data)
    refuse_overlap([("report folder", out)], [("data", data), ("references", references), ("checkpoint", checkpoint),
                                              ("Inception weights", inception), ("I3D", i3d)])
    check_output_folder(out, overwrite, "report")
    reference_root = Path(references) if references is not None else None
    torch_device = pick_device(device)
    amp = pick_precision("auto", torch_device)
    inception_net = fid.load_inception(inception, torch_device) if inception else None
    i3d_net = fid.load_i3d(i3d, torch_device) if i3d else None
    model = load_for_inference(checkpoint, torch_device)
    cfg = data_config_for(checkpoint, model, size)
    chosen = [s for s in scan(data, cfg.task) if not sequences or s.name in sequences]
    if sequences and len(chosen) < len(set(sequences)):
        missing = sorted(set(sequences) - {s.name for s in chosen})
        raise DataError(f"{data}: no sequence {', '.join(missing)}")
    few_shot = is_few_shot(model)
    if few_shot:
        ks = sorted(set(ks or [1]))
        if min(ks) < 1:
            raise ValueError(f"K must be at least 1, got {min(ks)}")
    elif ks:
        raise ValueError("--K is for few-shot models; this checkpoint is a vid2vid model")
    tunings = sorted(set(finetune_steps or [0]))
    if min(tunings) < 0:
        raise ValueError(f"--finetune takes numbers of steps, 0 or more, got {min(tunings)}")
    if max(tunings) > 0 and not few_shot:
        raise ValueError("--finetune is for few-shot models; this checkpoint is a vid2vid model")

    notes = []
    if few_shot:
        notes.append(f"references: K frames spread evenly over the sequence of the same name (or its prefix "
                     f"before _) in {reference_root}" if reference_root else
                     "references: K frames spread evenly over the evaluated sequence itself (those frames are "
                     "also scored; give --references for held-out reference frames)")
    detector = None
    if pose_error and cfg.task in ("pose", "face"):
        from vid2vid.data.detector import MissingExtra

        try:
            detector = KeypointDetector(cfg.task)
        except MissingExtra as e:
            notes.append(f"pose error left out: {e}")
        else:
            notes.append("pose error: mean distance between the keypoints the prepare detector finds on the "
                         "results and the driving keypoints, as a fraction of the frame height, over frames "
                         "where a person is found ('pose found')")
    if inception_net is None:
        notes.append("FID left out: no --inception weights given (pytorch-fid's pt_inception-2015-12-05 file)")
    if i3d_net is None:
        notes.append("FVD left out: no --i3d network given (a TorchScript I3D as the common FVD tools use)")

    from tqdm import tqdm

    results, strips = {}, {}
    real_fid = fid.FeatureStats() if inception_net is not None else None
    real_fvd = fid.FeatureStats() if i3d_net is not None else None
    truth_warp, truth_pose = [], []
    runs = [(f"K={k}" + (f" finetune={n}" if len(tunings) > 1 or n else ""), k, n) for k in ks for n in tunings] \
        if few_shot else [("all", None, 0)]
    tuning_seconds: dict[str, list[float]] = {}
    if max(tunings) > 0:
        notes.append(finetuning_note(tunings, finetune_lr, finetune_adversarial))

    def tuner(key: str, steps: int):
        if not steps:
            return None
        from vid2vid.finetune import finetune_checkpoint_model

        def tune(model, refs):
            result = finetune_checkpoint_model(checkpoint, model, refs, steps, lr=finetune_lr, amp_dtype=amp,
                                               seed=seed, adversarial=finetune_adversarial,
                                               notice=None if tuning_seconds else notes.append)
            tuning_seconds.setdefault(key, []).append(result.seconds)
            return result.model
        return tune

    try:
        with tqdm(total=len(runs) * len(chosen), desc="evaluate", unit="sequence", disable=not progress) as bar:
            for run_index, (key, k, steps) in enumerate(runs):
                scorer = Scorer(inception_net, i3d_net, detector, torch_device)
                for sequence in chosen:
                    rendered = render_sequence(model, cfg, data, sequence, k, reference_root, torch_device, amp,
                                               max_frames, tuner(key, steps), landmark_warp)
                    scorer.add(rendered, cfg.size[0])
                    if run_index == 0:  # the ground truth's own statistics, once
                        truth_warp.append(metrics.warping_error(rendered.truths, rendered.truths))
                        if detector is not None:
                            truth_pose.append(pose_distances(detector, rendered.truths, rendered.points,
                                                             cfg.size[0]))
                        if real_fid is not None:
                            real_fid.add(features(inception_net, rendered.truths, torch_device))
                        if real_fvd is not None:
                            for clip in clips_of(rendered.truths):
                                real_fvd.add(fid.i3d_features(i3d_net, to_batch(clip, torch_device)[None]))
                    if sequence is chosen[0]:
                        strips[f"frames_{key.replace('=', '').replace(' ', '_')}.png"] = frame_strip(rendered)
                    bar.update(1)
                if real_fid is not None and real_fid.count < 2:
                    raise DataError(f"{data}: FID needs at least 2 frames")
                results[key] = scorer.summary(real_fid, real_fvd if real_fvd and real_fvd.count >= 2 else None)
                results[key]["K"] = k
                if steps:
                    results[key]["finetune_steps"] = steps
                    results[key]["finetune_seconds_per_sequence"] = float(np.mean(tuning_seconds[key]))
    finally:
        if detector is not None:
            detector.close()
    if real_fvd is not None and real_fvd.count < 2:
        notes.append(f"FVD left out: fewer than 2 clips of {fid.FVD_CLIP_LENGTH} frames in the data")

    report = {
        "checkpoint": str(checkpoint), "data": str(data), "model": "fs_vid2vid" if few_shot else "vid2vid",
        "sequences": len(chosen), "size": list(cfg.size), "results": results,
        # The floors: the metrics of the ground truth itself (the detector's own error, the flow's residual).
        "ground_truth": {"warping_error": float(np.mean(truth_warp))},
        "units": "PSNR in dB; SSIM in [0, 1]; warping error in intensity levels of 255 (lower is steadier); "
                 "pose error as a fraction of the frame height",
        "notes": notes,
    }
    if detector is not None:
        found = [d for sequence in truth_pose for d in sequence]
        report["ground_truth"]["pose_error"] = float(np.mean(found)) if found else None
        report["ground_truth"]["pose_detected"] = len(found) / max(1, sum(s["frames"] for s in
                                                                          results[runs[0][0]]["sequences"].values()))
    pictures = plots(results)
    write_report(out, report, pictures, strips, overwrite)
    return report


def write_report(out: Path, report: dict, pictures: dict[str, bytes], strips: dict[str, np.ndarray],
                 overwrite: bool) -> None:
    """Everything is written to a hidden folder beside out, then renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, strip in strips.items():
            write_image(tmp / name, strip)
        for name, data in pictures.items():
            (tmp / name).write_bytes(data)
        inlined = dict(pictures)
        for name in strips:
            inlined[name] = (tmp / name).read_bytes()
        atomic_write_bytes(tmp / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
        (tmp / "report.html").write_text(report_html(report, inlined), encoding="utf-8")
        if out.exists() and not overwrite and any(out.iterdir()):
            raise FileExistsError(f"{out}: holds files (use --overwrite to replace them)")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
