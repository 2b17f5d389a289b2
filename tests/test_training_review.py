"""The defects and departures found by the review of training against imaginaire (issue 18, items 1-10).

Each test pins one item to its formula: which frames, which direction of warp, which weight, which dtype.
"""

import pytest
import torch

from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.writer import write_synthetic
from vid2vid.models.discriminators import crop_and_resize
from vid2vid.models.flow import FlowNetwork
from vid2vid.nn.warp import warp

# ------------------------------------------------------------------------------ 1. warping in bf16


@pytest.mark.parametrize("flow_dtype", [torch.bfloat16, torch.float16])
def test_1_zero_flow_in_half_precision_moves_nothing(flow_dtype):
    """A zero flow in bf16 (what autocast hands the warp) must leave a wide image exactly as it is; a bf16
    grid has spacing 2^-8 near +-1, which moved a 64x512 ramp by up to half a pixel."""
    image = torch.linspace(0, 1, 512).expand(1, 3, 64, 512).contiguous()
    out = warp(image, torch.zeros(1, 2, 64, 512, dtype=flow_dtype))
    assert out.dtype == torch.float32
    assert (out - image).abs().max() < 1e-5


def test_1_subpixel_flow_under_bf16_autocast_is_exact():
    """A quarter-pixel flow on a horizontal ramp shifts it by exactly a quarter of a step, under autocast too."""
    w = 512
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 1, 8, w).contiguous()
    flow = torch.zeros(1, 2, 8, w)
    flow[:, 0] = 0.25
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(ramp, flow)
    assert out.dtype == torch.float32
    assert (out[..., :-1] - (ramp[..., :-1] + 0.25)).abs().max() < 1e-3


