"""The GPU recipe's transport: a corpus and a model survive the trip through size-capped files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from studio.data import read_manifest
from studio.errors import StudioError
from studio.models import ModelConfig, build_model, load_model, save_model
from tests.test_training import write_corpus
from tests.tiny import make_model_folder, tiny_config, tiny_stft_config

REPO = Path(__file__).resolve().parents[1]


def recipe_script(name: str, path: str):
    """A recipe's script as a module (recipes/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def transport(monkeypatch):
    """recipes/studio-mini-gpu/transport.py, registered so its process pool can pickle its functions."""
    spec = importlib.util.spec_from_file_location("transport", REPO / "recipes/studio-mini-gpu/transport.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "transport", module)
    spec.loader.exec_module(module)
    return module


def test_a_packed_corpus_unpacks_to_the_same_clips_at_their_own_rates_and_lengths(transport, tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    rows.append({**rows[-1], "id": "synthetic/held-out", "split": "test"})
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    transport.pack_corpus(corpus, tmp_path / "packed", {"train", "valid"}, 0.5, workers=1)
    assert {p.suffix for p in (tmp_path / "packed" / "audio").iterdir()} == {".opus"}
    transport.unpack_corpus(tmp_path / "packed", tmp_path / "unpacked", workers=1)

    original = {clip.id: clip for clip in read_manifest(corpus)}
    unpacked = read_manifest(tmp_path / "unpacked")
    assert [clip.id for clip in unpacked] == [r["id"] for r in rows if r["split"] != "test"]
    for clip in unpacked:
        before, rate = sf.read(original[clip.id].file, always_2d=True)
        after, unpacked_rate = sf.read(clip.file, always_2d=True)
        assert (unpacked_rate, after.shape) == (rate, before.shape)
        if "sine" in clip.id:  # a tone comes back as itself, in time, not just as something as long
            assert np.corrcoef(before[:, 0], after[:, 0])[0, 1] > 0.95, clip.id


def test_a_model_packed_into_parts_unpacks_to_its_float16_weights(transport, tmp_path, monkeypatch):
    folder = make_model_folder(tmp_path / "model")
    monkeypatch.setattr(transport, "PART_BYTES", 40_000)
    transport.pack_model(folder, tmp_path / "out", "run")
    parts = sorted((tmp_path / "out").iterdir())
    assert len(parts) > 2 and all(p.stat().st_size <= 40_000 for p in parts)

    transport.unpack_model(tmp_path / "out", "run", tmp_path / "back")
    weights, back = (
        load_file(folder / "model.safetensors"),
        load_file(tmp_path / "back" / "model.safetensors"),
    )
    assert back.keys() == weights.keys()
    for name, tensor in weights.items():
        assert back[name].dtype == torch.float16
        torch.testing.assert_close(back[name], tensor.half())
    assert (tmp_path / "back" / "model_config.json").read_text() == (folder / "model_config.json").read_text()
    assert load_model(tmp_path / "back").config.dit is not None


def test_a_decoder_trained_under_the_same_encoder_is_grafted_under_the_dit(transport, tmp_path):
    model_folder = make_model_folder(tmp_path / "flow", seed=0)
    model, donor = load_model(model_folder), load_model(model_folder)
    with torch.no_grad():  # the decoder trained on beside the DiT: same encoder, other decoder and DiT
        for tensor in [*donor.vae.decoder.parameters(), *donor.dit.parameters()]:
            tensor.add_(torch.randn_like(tensor))
    save_model(donor, tmp_path / "decoder")

    transport.graft_decoder(model_folder, tmp_path / "decoder", tmp_path / "grafted")

    grafted = load_model(tmp_path / "grafted")
    for part, source in [("decoder", donor), ("encoder", model)]:
        for name, tensor in getattr(grafted.vae, part).state_dict().items():
            torch.testing.assert_close(tensor, getattr(source.vae, part).state_dict()[name])
    for name, tensor in grafted.dit.state_dict().items():
        torch.testing.assert_close(tensor, model.dit.state_dict()[name])


def test_a_decoder_of_a_new_layout_is_grafted_with_its_config_section(transport, tmp_path):
    """A band head trained under a model's frozen encoder: the graft takes the decoder's section
    of the config with it and keeps the model's DiT and encoder; float16 on request."""
    model_folder = make_model_folder(tmp_path / "flow", tiny_stft_config(), seed=0)
    banded = tiny_stft_config(**{"model.pretransform.config.decoder.config.head_bands": 8})
    donor = build_model(ModelConfig.from_dict(banded))
    donor.load_state_dict(load_model(model_folder).state_dict(), strict=False)
    with torch.no_grad():
        donor.vae.decoder.band_head.out.normal_()
    save_model(donor, tmp_path / "decoder")

    transport.graft_decoder(model_folder, tmp_path / "decoder", tmp_path / "grafted", "float16")

    grafted, model = load_model(tmp_path / "grafted"), load_model(model_folder)
    assert grafted.config.autoencoder.decoder.head_bands == 8
    assert {t.dtype for t in load_file(str(tmp_path / "grafted" / "model.safetensors")).values()} == {
        torch.float16
    }
    for name, tensor in donor.vae.decoder.state_dict().items():
        torch.testing.assert_close(grafted.vae.decoder.state_dict()[name], tensor.half().float())
    for name, tensor in model.dit.state_dict().items():
        torch.testing.assert_close(grafted.dit.state_dict()[name], tensor.half().float())


def test_a_decoder_from_another_encoder_is_refused(transport, tmp_path):
    make_model_folder(tmp_path / "flow", seed=0)
    make_model_folder(tmp_path / "other", seed=1)
    with pytest.raises(StudioError, match="not trained under the encoder") as refused:
        transport.graft_decoder(tmp_path / "flow", tmp_path / "other", tmp_path / "grafted")
    assert "--freeze-encoder" in refused.value.hint
    assert not (tmp_path / "grafted").exists()


def test_the_stft_recipe_packs_a_run_export_into_a_float16_autoencoder_folder(tmp_path):
    pack = recipe_script("stft_pack", "recipes/studio-mini-stft/pack.py")
    config = json.loads((REPO / "recipes/studio-mini-stft/model_config.json").read_text())
    config["model"]["diffusion"]["config"].update(embed_dim=128, depth=2, num_heads=4)  # a run's own DiT
    run_export = make_model_folder(tmp_path / "run" / "model", config, seed=3)
    out = pack.pack(run_export, tmp_path / "packed")
    assert {t.dtype for t in load_file(str(out / "model.safetensors")).values()} == {torch.float16}
    packed, trained = load_model(out), load_model(run_export)
    for name, tensor in trained.vae.state_dict().items():
        torch.testing.assert_close(packed.vae.state_dict()[name], tensor.half().float())
    assert packed.config.dit.depth == 1  # the recipe's placeholder DiT, not the run's


def test_the_stft_recipe_narrows_a_decoder_keeping_its_encoder_and_its_strongest_channels(tmp_path):
    narrow = recipe_script("stft_narrow", "recipes/studio-mini-stft/narrow.py")
    folder = make_model_folder(tmp_path / "model", tiny_stft_config(), seed=2)
    latents = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0))
    same = load_model(narrow.narrow(folder, 32, tmp_path / "same"))  # every channel kept: the same decoder
    model = load_model(folder)
    with torch.no_grad():
        torch.testing.assert_close(same.vae.decode(latents), model.vae.decode(latents))
    narrowed = load_model(narrow.narrow(folder, 24, tmp_path / "narrow"))
    assert narrowed.config.autoencoder.decoder.width == 24
    assert narrowed.vae.decoder.trunk.blocks[0].up.out_features == 72
    for name, tensor in model.vae.encoder.state_dict().items():
        torch.testing.assert_close(narrowed.vae.encoder.state_dict()[name], tensor)
    with torch.no_grad():
        assert narrowed.vae.decode(latents).shape == model.vae.decode(latents).shape


