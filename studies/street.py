"""The street arms shared by study 1 (per-frame baseline) and study 3 (temporal discriminator)."""

from __future__ import annotations

from common import HELD_OUT_INDEX, RESULTS, configure, run_arm, synth

OUT = RESULTS / "street"
SIZE = (64, 128)
ITERATIONS = 600

PER_FRAME = {"generator": {"num_prev_frames": 0}, "discriminator.temporal": {"enabled": False}}
ARMS = {
    "vid2vid": {},
    # The same generator with no previous frames: no flow, no warping, every frame made on its own, and no
    # temporal terms (the recipe's temporal L1 off too).
    "per-frame": {**PER_FRAME, "loss.weights": {"temporal_l1": 0.0}},
    # The per-frame generator with the temporal L1 term: what that term alone buys without warping.
    "per-frame + temporal L1": PER_FRAME,
    "vid2vid, no temporal D": {"discriminator.temporal": {"enabled": False}},
    # imaginaire's vid2vid as the recipe had it before: its "spade" form, clips of 3 frames, no temporal L1.
    "vid2vid, imaginaire form": {"generator": {"temporal_combine": "spade"}, "data.clip_length": 3,
                                 "loss.weights": {"temporal_l1": 0.0}},
}


def street_arm(name: str) -> dict:
    train_root = synth("street", OUT / "data" / "train", sequences=16, frames=24, size=SIZE)
    held_out = synth("street", OUT / "data" / "heldout", sequences=4, frames=24, size=SIZE,
                     first_index=HELD_OUT_INDEX)
    cfg = configure("train_street_cpu", train_root, ITERATIONS, **ARMS[name])
    return run_arm(name, cfg, OUT, held_out)["results"]["all"]
