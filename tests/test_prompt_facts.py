"""What a prompt states in numbers (a note, a tempo), and the conditioners that read it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.engine import Engine
from studio.errors import ModelConfigError
from studio.models import ModelConfig, build_model, load_model
from studio.models.conditioners import FactConditioner
from studio.prompt_facts import bpm_in, note_frequency, note_in, without_facts
from studio.request import Request
from tests.tiny import make_model_folder, tiny_config

FACTS = [
    {"id": "prompt", "type": "minilm", "config": {"max_length": 16}},
    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
    {"id": "note", "type": "note", "config": {}},
    {"id": "bpm", "type": "bpm", "config": {}},
]


def facts_config() -> dict:
    return tiny_config(**{
        "model.conditioning.configs": FACTS,
        "model.diffusion.cross_attention_cond_ids": ["prompt", "seconds_total", "note", "bpm"],
    })  # fmt: skip


@pytest.mark.parametrize(
    ("prompt", "midi"),
    [
        ("piano note C4", 60),
        ("bass note A1", 33),
        ("Bb1 sub bass", 34),
        ("bell note G#5", 80),
        ("warm pad, F sharp 2", 42),
        ("note Db3 on a marimba", 49),
        ("c4 piano", 60),
        ("lowest note C-1", 0),
        ("E major chord", None),  # a pitch class, not a note
        ("a 4 second kick", None),  # the octave must follow the letter
        ("808 kick", None),
        ("abc3 texture", None),
        ("G#9", None),  # above MIDI 127
    ],
)
def test_a_prompt_names_a_note(prompt, midi):
    assert note_in(prompt) == midi


@pytest.mark.parametrize(
    ("prompt", "bpm"),
    [
        ("drum loop at 120 BPM", 120.0),
        ("117bpm breakbeat", 117.0),
        ("house groove, 124.5 bpm", 124.5),
        ("90 beats per minute", 90.0),
        ("kick drum", None),
        ("5 BPM", None),
        ("drum loop 1200 BPM", None),
    ],
)
def test_a_prompt_names_a_tempo(prompt, bpm):
    assert bpm_in(prompt) == bpm


@pytest.mark.parametrize(
    ("prompt", "plain"),
    [
        ("piano note C4", "piano note"),
        ("plucky saw bass C#2, long sustain", "plucky saw bass, long sustain"),
        ("a soft string ensemble note playing E4, short note", "a soft string ensemble note, short note"),
        ("long tail, 808 bass drum G1, deep", "long tail, 808 bass drum, deep"),
        ("house drum loop 120 BPM, four on the floor", "house drum loop, four on the floor"),
        ("a dark techno drum loop at 140 BPM, driving hats", "a dark techno drum loop, driving hats"),
        ("pluck, 139 BPM, A# major arpeggio", "pluck, A# major arpeggio"),
        ("F sharp 2 bass at 90 beats per minute", "bass"),
        ("a 4 second kick", "a 4 second kick"),  # nothing stated, nothing taken
        ("E major chord", "E major chord"),
    ],
)
def test_a_prompt_without_its_facts_keeps_every_other_word(prompt, plain):
    assert without_facts(prompt) == plain
    assert note_in(without_facts(prompt)) is None and bpm_in(without_facts(prompt)) is None


def test_note_frequencies_are_equal_tempered_at_a440():
    assert note_frequency(69) == 440.0
    assert note_frequency(60) == pytest.approx(261.6256, abs=1e-4)


def test_fact_tokens_tell_notes_apart_and_give_unstated_facts_their_own_token():
    torch.manual_seed(0)
    note = FactConditioner(32, "note", 0, 127, 12.0)
    with torch.no_grad():
        note.absent.normal_()
        c4, d4, c5, none, again = note(["piano C4", "piano D4", "piano C5", "piano", "bell note C4"])[:, 0]
    # the number is read, not the words around it (to rounding: a CPU's GEMM may sum a row of a
    # batch in another order than the row before it)
    torch.testing.assert_close(c4, again)
    assert not torch.allclose(c4, d4) and not torch.allclose(c4, c5)
    assert torch.equal(none, note.absent)
    # Without the octave feature's share, C4 and C5 differ only by the octave's span of the number.
    tempo = FactConditioner(32, "bpm", 20, 400, None)
    slow, fast, unstated = tempo(["loop 90 BPM", "loop 140 BPM", "loop"])[:, 0]
    assert not torch.allclose(slow, fast) and torch.equal(unstated, tempo.absent)


def test_a_model_with_note_and_tempo_conditioners_saves_loads_and_generates(tmp_path):
    folder = make_model_folder(tmp_path / "facts", facts_config())
    model = load_model(folder)
    assert isinstance(model.conditioners["note"], FactConditioner)
    original = build_model(ModelConfig.from_dict(facts_config()))
    assert model.state_dict().keys() == original.state_dict().keys()
    cond = model.condition(["piano note C4", "drum loop at 120 BPM"], [1.0, 1.0])
    assert cond.context.shape[1] == 16 + 3  # prompt tokens, seconds, note, bpm

    with Engine(folder, warmup=False) as engine:
        takes = [
            engine.generate(Request(prompt, seconds=0.5, steps=2, seed=4)).takes[0].audio
            for prompt in ("piano note C4", "piano note C4", "piano note F#4")
        ]
    assert np.array_equal(takes[0], takes[1])
    assert not np.allclose(takes[0], takes[2])  # only the note differs, and it is heard


def test_an_unknown_conditioner_type_is_refused_with_the_supported_ones(tmp_path):
    config = tiny_config(**{"model.conditioning.configs": [*FACTS[:2], {"id": "key", "type": "key"}]})
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match="note, bpm"):
        ModelConfig.from_file(path)
