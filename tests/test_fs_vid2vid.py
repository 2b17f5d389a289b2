"""Few-shot generator behaviour on tiny configs: shapes, K at run time, batching, caching, labels."""

from unittest import mock

import pytest
import torch

from vid2vid import load_generator, save_generator
from vid2vid.models.fs_vid2vid import FewShotGenerator, remove_face_labels

from .conftest import few_shot_inputs, randomize, tiny_few_shot_config


def first_frame(inputs):
    return {k: v for k, v in inputs.items() if not k.startswith("prev")}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_any_k_from_the_input(tiny_generator, k):
    inputs = few_shot_inputs(tiny_generator.cfg, b=2, k=k)
    with torch.no_grad():
        out = tiny_generator(**inputs)
        again = tiny_generator(**inputs)
    assert out.fake_images.shape == (2, 3, 64, 64)
    assert out.fake_images.abs().max() < 1
    assert torch.equal(out.fake_images, again.fake_images)
    assert [f.shape for f in out.fake_flow_maps] == [(2, 2, 64, 64)] * 2
    assert [m.min() >= 0 and m.max() <= 1 for m in out.fake_occlusion_masks] == [True, True]
    if k == 1:
        assert out.ref_idx is None and out.attention_visualization is None
    else:
        assert out.ref_idx.shape == (2,) and out.ref_idx.max() < k
        assert out.attention.shape == (2, k, 16, 16)
        # Every target position distributes exactly one unit of attention over the references.
        assert torch.allclose(out.attention.sum(dim=(1, 2, 3)), torch.full((2,), 16.0 * 16), atol=1e-3)
        assert out.attention_visualization.shape == (1, 1, 16, 16)


def test_batch_samples_do_not_mix(tiny_generator):
    inputs = few_shot_inputs(tiny_generator.cfg, b=2, k=2)
    with torch.no_grad():
        batched = tiny_generator(**inputs).fake_images
        single = [tiny_generator(**{n: v[i:i + 1] for n, v in inputs.items()}).fake_images for i in range(2)]
    # Flows of ~50 px turn float32 rounding into differences of ~1e-4 after warping.
    assert torch.allclose(batched, torch.cat(single), atol=2e-4)


def test_reference_order_does_not_matter(tiny_generator):
    inputs = few_shot_inputs(tiny_generator.cfg, k=3, seed=1)
    order = torch.tensor([2, 0, 1])
    shuffled = dict(inputs, ref_labels=inputs["ref_labels"][:, order], ref_images=inputs["ref_images"][:, order])
    with torch.no_grad():
        out, out_shuffled = tiny_generator(**inputs), tiny_generator(**shuffled)
    assert torch.allclose(out.fake_images, out_shuffled.fake_images, atol=2e-4)
    assert order[out_shuffled.ref_idx].tolist() == out.ref_idx.tolist()


