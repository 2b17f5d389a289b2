"""Study 3: the temporal discriminator on and off, vid2vid on held-out built-in street sequences.

The paper's claim: the temporal (video) discriminator lowers flicker. Both arms train train_street_cpu for
the same number of iterations; the "on" arm is study 1's vid2vid run (reused when present).

    python studies/study3_temporal_discriminator.py  (about 20 minutes on 2 CPU cores, 7 after study 1)
"""

import json

from common import plot_bars, threads
from street import OUT, street_arm

if __name__ == "__main__":
    threads()
    scores = {"temporal D on": street_arm("vid2vid"), "temporal D off": street_arm("vid2vid, no temporal D")}
    table = {name: {"warping error (lower: steadier)": s["warping_error"], "PSNR (dB)": s["psnr"],
                    "SSIM": s["ssim"]} for name, s in scores.items()}
    plot_bars(OUT / "study3.png", "temporal discriminator, held-out street", table, "")
    (OUT / "study3.json").write_text(json.dumps(table, indent=2) + "\n")
    print(json.dumps(table, indent=2))
