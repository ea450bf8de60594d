"""Presets: the shipped bank, user presets on disk, and the errors a hand-edited file can cause."""

from __future__ import annotations

import tomllib

import pytest

from studio.errors import RequestError
from studio.presets import (
    Preset,
    PresetError,
    find_preset,
    load_presets,
    preset_for_note,
    save_user_preset,
    shipped_presets_dir,
    user_presets_dir,
)

SHIPPED_NAMES = {
    "808 kick",
    "punchy snare",
    "closed hi-hat",
    "sub bass",
    "foley footsteps",
    "riser",
    "downlifter impact",
    "vinyl texture",
    "warm pad",
    "FM bell",
    "rain ambience",
    "UI blip",
}


@pytest.fixture
def user_dir(tmp_path):
    return tmp_path / "user-presets"


def test_the_twelve_shipped_presets_load_as_a_pad_bank(user_dir):
    files = sorted(shipped_presets_dir().glob("*.toml"))
    presets = load_presets(user_dir)
    assert len(files) == 12 and set(presets) == SHIPPED_NAMES
    assert list(presets) == sorted(presets, key=str.casefold)
    assert sorted(p.midi_note for p in presets.values()) == list(range(60, 72))
    for preset in presets.values():
        assert preset.source == "shipped" and preset.prompt and preset.description
        assert 0 < preset.seconds <= 10 and preset.steps == 8
        assert preset.cfg is None  # guidance is the loaded model's own: 1 for ARC, more for flow and MAR
        assert preset_for_note(preset.midi_note, user_dir) == preset


def test_each_shipped_preset_makes_a_valid_request(user_dir):
    from studio.request import MAX_STEPS, MAX_VARIATIONS, Request

    for preset in load_presets(user_dir).values():
        request = preset.request()
        assert isinstance(request, Request)
        assert (request.prompt, request.seconds, request.steps, request.cfg) == (
            preset.prompt,
            preset.seconds,
            preset.steps,
            preset.cfg,
        )
        assert 1 <= request.steps <= MAX_STEPS and 1 <= request.variations <= MAX_VARIATIONS
        assert 0 <= request.diversity <= 1 and 0 < request.strength <= 1 and request.seed is None


def test_request_overrides_win_and_unknown_fields_are_refused(user_dir):
    kick = find_preset("808 kick", user_dir)
    request = kick.request(seed=7, seconds=2.5, init_audio="take.wav", strength=0.3)
    assert (request.seed, request.seconds, request.init_audio, request.strength) == (7, 2.5, "take.wav", 0.3)
    assert request.prompt == kick.prompt
    with pytest.raises(RequestError, match="unknown request fields"):
        kick.request(tempo=120)


def test_user_preset_saves_reloads_and_overrides_the_shipped_one(user_dir):
    mine = Preset(name="808 Kick", prompt="distorted 808 kick, long tail", seconds=2.0, seed=11, midi_note=60)
    path = save_user_preset(mine, user_dir)
    assert path == user_dir / "808-kick.toml" and [p.name for p in user_dir.iterdir()] == ["808-kick.toml"]
    presets = load_presets(user_dir)
    assert "808 kick" not in presets and len(presets) == 12
    loaded = presets["808 Kick"]
    assert loaded.source == "user" and loaded.prompt == mine.prompt and loaded.seed == 11
    assert preset_for_note(60, user_dir) == loaded
    assert find_preset("808 KICK", user_dir) == loaded


def test_saving_again_replaces_the_same_file(user_dir):
    save_user_preset(Preset(name="glass pad", prompt="glass pad"), user_dir)
    save_user_preset(Preset(name="Glass Pad", prompt="brighter glass pad", seconds=6), user_dir)
    assert [p.name for p in user_dir.iterdir()] == ["glass-pad.toml"]
    assert find_preset("glass pad", user_dir).prompt == "brighter glass pad"


def test_a_user_pad_wins_its_note_and_another_user_preset_cannot_take_it(user_dir):
    save_user_preset(Preset(name="my snare", prompt="snare", midi_note=61), user_dir)
    assert preset_for_note(61, user_dir).name == "my snare"
    assert preset_for_note(59, user_dir) is None
    with pytest.raises(PresetError, match="61 is already played by the user preset 'my snare'"):
        save_user_preset(Preset(name="other snare", prompt="snare", midi_note=61), user_dir)


