"""Study 5: the sequential few-shot generator against a per-frame one, on dancers never seen in training.

Study 1's question on the other kind of data: does warping the previous output (with the temporal D and the
temporal L1 term) flicker less than making every frame on its own, at equal image quality? Both arms train the
train_dancers_cpu recipe (K drawn per batch from 1..4, the paper's linear blend) for the same iterations on 200
identities, with clips of 3 frames; the per-frame arm has num_prev_frames 0 (it still warps the reference), no
temporal D and no temporal L1. The "imaginaire form" arms are the same with imaginaire's SPADE combination of the
warped images. Scored on identities 1000-1003 doing the motions of 1050-1053, K = 2 references from another video.

    python studies/study5_temporal_dancers.py data         synthesize the data
    python studies/study5_temporal_dancers.py arm NAME     train and score one arm (after `data`, both at once)
    python studies/study5_temporal_dancers.py table         the table and plot of the arms finished so far
    python studies/study5_temporal_dancers.py               every arm, then the table
"""

import json
import sys

from common import HELD_OUT_INDEX, RESULTS, configure, plot_bars, run_arm, synth, threads

OUT = RESULTS / "temporal_dancers"
SIZE = (64, 64)
ITERATIONS = 300
PER_FRAME = {"discriminator.temporal": {"enabled": False}, "loss.weights": {"temporal_l1": 0.0}, "data.clip_length": 3}
SPADE = {"temporal_combine": "spade"}  # imaginaire's form: the warped images enter the decoder through SPADE
ARMS = {
    "few-shot vid2vid": {"data.clip_length": 3},
    "per-frame": {"generator": {"num_prev_frames": 0}, **PER_FRAME},
    "few-shot vid2vid, imaginaire form": {"generator": SPADE, "data.clip_length": 3},
    "per-frame, imaginaire form": {"generator": {"num_prev_frames": 0, **SPADE}, **PER_FRAME},
}


def data():
    """Training identities, the held-out identities' own videos (references) and their unseen motions."""
    return (synth("dancers", OUT / "data" / "train", sequences=200, frames=16, size=SIZE),
            synth("dancers", OUT / "data" / "references", sequences=4, frames=16, size=SIZE,
                  first_index=HELD_OUT_INDEX),
            synth("dancers", OUT / "data" / "heldout", sequences=4, frames=16, size=SIZE,
                  first_index=HELD_OUT_INDEX, motion_offset=50))


def arm(name: str) -> dict:
    train_root, refs, held_out = data()
    cfg = configure("train_dancers_cpu", train_root, ITERATIONS, **ARMS[name])
    cfg.schedule.double_clip_every = 0  # 3-frame clips throughout
    return run_arm(name, cfg, OUT, held_out, references=refs, ks=[2])


if __name__ == "__main__":
    threads()
    if sys.argv[1:] == ["data"]:
        data()
        sys.exit()
    if len(sys.argv) == 3 and sys.argv[1] == "arm":
        arm(sys.argv[2])
        sys.exit()
    if sys.argv[1:] == ["table"]:
        reports = {name: json.loads(path.read_text()) for name in ARMS
                   if (path := OUT / "reports" / name / "metrics.json").is_file()}
    else:
        reports = {name: arm(name) for name in ARMS}
    scores = {name: {"PSNR (dB)": r["results"]["K=2"]["psnr"], "SSIM": r["results"]["K=2"]["ssim"],
                     "warping error": r["results"]["K=2"]["warping_error"]} for name, r in reports.items()}
    plot_bars(OUT / "study5.png", "few-shot vid2vid against per-frame, unseen dancers (K = 2)", scores, "")
    table = {name: {**scores[name], "training minutes": r["training"]["minutes"]} for name, r in reports.items()}
    table["ground truth"] = {"warping error": next(iter(reports.values()))["ground_truth"]["warping_error"]}
    (OUT / "study5.json").write_text(json.dumps(table, indent=2) + "\n")
    print(json.dumps(table, indent=2))
