"""The street arms shared by study 1 (per-frame baseline) and study 3 (temporal discriminator)."""

from __future__ import annotations

from common import HELD_OUT_INDEX, RESULTS, configure, run_arm, synth

OUT = RESULTS / "street"
SIZE = (64, 128)
ITERATIONS = 600

ARMS = {
    "vid2vid": {},
    # The same generator with no previous frames: no flow, no warping, every frame made on its own.
    "per-frame": {"generator": {"num_prev_frames": 0}, "discriminator.temporal": {"enabled": False}},
    "vid2vid, no temporal D": {"discriminator.temporal": {"enabled": False}},
    # Clips of 6 frames: warping (which starts once two previous frames exist) trains on 4 frames in 6, not 1 in 3.
    "vid2vid, 6-frame clips": {"data.clip_length": 6},
    "per-frame, 6-frame clips": {"generator": {"num_prev_frames": 0}, "discriminator.temporal": {"enabled": False},
                                 "data.clip_length": 6},
}


def street_arm(name: str) -> dict:
    train_root = synth("street", OUT / "data" / "train", sequences=16, frames=24, size=SIZE)
    held_out = synth("street", OUT / "data" / "heldout", sequences=4, frames=24, size=SIZE,
                     first_index=HELD_OUT_INDEX)
    cfg = configure("train_street_cpu", train_root, ITERATIONS, **ARMS[name])
    return run_arm(name, cfg, OUT, held_out)["results"]["all"]
