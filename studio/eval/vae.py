"""`studio eval vae`: what a model's autoencoder gives back of what it is given.

Held-out clips and synthetic probes (pure tones, General MIDI notes) go through the VAE and back
(posterior mean). The report (`vae.json`, `vae.md`) says how the round trips classify, how far
they are from the originals (multi-resolution STFT and mel distances, SI-SDR), whether they hold
pitch, whether tonal lines appear on the latent frame grid (comb score, frame-rate partials), DC,
rumble, flatness, and how long a decode takes. docs/eval.md defines every number.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from studio.audio import fit_length, load_audio
from studio.data.manifest import Clip
from studio.engine import Engine
from studio.eval import sound
from studio.eval.metrics import accuracy_summary, leave_one_out_accuracy, leave_one_out_predictions
from studio.eval.report import number
from studio.models import ModelConfig
from studio.models.spectral import StftDecoder, frame_spectra, overlap_add
from studio.prompt_facts import note_frequency
from studio.training import losses

Say = Callable[[str], None]

# Pure tones from 40 Hz to 4 kHz, 81 of them, 99.7 cents apart: 40·100^(i/80). Not on the
# equal-tempered notes, so between them they fall at every offset from a note; 21 a tenth of a
# decade apart missed that a decoder gave back only a few anchor frequencies above 1.2 kHz.
TONE_FREQUENCIES = tuple(round(40 * 100 ** (i / 80), 2) for i in range(81))
TONE_SECONDS, TONE_DBFS = 2.0, -12.0
# General MIDI notes (program, note), each in its instrument's own register, from E1 to C7.
GM_NOTES = (
    (0, 33), (0, 60), (0, 84),  # acoustic grand piano A1, C4, C6
    (32, 28), (33, 40),  # acoustic bass E1, fingered bass E2
    (48, 55), (48, 76),  # string ensemble G3, E5
    (40, 67), (73, 79), (56, 62),  # violin G4, flute G5, trumpet D4
    (19, 48), (11, 72), (89, 57),  # church organ C3, vibraphone C5, warm pad A3
    (24, 52), (80, 69), (4, 96),  # nylon guitar E3, square lead A4, electric piano C7
)  # fmt: skip
NOTE_SECONDS = 1.5
PITCH_TOLERANCE_CENTS = 10.0
DECODE_BATCHES = (1, 8)


@dataclass
class Probe:
    name: str
    audio: np.ndarray  # [channels, frames]
    f0: float  # the frequency it is tuned to


def _stereo(mono: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(mono[None].astype(np.float32), channels, axis=0)


def tone_probes(rate: int, channels: int) -> list[Probe]:
    """Sines at TONE_FREQUENCIES, TONE_DBFS, with 10 ms fades so their edges do not click."""
    t = np.arange(int(TONE_SECONDS * rate)) / rate
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    amplitude = 10 ** (TONE_DBFS / 20)
    return [
        Probe(f"sine {f:g} Hz", _stereo(amplitude * fade * np.sin(2 * np.pi * f * t), channels), f)
        for f in TONE_FREQUENCIES
    ]


def gm_note_probes(rate: int, channels: int) -> tuple[list[Probe], str | None]:
    """GM_NOTES rendered through this machine's General MIDI soundfont, and the font's name; no
    probes and None when there is no soundfont or renderer (`studio data setup` installs both)."""
    from studio.data.midi_render import playable_soundfonts, render_midi, to_midi

    # A font with the renderer that plays it right: MuseScore General's piano through
    # tinysoundfont is silent after half a second.
    playable = playable_soundfonts()
    if not playable:
        return [], None
    font, engine = playable[0]
    probes = []
    for program, note in GM_NOTES:
        midi = to_midi([(0.0, note, NOTE_SECONDS, 100, 0)], {0: program}, bpm=120)
        audio = render_midi(midi, font.path, rate, engine)[:, : int((NOTE_SECONDS + 0.5) * rate)]
        audio = audio / max(1e-6, float(np.abs(audio).max())) * 10 ** (-3 / 20)
        audio = audio if channels == 2 else audio.mean(axis=0, keepdims=True)
        probes.append(Probe(f"GM {program} note {note}", audio.astype(np.float32), note_frequency(note)))
    return probes, font.name


def _whole_frames(engine: Engine, audio: np.ndarray) -> torch.Tensor:
    """Audio [channels, frames] as a batch of one on the engine's device, padded to whole latent
    frames. Float32, as the engine hands the VAE its latents: the precision policy keeps the VAE out
    of the denoiser's dtype (it decodes in float16 only where a probe allowed it, and casts itself)."""
    hop = engine.model.vae.hop
    return torch.from_numpy(fit_length(audio, -(-audio.shape[1] // hop) * hop))[None].to(engine.device)


@torch.inference_mode()
def round_trip(engine: Engine, audio: np.ndarray) -> np.ndarray:
    """Audio [channels, frames] through the engine's VAE and back (posterior mean), same length."""
    vae = engine.model.vae
    decoded = vae.decode(vae.encode(_whole_frames(engine, audio)))
    return decoded[0, :, : audio.shape[1]].float().cpu().numpy()


@torch.inference_mode()
def swapped_halves(engine: Engine, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """An STFT decoder's round trip of audio [channels, frames] taken apart: (the magnitudes it
    writes with the original's phases, the original's magnitudes with the phases it writes), each
    overlap-added as the decoder does; None for another decoder.

    Frames a hop apart pin a partial's frequency by its phase only to within sample_rate / hop
    (86.1 Hz at hop 512): the magnitudes must put it within half that of the truth, and the phases
    pick the place. A tone that comes back off in the first half and right in the second was
    misplaced by the magnitudes the decoder writes."""
    vae = engine.model.vae
    decoder = vae.decoder
    if not isinstance(decoder, StftDecoder):
        return None
    padded = _whole_frames(engine, audio)
    written = decoder.written_spectra(vae.encode(padded) * vae.scale)
    original = frame_spectra(padded, decoder.n_fft, decoder.hop)
    halves = (torch.polar(written.abs(), original.angle()), torch.polar(original.abs(), written.angle()))
    magnitudes, phases = (
        overlap_add(half, decoder.n_fft, decoder.hop)[0, :, : audio.shape[1]].float().cpu().numpy()
        for half in halves
    )
    return magnitudes, phases


def autoencoder_round_trips(engine: Engine, clips: list[Clip]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each clip as the model reads it (its rate and channels, at most its length) and the same
    audio through the model's VAE and back (posterior mean).

    What the VAE keeps of a real clip bounds what any generator over its latents can sound like.
    """
    c = engine.config
    out = []
    for clip in clips:
        audio = load_audio(clip.file, c.sample_rate, c.audio_channels, max_seconds=c.max_seconds)
        out.append((audio, round_trip(engine, audio)))
    return out


@torch.inference_mode()
def decode_seconds(engine: Engine, batch: int, runs: int = 5) -> dict[str, float]:
    """Wall time of decoding `batch` takes of the model's full length (one warm-up, then `runs`)."""
    c = engine.config
    latents = torch.randn(
        (batch, c.autoencoder.latent_dim, c.latent_length), generator=torch.Generator().manual_seed(0)
    ).to(engine.device)
    times = []
    for _ in range(runs + 1):
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        engine.model.vae.decode(latents).float().cpu()
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    return {"median_s": median, "min_s": min(times[1:]), "per_take_s": median / batch}


def _distances(original: np.ndarray, copy: np.ndarray, rate: int) -> dict[str, float]:
    a, b = (torch.from_numpy(np.ascontiguousarray(x))[None].float() for x in (copy, original))
    return {
        "stft": losses.multi_resolution_stft_loss(a, b).item(),
        "mel": losses.multi_resolution_mel_loss(a, b, rate).item(),
        "si_sdr_db": sound.si_sdr_db(original, copy),
    }


def _summary(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return {"median": float("nan"), "p90": float("nan"), "max": float("nan")}
    return {"median": float(np.median(finite)), "p90": float(np.percentile(finite, 90)), "max": max(finite)}


def _by_category(values: list[float], labels: list[str]) -> dict[str, Any]:
    groups = {
        c: [v for v, label in zip(values, labels, strict=True) if label == c] for c in dict.fromkeys(labels)
    }
    return {**_summary(values), "per_category": {c: float(np.median(v)) for c, v in groups.items()}}


def pitch_report(probes: list[Probe], copies: list[np.ndarray], rate: int, of_notes: bool) -> dict[str, Any]:
    """Cents from each probe's pitch to its copy's: a tone's true frequency against the copy's
    strongest line; a note's loudest partial against the same partial in the copy."""
    errors = [
        sound.note_pitch_error_cents(p.audio, copy, rate, p.f0)
        if of_notes
        else sound.cents(sound.dominant_frequency(copy, rate), p.f0)
        for p, copy in zip(probes, copies, strict=True)
    ]
    within = [abs(e) <= PITCH_TOLERANCE_CENTS for e in errors]
    return {
        "tolerance_cents": PITCH_TOLERANCE_CENTS,
        "within_tolerance": sum(within),
        "count": len(errors),
        "max_abs_cents": max((abs(e) for e in errors), default=None),
        "median_abs_cents": float(np.median(np.abs(errors))) if errors else None,
        "cents": {p.name: e for p, e in zip(probes, errors, strict=True)},
    }


def vae_report(
    engine: Engine,
    clips: list[Clip],
    clip_embeddings: np.ndarray,
    embed: Callable[[list[tuple[np.ndarray, int]]], np.ndarray],
    say: Say,
) -> dict[str, Any]:
    """Every measure of `studio eval vae` for the engine's model on the held-out `clips` (whose aisfx
    embeddings are `clip_embeddings`) and on the synthetic probes."""
    c = engine.config
    rate, hop = c.sample_rate, c.autoencoder.downsampling_ratio
    labels = [clip.category for clip in clips]
    say(f"{len(clips)} held-out clips through the VAE and back")
    pairs = autoencoder_round_trips(engine, clips)
    trips = embed([(trip, rate) for _, trip in pairs])
    accuracy = accuracy_summary(labels, leave_one_out_predictions(clip_embeddings, labels, trips))
    distances = [_distances(original, trip, rate) for original, trip in pairs]
    grid = rate / 1024  # its multiples include those of rate / 512

    tones = tone_probes(rate, c.audio_channels)
    notes, font = gm_note_probes(rate, c.audio_channels)
    say(f"{len(tones)} pure tones and {len(notes)} General MIDI notes through the VAE and back")
    tone_trips = [round_trip(engine, p.audio) for p in tones]
    tone_halves = [swapped_halves(engine, p.audio) for p in tones]
    note_trips = [round_trip(engine, p.audio) for p in notes]
    say("timing the decoder")
    decode = {str(batch): decode_seconds(engine, batch) for batch in DECODE_BATCHES}
    return {
        "latent_frame_rate_hz": rate / hop,
        "round_trip_leave_one_out": accuracy["top1"],
        "held_out_leave_one_out": leave_one_out_accuracy(clip_embeddings, labels),
        "per_category": accuracy["per_category"],
        "confusion": accuracy["confusion"],
        "stft_distance": _by_category([d["stft"] for d in distances], labels),
        "mel_distance": _by_category([d["mel"] for d in distances], labels),
        "si_sdr_db": _by_category([d["si_sdr_db"] for d in distances], labels),
        "comb_score": {
            "grid_hz": grid,
            "round_trips": sound.comb_score([trip for _, trip in pairs], rate, grid),
            "originals": sound.comb_score([original for original, _ in pairs], rate, grid),
            "note_round_trips": sound.comb_score(note_trips, rate, grid) if notes else None,
        },
        "tone_pitch": pitch_report(tones, tone_trips, rate, of_notes=False),
        "tone_pitch_by_side": {
            "decoder_magnitudes_original_phases": pitch_report(
                tones, [h[0] for h in tone_halves], rate, of_notes=False
            ),
            "original_magnitudes_decoder_phases": pitch_report(
                tones, [h[1] for h in tone_halves], rate, of_notes=False
            ),
        }
        if tone_halves[0] is not None
        else None,
        "note_pitch": {"soundfont": font, **pitch_report(notes, note_trips, rate, of_notes=True)}
        if notes
        else {"soundfont": None, "skipped": "no General MIDI soundfont here: `studio data setup`"},
        "dc_offset_dbfs": {
            "round_trips": _summary([sound.dc_offset_dbfs(trip) for _, trip in pairs]),
            "originals": _summary([sound.dc_offset_dbfs(original) for original, _ in pairs]),
            "probe_round_trips": _summary([sound.dc_offset_dbfs(trip) for trip in tone_trips + note_trips]),
        },
        "low_band_excess_db": _by_category(
            [sound.low_band_excess_db(original, trip, rate) for original, trip in pairs], labels
        ),
        "frame_rate_partials_db": _by_category(
            [sound.frame_rate_partials_db(original, trip, rate, hop) for original, trip in pairs], labels
        ),
        "spectral_flatness_db": _by_category(
            [sound.spectral_flatness_db(original, trip, rate) for original, trip in pairs], labels
        ),
        "decode": {
            "take_seconds": c.max_seconds,
            "device": str(engine.device),
            "dtype": str(engine.model.vae.decoder_dtype).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(),
            "batches": decode,
        },
    }


def autoencoder_kind(config: ModelConfig) -> str:
    """ "oobleck" or "stft", by the encoder (a mixed pair is named "ENCODER+DECODER")."""
    kinds = [
        type(side).__name__.removesuffix("Config").lower()
        for side in (config.autoencoder.encoder, config.autoencoder.decoder)
    ]
    return kinds[0] if kinds[0] == kinds[1] else "+".join(kinds)


def _side_lines(report: dict[str, Any]) -> list[str]:
    sides = report.get("tone_pitch_by_side")
    if not sides:
        return []
    magnitudes = sides["decoder_magnitudes_original_phases"]
    phases = sides["original_magnitudes_decoder_phases"]
    return [
        "| … with the decoder's magnitudes and the original's phases / the original's magnitudes and "
        f"the decoder's phases | {magnitudes['within_tolerance']} / {phases['within_tolerance']} of "
        f"{magnitudes['count']} | which of the two misplaces a tone |"
    ]


def vae_markdown(report: dict[str, Any]) -> str:
    tones, notes, comb = report["tone_pitch"], report["note_pitch"], report["comb_score"]
    dc, decode = report["dc_offset_dbfs"], report["decode"]
    one, eight = decode["batches"]["1"], decode["batches"]["8"]
    stft, mel = report["stft_distance"], report["mel_distance"]
    partials, flatness = report["frame_rate_partials_db"], report["spectral_flatness_db"]
    note_line = (
        f"| GM notes within {notes['tolerance_cents']:g} cents ({notes['soundfont']}) | "
        f"{notes['within_tolerance']} of {notes['count']} (worst {number(notes['max_abs_cents'], 1)}) | all |"
        if notes.get("count")
        else f"| GM notes | not measured: {notes.get('skipped')} | |"
    )
    lines = [
        f"# Autoencoder: {report['model']} ({report['autoencoder']})",
        "",
        f"{report['date']}; {sum(report['corpus']['clips_per_category'].values())} held-out clips from "
        f"`{report['corpus']['path']}` (split `{report['corpus']['split']}`) and synthetic probes through "
        "the VAE and back (posterior mean). Definitions: docs/eval.md.",
        "",
        "| measure | value | target or reference |",
        "| --- | --- | --- |",
        "| round-trip category accuracy (aisfx, leave-one-out) | "
        f"{number(report['round_trip_leave_one_out'])} | "
        f"≥ 0.70; the real clips {number(report['held_out_leave_one_out'])} |",
        f"| comb score (top-{sound.COMB_PEAKS} peaks on multiples of {comb['grid_hz']:.2f} Hz) | "
        f"{number(comb['round_trips'])} | ≤ 0.08; the originals {number(comb['originals'])}, chance 0.04 |",
        f"| pure tones {TONE_FREQUENCIES[0]:g} Hz–{TONE_FREQUENCIES[-1]:g} Hz within "
        f"{tones['tolerance_cents']:g} cents | {tones['within_tolerance']} of {tones['count']} "
        f"(worst {number(tones['max_abs_cents'], 1)}) | all |",
        *_side_lines(report),
        note_line,
        f"| DC offset, worst round trip | {number(dc['round_trips'].get('max'), 1)} dBFS | below −50; the "
        f"originals' worst {number(dc['originals'].get('max'), 1)} |",
        f"| energy share below 40 Hz against the original (median / p90) | "
        f"{number(report['low_band_excess_db']['median'], 1, True)} / "
        f"{number(report['low_band_excess_db'].get('p90'), 1, True)} dB | ≤ 0 |",
        f"| multi-resolution STFT distance (median) | {number(stft['median'])} | 0 = identical |",
        f"| multi-resolution mel distance (median) | {number(mel['median'])} | 0 = identical |",
        f"| SI-SDR (median) | {number(report['si_sdr_db']['median'], 1)} dB | "
        "higher is closer, phase included |",
        f"| frame-rate partials (median) | {number(partials['median'], 1, True)} dB | 0 |",
        f"| spectral flatness (median) | {number(flatness['median'], 1, True)} dB | 0 |",
        f"| decode, one {decode['take_seconds']:.2f} s take | {one['median_s'] * 1000:.1f} ms | ≤ 40 ms on "
        "the 2-core CPU |",
        f"| decode per take at batch 8 | {eight['per_take_s'] * 1000:.1f} ms | no more than at batch 1 |",
        "",
        f"Decode times on {decode['device']} ({decode['dtype']}, {decode['torch_threads']} torch threads).",
        "",
        "## Per category",
        "",
        "| category | clips | accuracy | STFT | mel | SI-SDR dB | below 40 Hz dB | flatness dB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, count in report["corpus"]["clips_per_category"].items():
        lines.append(
            f"| {c} | {count} | {number(report['per_category'][c], 2)} | "
            f"{number(report['stft_distance']['per_category'][c])} | "
            f"{number(report['mel_distance']['per_category'][c])} | "
            f"{number(report['si_sdr_db']['per_category'][c], 1)} | "
            f"{number(report['low_band_excess_db']['per_category'][c], 1, True)} | "
            f"{number(report['spectral_flatness_db']['per_category'][c], 1, True)} |"
        )
    lines += ["", "## Pitch, in cents from the original", "", "| probe | cents |", "| --- | --- |"]
    for name, value in {**tones["cents"], **notes.get("cents", {})}.items():
        lines.append(f"| {name} | {number(value, 1, True)} |")
    return "\n".join(lines) + "\n"
