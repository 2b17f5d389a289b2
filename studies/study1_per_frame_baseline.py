"""Study 1: vid2vid against a per-frame baseline on held-out built-in street sequences.

The paper's claim: the sequential generator (flow, warping, previous frames, temporal D) flickers less than
per-frame synthesis, at equal or better image quality. Every arm trains the train_street_cpu recipe (the paper's
linear blend, 6-frame clips, temporal L1) for the same number of iterations; the baseline is the same generator
with num_prev_frames 0, no temporal D and no temporal L1. Two more arms: the baseline with the temporal L1 term
(what the term alone buys), and vid2vid in imaginaire's "spade" form with 3-frame clips (the recipe before).

    python studies/study1_per_frame_baseline.py      (about 2 hours on 2 CPU cores; the first two arms 70 minutes)
"""

import json

from common import plot_bars, threads
from street import OUT, street_arm

if __name__ == "__main__":
    threads()
    scores = {name: street_arm(name) for name in ("per-frame", "vid2vid", "per-frame + temporal L1",
                                                  "vid2vid, imaginaire form")}
    table = {name: {"warping error (lower: steadier)": s["warping_error"], "PSNR (dB)": s["psnr"],
                    "SSIM": s["ssim"]} for name, s in scores.items()}
    plot_bars(OUT / "study1.png", "vid2vid vs per-frame, held-out street", table, "")
    (OUT / "study1.json").write_text(json.dumps(table, indent=2) + "\n")
    print(json.dumps(table, indent=2))
