"""Study 1: vid2vid against a per-frame baseline on held-out built-in street sequences.

The paper's claim: the sequential generator (flow, warping, previous frames, temporal D) flickers less than
per-frame synthesis, at equal or better image quality. Every arm trains the train_street_cpu recipe for the
same number of iterations; the baseline is the same generator with num_prev_frames 0 and no temporal D. Both
are run with the recipe's 3-frame clips and with 6-frame clips (warping, which starts once two previous
frames exist, then trains on 4 frames in 6 rather than 1 in 3).

    python studies/study1_per_frame_baseline.py      (about 35 minutes on 2 CPU cores)
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
