"""Study 4: test-time fine-tuning on the references (`--finetune`) for dancers never seen in training.

Held-out identities 1000-1003 doing the motions of identities 1050-1053 (never trained on either), references
from another video of the same identity; K = 1, 2 and 4, fine-tuning off and 100 steps (imaginaire's dancing
inference), for a given few-shot checkpoint (the `make demo` model, a longer-trained one).

    python studies/study4_finetune.py --checkpoint demo_out/run --name demo   (about 10 minutes on 2 CPU cores)

With --kind turning the held-out dancers turn their backs now and then (see study 2's --kind turning).
"""

import argparse
import json

from common import HELD_OUT_INDEX, RESULTS, synth, threads

from vid2vid.evaluate import evaluate

OUT = RESULTS / "finetune"
SIZE = (64, 64)
KS = [1, 2, 4]
STEPS = [0, 100]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a few-shot checkpoint (or run folder) at 64x64")
    parser.add_argument("--name", required=True, help="the report's name under studies/results/finetune/")
    parser.add_argument("--kind", choices=["dancers", "turning"], default="dancers")
    parser.add_argument("--adversarial", action="store_true", help="fine-tune with the checkpoint's discriminators")
    args = parser.parse_args()
    threads()
    OUT = OUT if args.kind == "dancers" else OUT.with_name(f"finetune_{args.kind}")
    refs = synth(args.kind, OUT / "data" / "references", sequences=4, frames=16, size=SIZE,
                 first_index=HELD_OUT_INDEX)
    held_out = synth(args.kind, OUT / "data" / "heldout", sequences=4, frames=16, size=SIZE,
                     first_index=HELD_OUT_INDEX, motion_offset=50)
    (OUT / "reports").mkdir(parents=True, exist_ok=True)
    report = evaluate(args.checkpoint, held_out, OUT / "reports" / args.name, KS, references=refs, overwrite=True,
                      pose_error=False, progress=False, finetune_steps=STEPS,
                      finetune_adversarial=args.adversarial)
    print("| model | K | fine-tuning steps | PSNR (dB) | SSIM | warping error | s fine-tuning / sequence |")
    print("|---|---|---|---|---|---|---|")
    for scores in report["results"].values():
        print(f"| {args.name} | {scores['K']} | {scores.get('finetune_steps', 0)} | {scores['psnr']:.2f} | "
              f"{scores['ssim']:.3f} | {scores['warping_error']:.3f} | "
              f"{scores.get('finetune_seconds_per_sequence', 0):.1f} |")
    print(f"ground truth warping error {report['ground_truth']['warping_error']:.3f}")
    (OUT / "reports" / args.name / "table.json").write_text(json.dumps(report["results"], indent=2) + "\n")
