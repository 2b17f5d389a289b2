"""loss.raw_output: the raw (hallucinated) image trained on its own, as NVIDIA vid2vid trains h_t (VGG, GAN and
feature matching on fake_B_raw, the D learning from it too) and imaginaire its generate_raw_output image (the
same, cut to the foreground mask)."""

import pytest
import torch

from vid2vid import losses
from vid2vid.data.writer import write_synthetic

from .conftest import render_shipped_unseen
from .test_training_review import batch_of


@pytest.fixture(scope="module")
def dancers(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw_dancers")
    write_synthetic("dancers", root, sequences=2, frames=8, size=(32, 32), progress=False)
    return root


def tiny(dancers, **changes):
    from .conftest import tiny_train_config
    changes["generator"] = {"temporal_combine": "linear", **changes.get("generator", {})}
    return tiny_train_config(dancers, **changes)


def first_frame(cfg, batch):
    from vid2vid.step import References, new_history, step
    from vid2vid.training.config import make_generator
    torch.manual_seed(0)
    G = make_generator(cfg).eval()
    return step(G, batch["labels"][:, 0], new_history(G), References(batch["ref_labels"], batch["ref_images"]))


def paint_densepose_body(batch):
    """A DensePose torso (part 1, channel 2 = I / 12 - 1) in every label: rows 12-19, columns 14-17."""
    for key in ("labels", "ref_labels"):
        batch[key][..., 2, :, :] = -1.0
        batch[key][..., 2, 12:20, 14:18] = 1 / 12 - 1


def test_raw_output_needs_a_generator_that_makes_a_raw_image(dancers):
    from .conftest import tiny_train_config
    with pytest.raises(ValueError, match="loss.raw_output needs a generator that makes a raw image") as info:
        tiny_train_config(dancers, loss={"raw_output": True})  # spade combine, no generate_raw_output
    assert "\n" not in str(info.value)
    assert tiny_train_config(dancers, loss={"raw_output": True},
                             generator={"generate_raw_output": True}).loss.raw_output
    assert tiny(dancers, loss={"raw_output": True}).loss.raw_output


def test_raw_l1_is_the_raw_image_against_the_frame_on_the_dilated_body(dancers):
    """G/l1_raw = mean over all pixels of |raw - real| inside the DensePose body dilated by 7 px (a 15 x 15 max
    filter), zero outside it: columns 14-17 dilated are 7-24, rows 12-19 are 5-26."""
    from vid2vid.training.frame_step import generator_terms

    cfg = tiny(dancers, loss={"raw_output": True})
    batch = batch_of(cfg)
    paint_densepose_body(batch)
    out = first_frame(cfg, batch)
    assert out.fake_raw_images is not None and out.fake_raw_images is not out.fake_images
    terms = generator_terms(out, batch, 0, cfg, None)
    raw, real = out.fake_raw_images.detach(), batch["images"][:, 0]
    body = torch.zeros(1, 1, 32, 32)
    body[..., 5:27, 7:25] = 1
    want = ((raw - real).abs() * body).sum() / raw.numel()
    assert float(terms["G/l1_raw"].detach()) == pytest.approx(float(want), rel=1e-5)
    assert float(want) > 0
    assert float(terms["G/l1_raw"].detach()) != pytest.approx(float((raw - real).abs().mean()), rel=1e-3)

    off = generator_terms(out, batch, 0, tiny(dancers), None)
    assert not any(name.endswith("_raw") for name in off)


def test_the_image_d_judges_the_raw_image_cut_to_the_body_and_weighs_as_the_final(dancers):
    """With a raw image the image D is called twice more: on (label, reference label, reference, raw * body) and
    (..., real * body); its terms are D_raw/real, D_raw/fake for the D and G/gan_raw, G/fm_raw for G."""
    from vid2vid.training.frame_step import discriminator_terms, weighted_total
    from vid2vid.training.nets import Discriminators

    cfg = tiny(dancers, loss={"raw_output": True}, discriminator={"temporal": {"enabled": False},
                                                                   "face": {"enabled": False}})
    batch = batch_of(cfg)
    paint_densepose_body(batch)
    D = Discriminators(cfg)
    seen = []
    D.image.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fake, raw = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    ref_idx = torch.tensor([0, 0])
    d_terms = discriminator_terms(D, batch, 0, fake, [], ref_idx, cfg, for_discriminator=True, raw=raw)
    assert set(d_terms) == {"D_image/real", "D_image/fake", "D_raw/real", "D_raw/fake"}
    body = losses.foreground_mask(batch["labels"][:, 0])
    assert float(body.mean()) < 0.5  # the cut is a real one
    assert torch.equal(seen[2][:, -3:], raw * body)
    assert torch.equal(seen[3][:, -3:], batch["images"][:, 0] * body)
    c = cfg.data.label_channels
    assert torch.equal(seen[2][:, :c], batch["labels"][:, 0])
    assert torch.equal(seen[2][:, c:2 * c], batch["ref_labels"][:, 0])

    g_terms = discriminator_terms(D, batch, 0, fake, [], ref_idx, cfg, for_discriminator=False, raw=raw)
    assert {"G/gan_raw", "G/fm_raw"} <= set(g_terms)
    assert float(g_terms["G/fm_raw"].detach()) > 0

    weights = losses.LossWeights(gan=2.0, feature_matching=3.0, l1=5.0)
    terms = {"G/gan_raw": torch.tensor(1.0), "G/fm_raw": torch.tensor(10.0), "G/l1_raw": torch.tensor(100.0)}
    assert float(weighted_total(terms, weights)) == pytest.approx(2 + 30 + 500)


def test_no_raw_terms_where_the_raw_image_is_the_final_one(dancers):
    """vid2vid's frame 0 has nothing to warp: its raw image is its output, already trained by the final terms."""
    from vid2vid.training.frame_step import raw_image

    cfg = tiny(dancers, loss={"raw_output": True})
    out = first_frame(cfg, batch_of(cfg))
    assert raw_image(out, cfg) is out.fake_raw_images
    same = type(out)(**{**out.__dict__, "fake_raw_images": out.fake_images})
    assert raw_image(same, cfg) is None
    assert raw_image(out, tiny(dancers)) is None


def test_raw_output_trains_the_raw_image(dancers, tmp_path):
    """The same 12 iterations from the same seed with and without the raw terms: with them the raw image of a
    frame comes closer to the frame (the trained generator, not its average)."""
    from vid2vid.step import References, new_history, step
    from vid2vid.train import train

    errors = {}
    for name, raw in (("off", False), ("on", True)):
        cfg = tiny(dancers, loss={"raw_output": raw, "weights": {"perceptual": 0, "l1": 30}},
                   schedule={"iterations": 12, "batch_size": 2},
                   discriminator={"temporal": {"enabled": False}, "face": {"enabled": False}},
                   run={"log_every": 4, "image_every": 1000, "checkpoint_every": 12})
        torch.manual_seed(0)
        G = train(cfg, tmp_path / name, progress=False).generator.eval()
        batch = batch_of(cfg, seed=5)
        with torch.no_grad():
            out = step(G, batch["labels"][:, 0], new_history(G), References(batch["ref_labels"], batch["ref_images"]))
        errors[name] = float((out.fake_raw_images - batch["images"][:, 0]).abs().mean())
    assert errors["on"] < 0.8 * errors["off"], errors


def test_the_shipped_dancer_models_raw_image_draws_the_dancer(tmp_path, monkeypatch):
    """The shipped dancer model is trained with loss.raw_output: on 12 frames of a built-in dancer it never saw
    (K = 1), its raw image lies within 0.15 of the truth (mean absolute error, 0..1). The model shipped before,
    whose raw image was never trained on its own, drew the legs and head in the pose map's colours: 0.26 here
    (docs/RESULTS.md, study 6, run 4)."""
    import numpy as np

    from vid2vid.generate import to_uint8

    outs, rendered = render_shipped_unseen("dancers_cpu", "dancers", (64, 64), tmp_path, monkeypatch)
    raws = [to_uint8(out.fake_raw_images[0]) for out in outs]
    assert len(raws) == len(rendered.truths) == 12
    error = np.mean([np.abs(raw / 255.0 - truth / 255.0).mean()
                     for raw, truth in zip(raws, rendered.truths, strict=True)])
    assert error < 0.15, error


def test_raw_terms_under_bf16_autocast_match_fp32(dancers):
    """CPU stand-in for the GPU's bf16 path: one clip from the same weights (rates 0) in fp32 and under bf16
    autocast gives the raw image's terms within 3 bf16 epsilons relative (one absolute near 0), as every other
    term (tests/test_precision_paths.py)."""
    from vid2vid.train import train_clip

    from .test_precision_paths import _one_clip_in_both_precisions

    cfg = tiny(dancers, loss={"raw_output": True, "weights": {"perceptual": 0, "l1": 30}},
               optim={"lr_G": 0.0, "lr_D": 0.0})
    batch = batch_of(cfg)
    nets32, nets16 = _one_clip_in_both_precisions(cfg, batch)
    terms32 = train_clip(nets32, batch, cfg).means()
    terms16 = train_clip(nets16, batch, cfg).means()
    raw_terms = [name for name in terms32 if "_raw" in name]
    assert {"G/l1_raw", "G/gan_raw", "G/fm_raw", "D_raw/real", "D_raw/fake"} <= set(raw_terms)
    assert any(terms16[name] != terms32[name] for name in raw_terms), "bf16 autocast did not run"
    eps = torch.finfo(torch.bfloat16).eps
    for name in raw_terms:
        assert abs(terms16[name] - terms32[name]) <= max(3 * eps * abs(terms32[name]), eps), name