def test_to_toml_round_trips_every_field_and_awkward_text():
    preset = Preset(
        name='quote " and \\ back',
        prompt="line one\nline two\ttabbed — ünïcode 🥁",
        negative_prompt="hiss",
        seconds=1.25,
        steps=12,
        cfg=3.5,
        variations=4,
        diversity=0.7,
        strength=0.45,
        seed=123,
        description="all fields",
        midi_note=72,
        tags=("a", "b c"),
        source="user",
    )
    data = tomllib.loads(preset.to_toml())
    assert Preset(**{**data, "tags": tuple(data["tags"]), "source": "user"}) == preset


@pytest.mark.parametrize(
    "body, problem",
    [
        ('name = "x"\nprompt = "y"\nseconds = \n', "not valid TOML"),
        ('name = "x"\nprompt = "y"\ntempo = 120\n', "unknown keys \\['tempo'\\]"),
        ('name = "x"\nprompt = "y"\nsource = "user"\n', "unknown keys"),
        ('name = "x"\n', "'prompt' is missing"),
        ('name = "x"\nprompt = "y"\nseconds = "long"\n', "'seconds' must be a finite number"),
        ('name = "x"\nprompt = "y"\nseconds = 0\n', "'seconds' must be more than 0"),
        ('name = "x"\nprompt = "y"\nseconds = inf\n', "'seconds' must be a finite number"),
        ('name = "x"\nprompt = "y"\nsteps = 8.5\n', "'steps' must be a whole number"),
        ('name = "x"\nprompt = "y"\nsteps = true\n', "'steps' must be a whole number"),
        ('name = "x"\nprompt = "y"\nvariations = 17\n', "'variations' must be from 1 to 16"),
        ('name = "x"\nprompt = "y"\nvariations = 0\n', "'variations' must be from 1 to 16"),
        ('name = "x"\nprompt = "y"\ndiversity = 1.5\n', "'diversity' must be from 0 to 1"),
        ('name = "x"\nprompt = "y"\nstrength = -0.1\n', "'strength' must be more than 0"),
        ('name = "x"\nprompt = "y"\nmidi_note = 128\n', "'midi_note' must be from 0 to 127"),
        ('name = "x"\nprompt = "y"\ntags = "drums"\n', "'tags' must be a list of text"),
        ('name = ""\nprompt = "y"\n', "'name' must be non-empty text"),
    ],
)
def test_a_malformed_file_names_itself_and_the_problem(user_dir, body, problem):
    user_dir.mkdir()
    (user_dir / "broken.toml").write_text(body)
    with pytest.raises(PresetError, match=problem) as caught:
        load_presets(user_dir)
    assert str(user_dir / "broken.toml") in caught.value.message


def test_two_user_files_with_one_name_are_an_error_naming_both(user_dir):
    user_dir.mkdir()
    (user_dir / "a.toml").write_text('name = "Pad"\nprompt = "a"\n')
    (user_dir / "b.toml").write_text('name = "pad"\nprompt = "b"\n')
    with pytest.raises(PresetError, match=r"b\.toml: the preset name 'pad' is also used by .*a\.toml"):
        load_presets(user_dir)


def test_an_invalid_preset_is_not_saved(user_dir):
    with pytest.raises(PresetError, match="'variations' must be from 1 to 16"):
        save_user_preset(Preset(name="many", prompt="x", variations=40), user_dir)
    with pytest.raises(PresetError, match="cannot make a file name"):
        save_user_preset(Preset(name="!!!", prompt="x"), user_dir)
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_find_preset_not_found_lists_the_names(user_dir):
    assert find_preset("fm BELL", user_dir).name == "FM bell"
    with pytest.raises(PresetError, match="no preset named 'cowbell'") as caught:
        find_preset("cowbell", user_dir)
    assert "808 kick" in caught.value.hint and "UI blip" in caught.value.hint


def test_the_user_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_PRESETS_DIR", str(tmp_path / "env-presets"))
    assert user_presets_dir() == tmp_path / "env-presets"
    save_user_preset(Preset(name="env pad", prompt="pad"))
    assert (tmp_path / "env-presets" / "env-pad.toml").is_file()
    assert load_presets()["env pad"].source == "user"
    monkeypatch.delenv("STUDIO_PRESETS_DIR")
    assert user_presets_dir().name == "presets" and "studio" in str(user_presets_dir())