def test_the_v04_recipe_packs_a_flow_run_in_float16_with_the_recipes_sampling_defaults(tmp_path):
    pack = recipe_script("v04_pack", "recipes/studio-mini-v04/pack.py")
    beat_grid = tiny_config(**{"model.diffusion.config.beat_grid": True})
    run_export = make_model_folder(tmp_path / "run" / "model", beat_grid, seed=4)
    recipe = tmp_path / "recipe.json"
    defaults = {
        "default_cfg": 2.5,
        "guidance_interval": [0.0, 0.9],
        "grid_guidance": 6.0,
        "default_sampler": "euler",
        "default_steps": 3,
    }
    recipe.write_text(json.dumps({**json.loads((run_export / "model_config.json").read_text()), **defaults}))
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "README.md").write_text("model card")
    out = pack.pack(run_export, tmp_path / "packed", recipe)
    assert {t.dtype for t in load_file(str(out / "model.safetensors")).values()} == {torch.float16}
    assert json.loads((out / "model_config.json").read_text()).items() >= defaults.items()
    assert (out / "README.md").read_text() == "model card"
    packed, trained = load_model(out), load_model(run_export)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(packed.state_dict()[name], tensor.half().float())
    assert 30 < pack.half_precision_snr_db(run_export, out, prompt="kick drum", seed=1) < 200
