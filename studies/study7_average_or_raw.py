"""Study 7: fine-tune and render the averaged generator (ours) or the trained one (imaginaire's finetune).

A run's checkpoint holds both: model.safetensors, the average `generate` loads, and generator.safetensors, the
weights the optimizer moved. This study copies the run, puts the trained weights in the copy's model.safetensors
(spectral norm divided out, as the average holds them), and scores both on study 4's unseen dancers: K = 2,
without fine-tuning and with 100 steps (our default L1 update, or --adversarial).

    python -m vid2vid.demo --train --minutes 12 --out /tmp/demo_raw      (the run: about 600 iterations)
    python studies/study7_average_or_raw.py --run /tmp/demo_raw/run      (about 10 minutes on 2 CPU cores)
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from common import HELD_OUT_INDEX, RESULTS, synth, threads
from safetensors.torch import load_file, load_model

from vid2vid.checkpoint import read_model_info, save_generator
from vid2vid.evaluate import evaluate
from vid2vid.training.average import ModelAverage
from vid2vid.training.checkpoints import latest_checkpoint
from vid2vid.training.config import load_train_config, make_generator

OUT = RESULTS / "average_or_raw"
SIZE = (64, 64)


def trained_copy(run, out):
    """A copy of the run whose latest checkpoint's model.safetensors holds the trained generator, not the average."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run, out)
    checkpoint = latest_checkpoint(out)
    cfg = load_train_config(out / "config.yaml")
    trained = make_generator(cfg)
    load_model(trained, str(checkpoint / "generator.safetensors"))
    copy = ModelAverage(trained, decay=0.0, start=1)
    copy.update(trained)  # within `start`: a plain copy, spectral norm divided out
    save_generator(copy.averaged, checkpoint, overwrite=True, data=read_model_info(checkpoint).get("data"))
    return checkpoint


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a few-shot run folder, 64x64")
    parser.add_argument("--adversarial", action="store_true", help="fine-tune with the run's discriminators")
    parser.add_argument("--sequences", type=int, default=4)
    args = parser.parse_args()
    threads()
    refs = synth("dancers", OUT / "data" / "references", sequences=args.sequences, frames=16, size=SIZE,
                 first_index=HELD_OUT_INDEX)
    held_out = synth("dancers", OUT / "data" / "heldout", sequences=args.sequences, frames=16, size=SIZE,
                     first_index=HELD_OUT_INDEX, motion_offset=50)
    averaged = latest_checkpoint(args.run)
    trained = trained_copy(args.run, OUT / "trained_run")
    average, weights = (load_file(str(c / "model.safetensors")) for c in (averaged, trained))
    if average.keys() != weights.keys():
        raise SystemExit(f"{trained}: the trained weights do not fit the average's names")
    if all(torch.equal(average[k], weights[k]) for k in average):
        raise SystemExit(f"{args.run}: the average equals the trained weights (a run shorter than ema_start?)")
    (OUT / "reports").mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, checkpoint in (("averaged", averaged), ("trained", trained)):
        report = evaluate(checkpoint, held_out, OUT / "reports" / name, [2], references=refs, overwrite=True,
                          pose_error=False, progress=False, finetune_steps=[0, 100],
                          finetune_adversarial=args.adversarial)
        rows[name] = report["results"]
    print("| generator | fine-tuning steps | PSNR (dB) | SSIM | warping error |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        for scores in results.values():
            print(f"| {name} | {scores.get('finetune_steps', 0)} | {scores['psnr']:.2f} | {scores['ssim']:.3f} | "
                  f"{scores['warping_error']:.3f} |")
    (OUT / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
