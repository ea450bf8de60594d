"""Loading our own and reference checkpoints, and refusing broken ones with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import make_model_folder, tiny_config, write_config

from studio.errors import CheckpointError, ModelConfigError
from studio.models import ModelConfig, load_model, save_model
from studio.models.checkpoint import build_model, key_table
from studio.models.dit import patchify, unpatchify
from studio.models.oobleck import OobleckDecoder, OobleckEncoder, WNConv1d

RECIPE_CONFIGS = sorted((Path(__file__).parent.parent / "recipes").glob("*/model_config.json"))


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=lambda path: path.parent.name)
def test_every_recipe_config_builds_and_its_vae_keeps_the_declared_hop(path):
    config = ModelConfig.from_file(path)
    model = build_model(config).eval()
    hop = config.autoencoder.downsampling_ratio
    with torch.no_grad():
        latents = model.vae.encode(torch.zeros(1, config.audio_channels, 4 * hop))
        audio = model.vae.decode(latents)
    assert latents.shape[-1] == 4
    assert audio.shape == (1, config.audio_channels, 4 * hop)
    assert config.latent_length * hop == config.sample_size


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def test_save_then_load_gives_identical_tensors(tmp_path, tiny_model_dir):
    model = load_model(tiny_model_dir)
    again = load_model(save_model(model, tmp_path / "copy"))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_loaded_weights_own_aligned_memory(fixture_dir):
    """Not views into the file's buffer, where most tensors start at offsets no kernel aligns to."""
    model = load_model(fixture_dir)
    tensors = model.state_dict()
    assert [name for name, t in tensors.items() if t.data_ptr() % 64] == []
    storages = {t.untyped_storage().data_ptr() for t in tensors.values()}
    assert len(storages) == len(tensors)


def test_saved_file_uses_reference_key_names(tiny_model_dir):
    keys = set(load_file(str(tiny_model_dir / "model.safetensors")))
    assert "model.model.transformer.layers.0.self_attn.to_qkv.weight" in keys
    assert "pretransform.model.decoder.layers.1.layers.1.weight_v" in keys
    assert "conditioner.conditioners.seconds_total.embedder.embedding.0.weights" in keys
    assert "conditioner.conditioners.prompt.proj_out.weight" in keys  # MiniLM 384 -> cond_dim 64


NEAREST = "model.pretransform.config.decoder.config.use_nearest_upsample"


def test_patchify_folds_frames_channel_major_like_the_reference():
    x = torch.randn(2, 3, 10)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 3, 12)
    for t in range(2):  # reference: "b (t p) c -> b t (c p)"
        for c in range(3):
            for i in range(4):
                assert tokens[1, t, c * 4 + i] == x[1, c, t * 4 + i]
    assert torch.equal(tokens[:, 2, 2::4], torch.zeros(2, 3))  # the ragged end is zero-padded
    assert torch.equal(unpatchify(tokens, 4, 10), x)


def test_a_patched_dit_saves_reloads_and_predicts_any_latent_length(tmp_path):
    folder = make_model_folder(tmp_path / "model", tiny_config(**{"model.diffusion.config.patch_size": 4}))
    weights = load_file(str(folder / "model.safetensors"))
    assert weights["model.model.transformer.project_in.weight"].shape == (64, 8 * 4)
    assert weights["model.model.transformer.project_out.weight"].shape == (8 * 4, 64)
    model = load_model(folder)
    assert model.dit.patch_size == 4
    cond = model.condition(["kick"], [1.0])
    with torch.no_grad():
        for frames in (32, 30):
            velocity = model.velocity(torch.randn(1, 8, frames), torch.tensor([0.5]), cond)
            assert velocity.shape == (1, 8, frames) and velocity.isfinite().all()


def test_a_nearest_upsampling_decoder_saves_under_reference_keys_and_reloads(tmp_path):
    folder = make_model_folder(tmp_path / "model", tiny_config(**{NEAREST: True}))
    keys = set(load_file(str(folder / "model.safetensors")))
    # stable-audio-tools: layers.1 of a decoder block is Sequential(Upsample, WNConv1d without bias)
    assert "pretransform.model.decoder.layers.1.layers.1.1.weight_v" in keys
    assert not any(key.startswith("pretransform.model.decoder.layers.1.layers.1.bias") for key in keys)
    model = load_model(folder)
    assert model.config.autoencoder.decoder.nearest_upsample
    assert not load_model(make_model_folder(tmp_path / "plain")).config.autoencoder.decoder.nearest_upsample


def test_a_nearest_upsampling_decoder_keeps_a_steady_latent_steady(tmp_path):
    """The frame-rate hum of transposed convolutions cannot happen: far from the edges, a latent that
    does not change decodes to audio that does not change, whatever the weights."""
    config = ModelConfig.from_dict(tiny_config(**{NEAREST: True}))
    torch.manual_seed(0)
    decoder = OobleckDecoder(config.autoencoder.decoder)
    hop = config.autoencoder.downsampling_ratio
    latent = torch.randn(1, config.autoencoder.latent_dim, 1).expand(-1, -1, 64)
    with torch.no_grad():
        audio = decoder(latent)[0, :, 24 * hop : 40 * hop]
    assert audio.abs().mean() > 1e-4
    torch.testing.assert_close(audio, audio[:, :1].expand_as(audio), rtol=0, atol=1e-6)