def test_eval_k1_reuses_first_frame_weights_until_reset(tiny_generator):
    g = tiny_generator
    inputs = few_shot_inputs(g.cfg, k=1)
    with mock.patch.object(g.weight_generator, "generate_weights", wraps=g.weight_generator.generate_weights) as spy:
        with torch.no_grad():
            g.reset()
            g(**first_frame(inputs))
            cached = g(**inputs).fake_images
            assert spy.call_count == 1
            g.reset()
            fresh = g(**inputs).fake_images  # nothing cached: computed from these references
            assert spy.call_count == 2
            g(**inputs)  # the same references again: cached weights
            assert spy.call_count == 2
            g(**dict(inputs, ref_images=inputs["ref_images"] + 0.5))  # other references: new weights
            assert spy.call_count == 3
            g(**few_shot_inputs(g.cfg, k=2))
            assert spy.call_count == 4
            g.train()
            g(**inputs)
            assert spy.call_count == 5
    assert torch.allclose(cached, fresh, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_eval_encodes_references_once_per_sequence(tiny_generator, k):
    """Streaming frames reuse the first frame's reference encoding and make exactly what fresh encoding makes;
    new or changed references are encoded again."""
    g = tiny_generator
    inputs = few_shot_inputs(g.cfg, k=k)
    labels = [torch.rand_like(inputs["label"]) * 2 - 1 for _ in range(3)]
    wg = g.weight_generator
    with mock.patch.object(wg, "encode_references", wraps=wg.encode_references) as spy, torch.no_grad():
        g.reset()
        g(**first_frame(inputs))
        streamed = [g(**dict(inputs, label=label)).fake_images for label in labels]
        assert spy.call_count == 1
        fresh = []
        for label in labels:
            g.reset()
            fresh.append(g(**dict(inputs, label=label)).fake_images)
        assert spy.call_count == 1 + len(labels)
        g(**dict(inputs, ref_images=inputs["ref_images"].clone()))  # equal values, another tensor
        assert spy.call_count == 2 + len(labels)
        inputs["ref_images"][:, 0].mul_(0.5)  # changed in place
        changed = g(**inputs).fake_images
        assert spy.call_count == 3 + len(labels)
        g.reset()
        assert torch.equal(changed, g(**inputs).fake_images)
    for a, b in zip(streamed, fresh, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(streamed[0], streamed[1])  # the labels differ, so must the frames


def test_attention_level_must_be_an_encoder_level():
    with pytest.raises(ValueError, match="attention_downsamples"):
        tiny_few_shot_config(attention_downsamples=9)


def test_pose_labels_lose_face_parts_except_in_references():
    face = 23 / 24 * 2 - 1
    labels = torch.zeros(1, 6, 2, 2)
    labels[:, 2] = torch.tensor([[face, 0.0], [1.0, -1.0]])  # parts 23, 12, 24, 0
    labels[:, 3:] = 0.5
    out = remove_face_labels(labels)
    assert out[0, :3, 0, 0].tolist() == [-1, -1, -1] and out[0, :3, 1, 0].tolist() == [-1, -1, -1]
    assert torch.equal(out[0, :, 0, 1], labels[0, :, 0, 1]) and torch.equal(out[:, 3:], labels[:, 3:])
    g = FewShotGenerator(tiny_few_shot_config())
    assert torch.equal(g.prepare_labels(labels, is_reference=True), labels)
    assert torch.equal(g.prepare_labels(labels, is_reference=False), out)


def test_face_labels_single_channel_k1_model():
    torch.manual_seed(0)
    cfg = tiny_few_shot_config(label_channels=1, pose_type=None, remove_face_labels=False, attention=False)
    g = randomize(FewShotGenerator(cfg)).eval()
    assert not any("attention" in name for name in g.state_dict())
    inputs = few_shot_inputs(cfg, k=1, h=32, w=64)
    with torch.no_grad():
        out = g(**inputs)
    assert out.fake_images.shape == (1, 3, 32, 64)
    with pytest.raises(ValueError, match="one reference image"):
        g(**few_shot_inputs(cfg, k=2, h=32, w=64))


def test_openpose_only_labels_drop_densepose_channels():
    torch.manual_seed(0)
    cfg = tiny_few_shot_config(pose_type="open")
    g = FewShotGenerator(cfg).eval()
    assert g.weight_generator.label_embedding.first.conv.parametrizations.weight.original.shape[1] == 3
    inputs = few_shot_inputs(cfg)
    changed = dict(inputs, label=torch.cat([-inputs["label"][:, :3], inputs["label"][:, 3:]], 1))
    with torch.no_grad():
        assert torch.equal(g(**inputs).fake_images, g(**changed).fake_images)


def test_previous_frames_are_used_only_when_enough_exist():
    torch.manual_seed(0)
    cfg = tiny_few_shot_config(num_prev_frames=2)
    g = randomize(FewShotGenerator(cfg)).eval()
    assert g.flow_network_prev is not g.flow_network_ref  # two previous frames need their own
    with torch.no_grad():
        short = g(**few_shot_inputs(cfg, t=1))
        full = g(**few_shot_inputs(cfg, t=2))
    assert short.fake_flow_maps[1] is None and full.fake_flow_maps[1].shape == (1, 2, 64, 64)


def test_raw_output_leaves_out_the_warped_inputs(tiny_generator):
    cfg = tiny_generator.cfg
    cfg.generate_raw_output = True
    with torch.no_grad():
        out = tiny_generator(**few_shot_inputs(cfg))
    cfg.generate_raw_output = False
    assert out.fake_raw_images.shape == out.fake_images.shape
    assert (out.fake_raw_images - out.fake_images).abs().max() > 1e-4


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    g = randomize(FewShotGenerator(tiny_few_shot_config())).train()
    out = g(**few_shot_inputs(g.cfg, b=2, k=2))
    loss = out.fake_images.square().mean() + sum(f.abs().mean() for f in out.fake_flow_maps) + \
        sum(m.mean() for m in out.fake_occlusion_masks)
    loss.backward()
    # The reference encoders' finest reducers exist only to load the reference's checkpoints.
    unused = ("weight_generator.image_encoder.up.0.", "weight_generator.label_encoder.up.0.")
    params = {n: p for n, p in g.named_parameters() if not n.startswith(unused)}
    missing = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]
    assert all(p.grad.abs().sum() > 0 for p in params.values())
    assert all(p.grad is None for n, p in g.named_parameters() if n.startswith(unused))


def test_bad_inputs_are_named():
    g = FewShotGenerator(tiny_few_shot_config())
    inputs = few_shot_inputs(g.cfg)
    with pytest.raises(ValueError, match="multiple of 32"):
        g(**few_shot_inputs(g.cfg, h=48))
    with pytest.raises(ValueError, match="ref_images"):
        g(**dict(inputs, ref_images=inputs["ref_images"][:, :, :2]))
    with pytest.raises(ValueError, match="label must be"):
        g(**dict(inputs, label=inputs["label"][:, :2]))


def test_save_load_round_trip(tiny_generator, tmp_path):
    inputs = few_shot_inputs(tiny_generator.cfg)
    save_generator(tiny_generator, tmp_path / "m")
    loaded = load_generator(tmp_path / "m")
    assert loaded.cfg == tiny_generator.cfg and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).fake_images, tiny_generator(**inputs).fake_images)
    with pytest.raises(FileExistsError):
        save_generator(tiny_generator, tmp_path / "m")
    assert not list((tmp_path / "m").glob(".*tmp"))
