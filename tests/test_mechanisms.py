"""What training adds so that warping and several references pay off: the direct temporal term, K drawn per
batch, references spread over the video, and flow and mask heads that start at zero."""

import numpy as np
import pytest
import torch

from vid2vid import losses
from vid2vid.data.datasets import DataConfig, VideoClips, spread_references
from vid2vid.nn.warp import warp

from .test_training_review import batch_of, dancers, generate_clip, tiny  # noqa: F401 (dancers: a fixture)

# ----------------------------------------------------------------------------------- the temporal term


def test_temporal_l1_against_a_value_worked_out_by_hand():
    """A 1x3 frame, the previous frame shifted by one pixel: a teacher flow of +1 px in x (frame t -> t - 1)
    brings previous pixel x + 1 to x; the border pixel repeats. Confidence 0 on the last pixel."""
    previous = torch.tensor([[[[0.0, 0.2, 0.6]]]])
    fake = torch.tensor([[[[0.1, 0.6, 0.0]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[:, 0] = 1.0
    confidence = torch.tensor([[[[1.0, 1.0, 0.0]]]])
    # warp(previous) = [0.2, 0.6, 0.6]; |fake - warped| * c = [0.1, 0.0, 0.0]; mean over 3 pixels
    value = losses.temporal_l1(fake, previous, flow, confidence)
    assert float(value) == pytest.approx(0.1 / 3, abs=1e-7)
    # The opposite direction of warp would give [0.0, 0.0, 0.2] * c -> |.1| + |.6| over 3: not this value.
    backwards = losses.l1(fake, warp(previous, -flow), confidence)
    assert float(backwards) == pytest.approx(0.7 / 3, abs=1e-6)


def test_temporal_l1_pushes_only_the_current_frame():
    previous = torch.rand(1, 3, 8, 8, requires_grad=True)
    fake = torch.rand(1, 3, 8, 8, requires_grad=True)
    losses.temporal_l1(fake, previous, torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 8, 8)).backward()
    assert previous.grad is None and fake.grad.abs().sum() > 0


def test_temporal_l1_stays_fp32_under_bf16_autocast():
    """The CPU stand-in of the CUDA bf16 path: the term is computed and returned in fp32."""
    previous, fake = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    flow = torch.full((1, 2, 8, 8), 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = losses.temporal_l1(fake.bfloat16(), previous.bfloat16(), flow, torch.ones(1, 1, 8, 8))
    assert value.dtype == torch.float32
    want = losses.temporal_l1(fake.bfloat16().float(), previous.bfloat16().float(), flow, torch.ones(1, 1, 8, 8))
    # The warp samples in fp32 and hands back the image's dtype: only that bf16 rounding of the warped frame.
    assert float(value) == pytest.approx(float(want), rel=1e-3)


def test_generator_terms_take_the_previous_output_and_the_frames_teacher(dancers):  # noqa: F811
    """Frame t's term reads the previous generated frame, the stored flow of frame t (to t - 1) and its confidence;
    frame 0 has none, and a zero weight leaves the term out (imaginaire's recipes)."""
    from vid2vid.training.config import make_generator
    from vid2vid.training.frame_step import generator_terms, weighted_total

    cfg = tiny(dancers, loss={"weights": {"temporal_l1": 10.0, "perceptual": 0}})
    batch = batch_of(cfg)
    torch.manual_seed(0)
    outs = generate_clip(make_generator(cfg).eval(), batch)
    previous = outs[1].fake_images.detach()
    terms = generator_terms(outs[2], batch, 2, cfg, None, previous)
    want = (batch["flow_confidence"][:, 2]
            * (outs[2].fake_images - warp(previous, batch["flow"][:, 2])).abs()).mean()
    assert float(terms["G/temporal_l1"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    weighted = weighted_total({"G/temporal_l1": terms["G/temporal_l1"]}, cfg.loss.weights)
    assert float(weighted.detach()) == pytest.approx(10 * float(want.detach()), rel=1e-6)
    assert "G/temporal_l1" not in generator_terms(outs[0], batch, 0, cfg, None, None)
    off = tiny(dancers)
    assert off.loss.weights.temporal_l1 == 0
    assert "G/temporal_l1" not in generator_terms(outs[2], batch, 2, off, None, previous)


def test_training_feeds_the_term_the_frame_generated_just_before(dancers, monkeypatch):  # noqa: F811
    import vid2vid.train as training
    from vid2vid.training import frame_step
    from vid2vid.training.nets import build_nets

    cfg = tiny(dancers, loss={"weights": {"temporal_l1": 1.0, "perceptual": 0}})
    seen = []
    real_terms = frame_step.generator_terms

    def generator_terms(out, batch, t, cfg, perceptual, previous_fake=None):
        seen.append((t, None if previous_fake is None else previous_fake.clone()))
        return real_terms(out, batch, t, cfg, perceptual, previous_fake)

    generated = []
    real_step = training.step

    def step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        generated.append(out.fake_images.detach().clone())
        return out

    monkeypatch.setattr(frame_step, "generator_terms", generator_terms)
    monkeypatch.setattr(training, "step", step)
    torch.manual_seed(0)
    record = training.train_clip(build_nets(cfg, torch.device("cpu"), None), batch_of(cfg), cfg)
    assert [t for t, _ in seen] == [0, 1, 2] and seen[0][1] is None
    assert torch.equal(seen[1][1], generated[0]) and torch.equal(seen[2][1], generated[1])
    assert "G/temporal_l1" in record.means()


# ------------------------------------------------------------------------------------- K per batch


def test_references_at_draws_every_k_the_same_on_every_rank():
    from vid2vid.train import references_at

    data = DataConfig(task="pose", num_references=4, min_references=1)
    drawn = [references_at(0, i, data) for i in range(400)]
    assert set(drawn) == {1, 2, 3, 4}
    assert all(80 <= drawn.count(k) <= 120 for k in (1, 2, 3, 4))  # uniform: 100 each expected
    assert drawn == [references_at(0, i, data) for i in range(400)]  # a function of (seed, iteration) only
    assert drawn != [references_at(1, i, data) for i in range(400)]
    fixed = DataConfig(task="pose", num_references=2)
    assert {references_at(0, i, fixed) for i in range(50)} == {2}


def test_min_references_is_checked():
    with pytest.raises(ValueError, match="min_references must be between 1 and num_references"):
        DataConfig(task="pose", num_references=2, min_references=3)
    with pytest.raises(ValueError, match="min_references"):
        DataConfig(task="pose", num_references=2, min_references=0)


def test_with_references_keeps_the_first_k_and_their_teacher_flows(dancers):  # noqa: F811
    from vid2vid.train import with_references

    cfg = tiny(dancers, data={"num_references": 3})
    batch = batch_of(cfg)
    cut = with_references(batch, 2)
    assert cut["ref_images"].shape[1] == 2 and cut["ref_labels"].shape[1] == 2
    assert torch.equal(cut["ref_images"], batch["ref_images"][:, :2])
    assert cut["ref_flow"].shape[2] == 2 and torch.equal(cut["ref_flow"], batch["ref_flow"][:, :, :2])
    assert torch.equal(cut["ref_flow_confidence"], batch["ref_flow_confidence"][:, :, :2])
    assert batch["ref_images"].shape[1] == 3  # the loaded batch is left as it was
    assert with_references(batch, 3) is batch


def test_training_with_k_per_batch_runs_every_k(dancers, monkeypatch):  # noqa: F811
    import vid2vid.train as training

    cfg = tiny(dancers, data={"num_references": 3, "min_references": 1})
    cfg.schedule.iterations = 6
    seen = []
    real = training.train_clip

    def train_clip(nets, batch, *args):
        seen.append(batch["ref_images"].shape[1])
        return real(nets, batch, *args)

    monkeypatch.setattr(training, "train_clip", train_clip)
    result = training.train(cfg, dancers.parent / "k_per_batch", overwrite=True, progress=False)
    assert seen == [training.references_at(cfg.run.seed, i, cfg.data) for i in range(6)]
    assert len(set(seen)) > 1
    # Its checkpoint renders: generation reads the training data config with the references switched off.
    from vid2vid.generate import data_config_for, load_for_inference
    model = load_for_inference(result.last_checkpoint, torch.device("cpu"))
    data = data_config_for(result.last_checkpoint, model, None)
    assert (data.num_references, data.min_references, data.clip_length) == (0, None, 1)


def test_spread_references_take_one_frame_from_each_run():
    rng = np.random.default_rng(0)
    others = list(range(0, 4)) + list(range(8, 20))  # the clip holds 4..7
    for _ in range(50):
        refs = spread_references(others, 4, rng)
        assert len(set(refs)) == 4 and set(refs) <= set(others)
        runs = np.array_split(np.asarray(others), 4)
        assert sorted(refs) == sorted(int(next(r for r in run if r in refs)) for run in runs)
    assert spread_references(others, 0, rng) == []


def test_dataset_references_stay_outside_the_clip(dancers):  # noqa: F811
    cfg = tiny(dancers, data={"num_references": 4})
    clips = VideoClips(cfg.data_root, cfg.data, seed=0)
    for i in range(20):
        _, clip, refs = clips.choose(np.random.default_rng([0, 0, i]))
        assert len(refs) == 4 and not set(refs) & set(clip)


# ---------------------------------------------------------------------------------- heads start at zero


@pytest.mark.parametrize("gain", [0.02, 1.0])
def test_flow_and_mask_heads_start_at_zero_flow_and_an_even_blend(dancers, gain):  # noqa: F811
    from vid2vid.training.config import make_generator
    from vid2vid.training.nets import init_weights

    cfg = tiny(dancers, data={"num_references": 2})
    G = make_generator(cfg)
    init_weights(G, gain)
    batch = batch_of(cfg)
    outs = generate_clip(G.eval(), batch)
    for flow in outs[1].fake_flow_maps:
        assert flow is not None and float(flow.detach().abs().max()) == 0
    for mask in outs[1].fake_occlusion_masks:
        assert torch.allclose(mask, torch.full_like(mask, 0.5))
    # The rest follows the gain: a trunk conv is not zero.
    trunk = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(float(m.weight.abs().max()) > 0 for m in trunk)


# ----------------------------------------------------------------------------- the reference warped in


def test_steady_reference_switches_only_past_the_margin():
    from vid2vid.models.fs_vid2vid import FewShotGenerator

    from .conftest import tiny_few_shot_config
    G = FewShotGenerator(tiny_few_shot_config(reference_switch_margin=0.25)).eval()

    def attention(*masses):  # (B=1, K, 2, 2) maps whose sums are the given masses
        return torch.tensor(masses, dtype=torch.float32).view(1, -1, 1, 1).expand(1, len(masses), 2, 2) / 4

    def argmax(a):
        return a.flatten(2).sum(2).argmax(1)

    a = attention(10.0, 6.0)
    assert G.steady_reference(a, argmax(a), continuing=False).tolist() == [0]
    b = attention(10.0, 12.0)  # reference 1 leads by 20%: under the margin, reference 0 stays
    assert G.steady_reference(b, argmax(b), continuing=True).tolist() == [0]
    c = attention(10.0, 13.0)  # by 30%: it switches
    assert G.steady_reference(c, argmax(c), continuing=True).tolist() == [1]
    assert G.steady_reference(b, argmax(b), continuing=True).tolist() == [1]  # and now reference 1 is kept
    assert G.steady_reference(b, argmax(b), continuing=False).tolist() == [1]  # a new sequence: the argmax
    G.reset()
    assert G.last_ref_idx is None
    imaginaire = FewShotGenerator(tiny_few_shot_config()).eval()  # margin 0: the argmax every frame
    imaginaire.steady_reference(a, argmax(a), continuing=False)
    assert imaginaire.steady_reference(b, argmax(b), continuing=True).tolist() == [1]


def _densepose_label(parts, size=(64, 64)) -> torch.Tensor:
    """A (6, H, W) pose label: DensePose I in channel 2 (I/24*2-1) with the given parts on its first pixels,
    background -1 elsewhere and in the other channels."""
    label = -torch.ones(6, *size)
    flat = label[2].view(-1)
    for i, part in enumerate(parts):
        flat[i] = part / 24 * 2 - 1
    return label


def test_densepose_parts_are_the_shares_of_the_body_parts_without_the_face():
    from vid2vid.models.fs_vid2vid import densepose_parts

    shares = densepose_parts(_densepose_label([2, 2, 16, 15, 23, 24]))  # the face parts do not count
    assert shares.shape == (22,)
    expected = torch.zeros(22)
    expected[[1, 15, 14]] = torch.tensor([0.5, 0.25, 0.25])  # parts 2, 16, 15 at indices 1, 15, 14
    assert torch.equal(shares, expected)
    assert torch.equal(densepose_parts(_densepose_label([])), torch.zeros(22))  # no person: all zero
    # Labels in bf16 (a CUDA autocast run): every part index 0..24 still decodes to itself.
    every = _densepose_label(list(range(1, 25)))
    assert torch.equal(densepose_parts(every.bfloat16()), densepose_parts(every))
    assert torch.equal(densepose_parts(every), torch.full((22,), 1 / 22))


@pytest.mark.parametrize("training", [True, False])
def test_densepose_choice_warps_in_the_reference_that_shows_the_targets_side(training):
    from vid2vid.models.fs_vid2vid import FewShotGenerator

    from .conftest import tiny_few_shot_config
    G = FewShotGenerator(tiny_few_shot_config(warp_reference_choice="densepose", reference_switch_margin=0.25))
    G.train(training)
    back = _densepose_label([1] * 40 + [16] * 10 + [15] * 10)  # torso and upper arms seen from behind
    front = _densepose_label([2] * 40 + [18] * 10 + [17] * 10)
    front_other_pose = _densepose_label([2] * 30 + [18] * 20 + [17] * 5)
    refs = torch.stack([back, front_other_pose, front, back])  # K = 4
    images = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 64, 64) / 10  # reference k is all k / 10
    for target, expected in ((front, 2), (back, 0), (front_other_pose, 1)):
        out = G(target[None], refs[None], images)
        assert out.ref_idx.tolist() == [expected]
        # The flow head starts at zero: the warped reference is the chosen one as it is.
        assert torch.allclose(out.warped_images[0], torch.full((1, 3, 64, 64), expected / 10))
    with pytest.raises(ValueError, match="warp_reference_choice"):
        tiny_few_shot_config(warp_reference_choice="nearest")
    with pytest.raises(ValueError, match="needs pose_type 'both'"):
        tiny_few_shot_config(warp_reference_choice="densepose", pose_type="open")


@pytest.mark.parametrize("training", [True, False])
def test_densepose_merge_renders_each_frame_from_its_nearest_reference_alone(training):
    """reference_merge densepose: each frame is what the K = 1 model makes of the reference nearest its DensePose
    parts, warped in too; along a sequence (eval mode, references cached) a change of side changes the reference,
    a change of pose on one side does not."""
    from vid2vid.models.fs_vid2vid import FewShotGenerator

    from .conftest import randomize, tiny_few_shot_config
    G = randomize(FewShotGenerator(tiny_few_shot_config(reference_merge="densepose")), seed=5)
    G.train(training)
    back = _densepose_label([1] * 40 + [16] * 10 + [15] * 10)
    front = _densepose_label([2] * 40 + [18] * 10 + [17] * 10)
    front_other_pose = _densepose_label([2] * 30 + [18] * 20 + [17] * 5)
    refs = torch.stack([back, front_other_pose, front])[None]  # K = 3
    images = torch.rand(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    prev_label, prev_image = None, None
    with torch.no_grad():
        # The last frame's parts are 0.39 (L1) from reference 1's, 0 from reference 2's: in eval mode, along the
        # sequence, reference 1 is kept (within densepose_switch_margin 0.5); in training each frame picks afresh.
        sequence = ((front, 2), (front, 2), (back, 0), (front_other_pose, 1), (front, 2 if training else 1))
        for target, expected in sequence:
            prev = {} if prev_label is None else {"prev_labels": prev_label, "prev_images": prev_image}
            alone = FewShotGenerator(G.cfg)  # a copy from before the call: spectral norm steps in training
            alone.load_state_dict(G.state_dict())
            alone.train(training)
            out = G(target[None], refs, images, **prev)
            assert out.ref_idx.tolist() == [expected] and out.attention is None
            one = alone(target[None], refs[:, expected:expected + 1], images[:, expected:expected + 1], **prev)
            assert torch.equal(out.fake_images, one.fake_images)
            assert torch.equal(out.warped_images[0], one.warped_images[0])
            prev_label, prev_image = target[None, None], out.fake_images[:, None]
    with pytest.raises(ValueError, match="reference_merge must be"):
        tiny_few_shot_config(reference_merge="nearest")
    with pytest.raises(ValueError, match="reference_merge 'densepose' needs pose_type 'both'"):
        tiny_few_shot_config(reference_merge="densepose", pose_type="open")


# ------------------------------------------------------------------ few-shot vid2vid's linear blend (paper eq. 1)


def test_few_shot_linear_blend_is_the_papers_equation():
    """x_t = (1 - m_prev) * warp(x_{t-1}) + m_prev * ((1 - m_ref) * warp(ref) + m_ref * h_t), with h_t decoded from
    the label alone (no warped image among the SPADE conditions), and h_t as the raw output."""
    from vid2vid.models.fs_vid2vid import FewShotGenerator

    from .conftest import few_shot_inputs, randomize, tiny_few_shot_config
    cfg = tiny_few_shot_config(temporal_combine="linear", num_prev_frames=1)
    G = randomize(FewShotGenerator(cfg), seed=3).eval()
    assert not hasattr(G, "ref_image_embedding") and not hasattr(G, "prev_image_embedding")
    # one SPADE input per decoder norm (the label's; generated or projected), where the spade form has three
    assert all(len(block.norm_0.projections) + block.norm_0.generated_first == 1 for block in G.decoder)
    x = few_shot_inputs(cfg, k=2, t=1, seed=1)
    label, ref_labels, ref_images, prev_labels, prev_images = (
        x[name] for name in ("label", "ref_labels", "ref_images", "prev_labels", "prev_images"))
    with torch.no_grad():
        out = G(label, ref_labels, ref_images, prev_labels, prev_images)
        first = G(label, ref_labels, ref_images)  # no previous frame: only the reference is blended in
    (m_ref, m_prev), (w_ref, w_prev) = out.fake_occlusion_masks, out.warped_images
    h = out.fake_raw_images
    assert 0.05 < float(m_ref.mean()) < 0.95 and 0.05 < float(m_prev.mean()) < 0.95  # both blends take part
    by_hand = (1 - m_prev) * w_prev + m_prev * ((1 - m_ref) * w_ref + m_ref * h)
    assert torch.allclose(out.fake_images, by_hand, atol=1e-6)
    assert not torch.allclose(out.fake_images, h, atol=1e-3)
    ref = ref_images[torch.arange(1), out.ref_idx]
    assert torch.allclose(w_ref, warp(ref, out.fake_flow_maps[0]), atol=1e-6)
    assert torch.allclose(w_prev, warp(prev_images[:, -1], out.fake_flow_maps[1]), atol=1e-6)
    m_ref, w_ref = first.fake_occlusion_masks[0], first.warped_images[0]
    assert first.warped_images[1] is None
    assert torch.allclose(first.fake_images, (1 - m_ref) * w_ref + m_ref * first.fake_raw_images, atol=1e-6)


def test_few_shot_temporal_combine_is_checked():
    from .conftest import tiny_few_shot_config
    with pytest.raises(ValueError, match="temporal_combine must be 'spade' or 'linear'"):
        tiny_few_shot_config(temporal_combine="mean")


def test_linear_blend_few_shot_trains_and_its_warp_terms_reach_the_flow_networks(dancers):  # noqa: F811
    """One training run of the linear form: the flow networks get gradients through the blend (the output's GAN,
    L1 and temporal terms) as well as their own terms, and the checkpoint renders a sequence."""
    from vid2vid.generate import load_for_inference
    from vid2vid.step import References, new_history, step
    from vid2vid.train import train
    from vid2vid.training.config import make_generator

    from .conftest import TINY_GENERATOR
    cfg = tiny(dancers, generator={**TINY_GENERATOR, "temporal_combine": "linear"},
               loss={"weights": {"perceptual": 0, "temporal_l1": 10}})
    G = make_generator(cfg)
    batch = batch_of(cfg)
    outs = generate_clip(G.train(), batch)
    loss = sum((o.fake_images - batch["images"][:, t]).abs().mean() for t, o in enumerate(outs))
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0
               for p in (G.flow_network_ref.mask_head.conv.weight, G.flow_network_prev.mask_head.conv.weight))
    result = train(cfg, dancers.parent / "linear_few_shot", overwrite=True, progress=False)
    model = load_for_inference(result.last_checkpoint, torch.device("cpu"))
    assert model.cfg.temporal_combine == "linear"
    history, refs = new_history(model), References(batch["ref_labels"][:1], batch["ref_images"][:1])
    with torch.no_grad():
        frames = [step(model, batch["labels"][:1, t], history, refs).fake_images for t in range(3)]
    assert all(f.shape == (1, 3, 32, 32) and torch.isfinite(f).all() for f in frames)