@pytest.mark.parametrize("side", ["encoder", "decoder", "nearest-upsampling decoder"])
def test_cpu_inference_in_channels_last_memory_computes_what_the_plain_layout_does(side):
    """At inference on a CPU the Oobleck stacks run [B, C, 1, T] channels-last activations (faster
    there); the result is the [B, C, T] one's, strided, transposed and same-padded convolutions alike."""
    config = ModelConfig.from_dict(tiny_config(**{NEAREST: side.startswith("nearest")}))
    autoencoder = config.autoencoder
    torch.manual_seed(0)
    if side == "encoder":
        stack = OobleckEncoder(autoencoder.encoder)
        x = torch.randn(2, 2, 9 * autoencoder.downsampling_ratio, dtype=torch.float64)
        shape = (2, autoencoder.encoder.latent_dim, 9)
    else:
        stack = OobleckDecoder(autoencoder.decoder)
        x = torch.randn(2, autoencoder.latent_dim, 9, dtype=torch.float64)
        shape = (2, 2, 9 * autoencoder.downsampling_ratio)
    stack = stack.eval().double()
    for name, parameter in stack.named_parameters():  # snakes and biases unlike a fresh init's
        if name.endswith(("alpha", "beta", "bias")):
            torch.nn.init.normal_(parameter, 0.0, 0.5)
    with torch.no_grad():
        fast = stack(x)
    with torch.enable_grad():  # the training path keeps [B, C, T]
        plain = stack(x).detach()
    assert fast.shape == plain.shape == shape
    assert fast.is_contiguous() and plain.abs().mean() > 1e-3
    # the same sums in another order: in float64, rounding apart
    assert ((fast - plain).norm() / plain.norm()).item() < 1e-12


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's, the reference
@pytest.mark.parametrize("kernel", [4, 7, 16])
def test_same_padding_pads_as_torch_does_for_the_reference_decoder(kernel):
    """stable-audio-tools builds the nearest-upsampling conv with nn.Conv1d(padding='same'); an
    even kernel pads one sample more on the right there, and must here too."""
    torch.manual_seed(0)
    conv = WNConv1d(3, 5, kernel, padding="same", bias=False)
    x = torch.randn(2, 3, 50)
    with torch.no_grad():
        expected = torch.nn.functional.conv1d(x, conv.effective_weight(), padding="same")
        torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-6)


def test_nearest_upsampling_is_refused_on_the_encoder(model_copy):
    write_config(model_copy, tiny_config(**{NEAREST.replace("decoder", "encoder"): True}))
    with pytest.raises(ModelConfigError, match=r"use_nearest_upsample.*decoder option"):
        load_model(model_copy)


def test_missing_and_unexpected_keys_are_named(model_copy):
    path = model_copy / "model.safetensors"
    state = load_file(str(path))
    del state["model.model.transformer.layers.1.ff.ff.2.bias"]
    state["model.model.extra.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_model(model_copy)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): model.model.transformer.layers.1.ff.ff.2.bias" in message
    assert "unexpected keys (1): model.model.extra.weight" in message


def test_config_that_does_not_match_weights(model_copy):
    write_config(model_copy, tiny_config(**{"model.diffusion.config.depth": 3}))
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): model\.model\.transformer\.layers\.2"):
        load_model(model_copy)
    write_config(model_copy, tiny_config(**{"model.diffusion.config.embed_dim": 128}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(model_copy)


def test_corrupt_safetensors(model_copy):
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(model_copy)


def test_missing_weights_and_missing_config(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_model(model_copy)
    (model_copy / "model_config.json").unlink()
    with pytest.raises(ModelConfigError, match="no such file"):
        load_model(model_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.diffusion.diffusion_objective": "v"}, "diffusion_objective"),
        ({"model.pretransform.config.bottleneck.type": "rvq"}, "bottleneck"),
        ({"model.conditioning.configs": [{"id": "prompt", "type": "clap"}]}, "clap"),
        ({"model.diffusion.config.num_heads": 4}, "narrower than 32"),
        ({"sample_size": 1000}, "downsampling_ratio"),
        ({"model.pretransform.config.downsampling_ratio": 1024}, r"encoder strides .* multiply to 2048"),
        ({"model.diffusion.config.embed_dim": "wide"}, "should be int"),
        ({NEAREST: "yes"}, "'use_nearest_upsample' should be bool"),
        ({"default_cfg": 100}, "default_cfg"),
        ({"model.diffusion.config.patch_size": 0}, "patch_size"),
    ],
)
def test_unsupported_config_is_refused_with_the_field_named(model_copy, change, message):
    write_config(model_copy, tiny_config(**change))
    with pytest.raises(ModelConfigError, match=message) as info:
        load_model(model_copy)
    assert "model_config.json" in str(info.value)


def test_malformed_json(model_copy):
    (model_copy / "model_config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="not valid JSON"):
        load_model(model_copy)


def test_ckpt_is_read_weights_only(model_copy):
    state = load_file(str(model_copy / "model.safetensors"))
    (model_copy / "model.safetensors").unlink()
    torch.save({"state_dict": state}, model_copy / "model.ckpt")
    model = load_model(model_copy)
    table = key_table(model)
    key = "model.model.to_timestep_embed.0.weight"
    assert torch.equal(model.state_dict()[table[key]], state[key])


def test_ckpt_with_pickled_code_is_refused(model_copy):
    (model_copy / "model.safetensors").unlink()
    torch.save({"state_dict": {}, "callback": json.dumps}, model_copy / "model.ckpt")
    with pytest.raises(CheckpointError):
        load_model(model_copy)