def test_1_bf16_image_comes_back_in_bf16_sampled_in_fp32():
    image = torch.rand(1, 3, 16, 300)
    out = warp(image.bfloat16(), torch.zeros(1, 2, 16, 300, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    # Identity sampling rounded once to bf16 (a bf16 grid moved random pixels by up to half a pixel).
    assert (out.float() - image.bfloat16().float()).abs().max() <= 2 ** -8


def test_1_face_crop_grid_is_fp32_under_autocast():
    """A crop of the box's own size copies it exactly, also when the frame arrives in bf16."""
    images = torch.rand(1, 3, 64, 512)
    boxes = torch.tensor([[400.0, 0.0, 464.0, 64.0]])  # a 64 x 64 box at the far right
    with torch.autocast("cpu", dtype=torch.bfloat16):
        crop = crop_and_resize(images.bfloat16(), boxes, torch.tensor([0]), 64)
    assert crop.dtype == torch.bfloat16
    assert (crop.float() - images[..., 400:464].bfloat16().float()).abs().max() <= 2 ** -8


def test_1_flow_and_mask_heads_stay_fp32_under_autocast():
    torch.manual_seed(0)
    net = FlowNetwork(4, 3, num_filters=8, max_filters=16, num_downsamples=2, num_res_blocks=1).eval()
    labels, images = torch.rand(1, 4, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flow, mask = net(labels, images)
    assert flow.dtype == torch.float32 and mask.dtype == torch.float32
    # The heads themselves ran in fp32: their output equals fp32 heads on the (bf16) trunk's features.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = net.features(labels, images)
    assert torch.equal(flow, net.flow_head(features.float()) * net.multiplier)
    assert torch.equal(mask, net.mask_head(features.float()))


# --------------------------------------------------------------- 2. stored flow and resize_smallest_side


def test_2_stored_flow_follows_resize_smallest_side(tmp_path):
    """Built-in street scenes at 128x256 resized to a 64 smallest side: the returned flow, scaled with the
    frame, warps frame t-1 onto frame t better than not warping (it was worse: 0.057 against 0.033)."""
    write_synthetic("street", tmp_path, sequences=1, frames=4, size=(128, 256), progress=False)
    cfg = DataConfig(task="street", size=(64, 128), clip_length=4, resize_smallest_side=64, crop="resize",
                     augment=False)
    clips = VideoClips(tmp_path, cfg)
    sample = clips.load(clips.sequences[0], [0, 1, 2, 3], [], None)
    images, flow, conf = sample["images"], sample["flow"][1:], sample["flow_confidence"][1:]
    warped = warp(images[:-1], flow)
    weight = conf.sum()
    with_flow = float(((warped - images[1:]).abs().mean(1, keepdim=True) * conf).sum() / weight)
    without = float(((images[:-1] - images[1:]).abs().mean(1, keepdim=True) * conf).sum() / weight)
    assert with_flow < 0.5 * without, (with_flow, without)


# ------------------------------------------------------------------------- shared: a tiny few-shot setup


@pytest.fixture(scope="module")
def dancers(tmp_path_factory):
    root = tmp_path_factory.mktemp("review_dancers")
    write_synthetic("dancers", root, sequences=2, frames=10, size=(32, 32), progress=False)
    return root


def tiny(dancers, **changes):
    from .conftest import tiny_train_config
    return tiny_train_config(dancers, **changes)


def batch_of(cfg, samples=2, seed=3):
    clips = VideoClips(cfg.data_root, cfg.data, seed=seed)
    items = [clips[i] for i in range(samples)]
    return {k: torch.stack([item[k] for item in items]) for k in items[0] if torch.is_tensor(items[0][k])}


def generate_clip(G, batch):
    """The generator's outputs over the clip, frames fed back detached (what training feeds it)."""
    from vid2vid.step import References, new_history, step
    history, refs, outs = new_history(G), References(batch["ref_labels"], batch["ref_images"]), []
    for t in range(batch["labels"].shape[1]):
        out = step(G, batch["labels"][:, t], history, refs)
        outs.append(out)
        history.push(batch["labels"][:, t], out.fake_images.detach())
    return outs


# ---------------------------------------------------- 3. the image D reads each frame's own reference


def test_3_image_d_is_conditioned_on_each_frames_reference(dancers):
    """With K = 2 the generator picks a reference per frame (and per sample); the image D of frame t must see
    that frame's pick, not the last frame's."""
    from vid2vid.models.fs_vid2vid import pick_reference
    from vid2vid.training.frame_step import discriminator_terms
    from vid2vid.training.nets import Discriminators

    cfg = tiny(dancers, data={"num_references": 2}, discriminator={"temporal": {"enabled": False},
                                                                   "face": {"enabled": False}})
    batch = batch_of(cfg)
    D = Discriminators(cfg)
    seen = []
    D.image.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    c = cfg.data.label_channels
    for t, ref_idx in enumerate([torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1, 1])]):
        seen.clear()
        fake = torch.rand(2, 3, 32, 32)
        discriminator_terms(D, batch, t, fake, [], ref_idx, cfg, for_discriminator=True)
        fake_input = seen[0]  # (B, C + C + 3 + 3, H, W): label, reference label, reference image, image
        assert torch.equal(fake_input[:, c:2 * c], pick_reference(batch["ref_labels"], ref_idx))
        assert torch.equal(fake_input[:, 2 * c:2 * c + 3], pick_reference(batch["ref_images"], ref_idx))
        assert torch.equal(fake_input[:, :c], batch["labels"][:, t])
        assert torch.equal(fake_input[:, -3:], fake)


# ---------------------------------------------------------------- 4. the reference flow is supervised


def test_4_reference_teacher_flow_warps_the_reference_onto_the_frame(dancers):
    """The dataset gives a teacher flow from every clip frame to every reference (backward, on the frame's grid);
    it brings the reference closer to the frame than not warping."""
    cfg = tiny(dancers, data={"num_references": 2, "augment": False})
    clips = VideoClips(cfg.data_root, cfg.data, seed=1)
    with_flow = without = 0.0
    for i in range(3):
        sample = clips[i]
        t, k = sample["labels"].shape[0], 2
        assert sample["ref_flow"].shape == (t, k, 2, 32, 32)
        assert sample["ref_flow_confidence"].shape == (t, k, 1, 32, 32)
        frames = sample["images"][:, None].expand(-1, k, -1, -1, -1).flatten(0, 1)
        refs = sample["ref_images"][None].expand(t, -1, -1, -1, -1).flatten(0, 1)
        with_flow += float((warp(refs, sample["ref_flow"].flatten(0, 1)) - frames).abs().mean())
        without += float((refs - frames).abs().mean())
    assert with_flow < 0.8 * without, (with_flow, without)


def test_4_reference_flow_term_at_the_first_frame(dancers):
    """Frame 0 has no previous frame, so its flow term is the reference branch's alone: mean(c * |f - f_teacher|)
    with the teacher of the reference the generator picked."""
    from vid2vid.models.fs_vid2vid import pick_reference
    from vid2vid.training.config import make_generator
    from vid2vid.training.frame_step import generator_terms

    cfg = tiny(dancers, data={"num_references": 2})
    batch = batch_of(cfg)
    torch.manual_seed(0)
    out = generate_clip(make_generator(cfg).eval(), batch)[0]
    terms = generator_terms(out, batch, 0, cfg, None)
    teacher = pick_reference(batch["ref_flow"][:, 0], out.ref_idx)
    confidence = pick_reference(batch["ref_flow_confidence"][:, 0], out.ref_idx)
    # Synthetic dancers have no DensePose: the foreground is 1 everywhere.
    want = (confidence * (out.fake_flow_maps[0] - teacher).abs()).mean()
    assert float(terms["G/flow"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert float(want.detach()) > 0


# ------------------------------------------------------------- 5. DensePose terms reach the generator


def test_5_densepose_labels_switch_on_the_body_terms(dancers):
    """Pose batches pass the target and reference labels to the flow terms: with DensePose in the labels the
    warp and mask terms gain the part, foreground and face pieces (parity: test_flow_loss_parity)."""
    from vid2vid import losses
    from vid2vid.training.config import make_generator
    from vid2vid.training.frame_step import flow_branches, generator_terms

    cfg = tiny(dancers)
    batch = batch_of(cfg)
    # Paint a DensePose torso (part 1) and head (part 24) into the labels: channel 2 = I / 12 - 1.
    for key in ("labels", "ref_labels"):
        batch[key][..., 2, 8:24, 10:22] = 1 / 12 - 1
        batch[key][..., 2, 2:8, 12:20] = 24 / 12 - 1
    batch["ref_labels"][..., 2, :, :] = batch["ref_labels"][..., 2, :, :].roll(2, dims=-1)
    torch.manual_seed(0)
    out = generate_clip(make_generator(cfg).eval(), batch)[1]
    terms = generator_terms(out, batch, 1, cfg, None)
    reference, previous = flow_branches(out, batch, 1)
    real, fake = batch["images"][:, 1], out.fake_images
    with_body = losses.flow_terms(real, fake, reference, previous, batch["labels"][:, 1], batch["ref_labels"][:, 0])
    without = losses.flow_terms(real, fake, reference, previous)
    for name in ("flow", "warp", "mask"):
        assert terms[f"G/{name}"].item() == pytest.approx(getattr(with_body, name).item(), rel=1e-6)
    assert with_body.mask.item() > without.mask.item()  # the face rule and the part disagreement add to it
    assert with_body.flow.item() < without.flow.item()  # only pixels within 7 px of the body count


# ------------------------------------------------------------- 6. the face D sees the reference beside


def test_6_face_discriminator_sees_the_reference_crop_beside_the_face(dancers):
    """Few-shot: the face D's input is the face crop and the chosen reference cropped at the same box (6
    channels), on both the real and the fake side."""
    from vid2vid.models.discriminators import crop_and_resize
    from vid2vid.training.frame_step import discriminator_terms, region_boxes
    from vid2vid.training.nets import Discriminators

    cfg = tiny(dancers, discriminator={"temporal": {"enabled": False}})
    batch = batch_of(cfg)
    D = Discriminators(cfg)
    assert D.face.patch.discriminators[0].blocks[0][0].in_channels == 6
    seen = []
    D.face.patch.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fake = torch.rand(2, 3, 32, 32)
    discriminator_terms(D, batch, 1, fake, [], None, cfg, for_discriminator=True)
    boxes, index = region_boxes(batch["keypoints"][:, 1], (32, 32), "face", D.face.crop_size)
    assert boxes is not None
    ref_crop = crop_and_resize(batch["ref_images"][:, 0], boxes, index, D.face.crop_size)
    fake_input, real_input = seen
    assert fake_input.shape[1] == 6
    assert torch.equal(fake_input[:, :3], crop_and_resize(fake, boxes, index, D.face.crop_size))
    assert torch.equal(fake_input[:, 3:], ref_crop)
    assert torch.equal(real_input[:, :3], crop_and_resize(batch["images"][:, 1], boxes, index, D.face.crop_size))
    assert torch.equal(real_input[:, 3:], ref_crop)


# ------------------------------------------------------------------- 7. learning rates step down


@pytest.mark.parametrize("iteration, expected", [(0, 1.0), (99, 1.0), (100, 0.1), (250, 0.01)])
def test_7_step_learning_rate_policy(iteration, expected):
    from vid2vid.training.config import OptimConfig, ScheduleConfig, lr_factor
    got = lr_factor(iteration, OptimConfig(lr_step_every=100, lr_gamma=0.1), ScheduleConfig(iterations=300))
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("recipe, step_fraction", [("train_fs_vid2vid_dancing", 10 / 20),
                                                   ("train_fs_vid2vid_face", 100 / 200),
                                                   ("train_vid2vid_street", 60 / 80)])
def test_7_recipes_step_their_rates_where_imaginaire_does(recipe, step_fraction):
    """imaginaire: x0.1 at epoch 10 of 20 (dancing), 100 of 200 (face), 60 of 80 (Cityscapes)."""
    from vid2vid.training.config import load_train_config, lr_factor
    cfg = load_train_config(recipe, data_root="unused")
    at = round(step_fraction * cfg.schedule.iterations)
    assert lr_factor(at - 1, cfg.optim, cfg.schedule) == 1.0
    assert lr_factor(at, cfg.optim, cfg.schedule) == pytest.approx(0.1)
    assert lr_factor(cfg.schedule.iterations - 1, cfg.optim, cfg.schedule) == pytest.approx(0.1)


def test_7_one_decay_at_a_time():
    from vid2vid.training.config import OptimConfig
    with pytest.raises(ValueError, match="choose one learning-rate decay"):
        OptimConfig(lr_step_every=10, decay_start=5)


# ------------------------------------------------------- 8. warp and mask terms summed over branches


def test_8_warp_and_mask_terms_are_summed_over_the_branches(dancers):
    """A later few-shot frame has a reference and a previous branch: each term is their sum (imaginaire), not
    their mean, so it weighs as much against GAN, feature matching and VGG as upstream."""
    from vid2vid import losses
    from vid2vid.training.config import make_generator
    from vid2vid.training.frame_step import generator_terms

    cfg = tiny(dancers)
    batch = batch_of(cfg)
    torch.manual_seed(0)
    out = generate_clip(make_generator(cfg).eval(), batch)[1]
    terms = generator_terms(out, batch, 1, cfg, None)
    real = batch["images"][:, 1]
    warp_sum = sum(losses.warp_loss(w, real) for w in out.warped_images)
    mask_sum = sum(losses.mask_loss(m, w, real)
                   for m, w in zip(out.fake_occlusion_masks, out.warped_images, strict=True))
    reference_teacher = batch["ref_flow"][:, 1, 0], batch["ref_flow_confidence"][:, 1, 0]
    flow_sum = (losses.flow_loss(out.fake_flow_maps[0], *reference_teacher)
                + losses.flow_loss(out.fake_flow_maps[1], batch["flow"][:, 1], batch["flow_confidence"][:, 1]))
    assert float(terms["G/warp"]) == pytest.approx(float(warp_sum), rel=1e-6)
    assert float(terms["G/mask"]) == pytest.approx(float(mask_sum), rel=1e-6)
    assert float(terms["G/flow"]) == pytest.approx(float(flow_sum), rel=1e-6)


# ----------------------------------------------------------------------------- 9. the weight average


def test_9_average_copies_then_averages_normalised_weights(dancers):
    """The first `start` updates copy the trained generator's applied weights (spectral norm divided out: the
    eval-mode weight original / (u . W v)); later ones blend at `decay`. u and v are neither averaged nor kept."""
    from vid2vid.training.average import ModelAverage
    from vid2vid.training.config import make_generator

    cfg = tiny(dancers)
    torch.manual_seed(0)
    G = make_generator(cfg)
    average = ModelAverage(G, decay=0.9, start=2)
    assert not any("weight_orig" in k or "_u" in k or "parametrizations" in k
                   for k in average.averaged.state_dict())
    name = "weight_generator.image_encoder.first.conv"  # a spectrally normalised conv

    def applied(model):
        module = model.get_submodule(name)
        was = model.training
        model.eval()
        with torch.no_grad():
            weight = module.weight.clone()  # eval-mode spectral norm: stored u, v, no power iteration
        model.train(was)
        return weight

    # A new average is already the trained generator (a checkpoint before the first update holds it, not a
    # random init; mutmut: blend(model, 1.0) at construction survived) and takes no gradient.
    assert torch.allclose(average.averaged.get_submodule(name).weight, applied(G), atol=1e-6)
    assert not any(p.requires_grad for p in average.averaged.parameters())
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(0.01 * torch.randn_like(p))
        G.train()(*_forward_inputs(cfg))  # train-mode forward: power iteration moves u, v as in training
        snapshots.append(applied(G))
        average.update(G)
    got = average.averaged.get_submodule(name).weight
    assert average.updates == 3
    want = 0.9 * snapshots[1] + 0.1 * snapshots[2]  # updates 1 and 2 copy, update 3 averages
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(snapshots[1], snapshots[2], atol=1e-4)


def _forward_inputs(cfg):
    c = cfg.data.label_channels
    return torch.rand(1, c, 32, 32), torch.rand(1, 1, c, 32, 32), torch.rand(1, 1, 3, 32, 32)


def test_9_checkpoint_generator_is_the_average_and_resumes_its_count(dancers, tmp_path):
    """model.safetensors holds the average (plain weights, no spectral-norm keys), and the update count that
    decides copy-or-average is restored on resume."""
    from safetensors.torch import load_file

    from vid2vid.train import train
    from vid2vid.training.config import make_generator
    cfg = tiny(dancers, optim={"ema_start": 3, "ema_decay": 0.5})
    result = train(cfg, tmp_path / "run", progress=False)
    state = torch.load(result.last_checkpoint / "training_state.pt", weights_only=True)
    assert state["average_updates"] == cfg.schedule.iterations * cfg.data.clip_length
    keys = load_file(result.last_checkpoint / "model.safetensors").keys()
    assert not any("parametrizations" in k for k in keys)
    assert make_generator(cfg).cfg.spectral_norm  # the trained one keeps spectral norm


# ------------------------------------------------------- 10. the temporal D pushes the newest frame only


def test_10_temporal_gan_gradient_reaches_only_the_newest_frame(dancers):
    """The G-side temporal terms at frame t see the window's earlier generated frames as constants: no gradient
    reaches them, even when they come with their graphs, and the current frame gets one. (This test once
    detached the past frames itself before checking that they got no gradient; reverted `.detach()` in
    `discriminator_terms`, it now fails: the past frames got gradients.)"""
    from vid2vid.training.frame_step import discriminator_terms
    from vid2vid.training.nets import Discriminators

    from .conftest import TINY_PATCH
    cfg = tiny(dancers, discriminator={"temporal": {"num_frames": 3, "num_scales": 1, "patch": TINY_PATCH},
                                       "face": {"enabled": False}})
    batch = batch_of(cfg)
    D = Discriminators(cfg)
    past = [torch.rand(2, 3, 32, 32, requires_grad=True) for _ in range(2)]
    current = torch.rand(2, 3, 32, 32, requires_grad=True)
    terms = discriminator_terms(D, batch, 2, current, [p * 1 for p in past], None, cfg, for_discriminator=False)
    assert "G/gan_temporal0" in terms
    (terms["G/gan_temporal0"] + terms["G/fm_temporal0"]).backward()
    assert current.grad is not None and current.grad.abs().sum() > 0
    assert all(p.grad is None for p in past)


def test_10_training_stores_generated_frames_detached(dancers, monkeypatch):
    """What train_clip hands the temporal D as the past: the generated frames of this clip, without graphs."""
    import vid2vid.train as training
    from vid2vid.training.nets import build_nets

    cfg = tiny(dancers)
    seen = []
    real_update = training.update_generator

    def update_generator(nets, batch, t, out, past, *args):
        seen.append((t, [p.requires_grad for p in past], len(past)))
        return real_update(nets, batch, t, out, past, *args)

    monkeypatch.setattr(training, "update_generator", update_generator)
    torch.manual_seed(0)
    training.train_clip(build_nets(cfg, torch.device("cpu"), None), batch_of(cfg), cfg)
    assert seen == [(0, [], 0), (1, [False], 1), (2, [False, False], 2)]


def test_3_the_generators_gan_terms_are_the_hinge_generator_form_and_the_ds_the_hinge_d_form(dancers):
    """G's term is -mean(logits) on its fake (hinge, for the generator), D's are mean(relu(1 - x)) on real and
    mean(relu(1 + x)) on fake. mutmut: G's term computed in the D form (for_discriminator=True) survived every
    training test."""
    from vid2vid.training.frame_step import discriminator_terms
    from vid2vid.training.nets import Discriminators

    cfg = tiny(dancers, data={"num_references": 1}, discriminator={"temporal": {"enabled": False},
                                                                   "face": {"enabled": False}})
    batch = batch_of(cfg)
    D = Discriminators(cfg)
    logits = []
    D.image.register_forward_hook(lambda module, args, out: logits.append([o.logits for o in out]))
    torch.manual_seed(0)
    fake, ref_idx = torch.rand(2, 3, 32, 32), torch.tensor([0, 0])
    g = discriminator_terms(D, batch, 1, fake, [], ref_idx, cfg, for_discriminator=False)
    torch.testing.assert_close(g["G/gan_image"], -torch.stack([x.mean() for x in logits[0]]).mean())
    logits.clear()
    d = discriminator_terms(D, batch, 1, fake, [], ref_idx, cfg, for_discriminator=True)
    fake_logits, real_logits = logits
    torch.testing.assert_close(d["D_image/real"], torch.stack([torch.relu(1 - x).mean() for x in real_logits]).mean())
    torch.testing.assert_close(d["D_image/fake"], torch.stack([torch.relu(1 + x).mean() for x in fake_logits]).mean())
