"""Study 2: few-shot vid2vid on dancers never seen in training: K references and training identities.

The paper's claim: more reference images (K) and more training identities both improve the result. Two
models train train_dancers_cpu (K drawn per batch from 1..4) for the same number of iterations on 8 and on 128
identities; each renders held-out identities doing held-out motions from K = 1, 2, 4 frames of another video of
the same identity.

    python studies/study2_few_shot.py                (about 35 minutes on one core beside another job)
"""

import json

from common import HELD_OUT_INDEX, RESULTS, configure, plot_lines, run_arm, synth, threads

OUT = RESULTS / "few_shot"
SIZE = (64, 64)
ITERATIONS = 300  # as study 5 (600 before the mechanism fixes)
IDENTITIES = (8, 128)
KS = [1, 2, 4]

if __name__ == "__main__":
    threads()
    refs = synth("dancers", OUT / "data" / "references", sequences=4, frames=16, size=SIZE,
                 first_index=HELD_OUT_INDEX)
    held_out = synth("dancers", OUT / "data" / "heldout", sequences=4, frames=16, size=SIZE,
                     first_index=HELD_OUT_INDEX, motion_offset=50)
    scores = {}
    for n in IDENTITIES:
        train_root = synth("dancers", OUT / "data" / f"train{n}", sequences=n, frames=16, size=SIZE)
        cfg = configure("train_dancers_cpu", train_root, ITERATIONS)
        report = run_arm(f"{n} identities", cfg, OUT, held_out, references=refs, ks=KS, pose_error=True)
        scores[n] = report["results"]
        floor = report["ground_truth"]
    table = {f"{n} ids, K={k}": {"PSNR (dB)": scores[n][f"K={k}"]["psnr"], "SSIM": scores[n][f"K={k}"]["ssim"],
                                 "warping error": scores[n][f"K={k}"]["warping_error"],
                                 "pose error": scores[n][f"K={k}"].get("pose_error"),
                                 "pose found": scores[n][f"K={k}"].get("pose_detected")}
             for n in IDENTITIES for k in KS}
    plot_lines(OUT / "study2.png", "few-shot vid2vid on unseen identities doing unseen motions", "K (references)",
               {f"{n} training identities": {k: table[f"{n} ids, K={k}"] for k in KS} for n in IDENTITIES},
               floors={"warping error": floor["warping_error"], "pose error": floor.get("pose_error"),
                       "pose found": floor.get("pose_detected")})
    (OUT / "study2.json").write_text(json.dumps({"results": table, "ground truth": floor}, indent=2) + "\n")
    print(json.dumps(table, indent=2))
