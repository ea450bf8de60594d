"""The Play tab: prompt, controls, presets and the model picker, the grid of takes."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.app.common import ENGINE_QUEUE, one_line, take_player, ui_error
from studio.errors import StudioError
from studio.library import TakeRecord
from studio.models.registry import list_models
from studio.names import file_stem
from studio.presets import Preset, save_user_preset
from studio.request import DEFAULT_DIVERSITY, DEFAULT_STRENGTH, MAX_VARIATIONS, VARY_STRENGTH, Request
from studio.service import ModelInfo, Result, Studio

SLOTS = 8  # takes shown at once; the UI's variations slider goes to 8
UI_MAX_VARIATIONS = min(SLOTS, MAX_VARIATIONS)
UI_MAX_STEPS = 50  # the steps slider's top (requests over the API may ask for up to MAX_STEPS)


@dataclass
class Controls:
    """The Play panel's inputs, in the order handlers receive them."""

    prompt: gr.Textbox
    negative: gr.Textbox
    seconds: gr.Slider
    steps: gr.Slider
    cfg: gr.Slider
    seed: gr.Number
    lock_seed: gr.Checkbox
    variations: gr.Slider
    diversity: gr.Slider
    init_audio: gr.Audio
    strength: gr.Slider

    def inputs(self) -> list[gr.components.Component]:
        return list(vars(self).values())


def _summary(record: TakeRecord) -> str:
    p = record.params
    return f"**{record.name}** · seed {p['seed']}/{p['take_seed']} · {p['seconds']:.2f} s · #{record.id}"


def _status(result: Result, records: list[TakeRecord]) -> str:
    parts = [
        f"{len(records)} take(s) in {result.elapsed_s * 1000:.0f} ms on {result.device}",
        f"seed {records[0].params['seed']}",
    ]
    if result.batch_size > len(records):
        parts.append(f"batched with {result.batch_size - len(records)} other take(s)")
    if result.init_report is not None:
        parts.append(f"recording {result.init_report.describe()}")
    return " · ".join(parts)


def request_from_controls(
    prompt: str,
    negative: str,
    seconds: float,
    steps: float,
    cfg: float,
    seed: float | None,
    lock_seed: bool,
    variations: float,
    diversity: float,
    init_audio: str | None,
    strength: float,
) -> Request:
    return Request(
        prompt=prompt or "",
        negative_prompt=negative or "",
        seconds=seconds,
        steps=steps,
        cfg=cfg,
        seed=int(seed) if lock_seed and seed is not None and seed >= 0 else None,
        variations=variations,
        diversity=diversity,
        init_audio=init_audio or None,
        strength=strength,
    )


def _slider_steps(model: ModelInfo) -> int:
    """Where the steps slider starts for a model: its own default steps, within the slider."""
    return min(model.default_steps, UI_MAX_STEPS)


def _slider_seconds(model: ModelInfo) -> float:
    """The seconds slider's top for a model: its longest take, down to the slider's 2 decimals."""
    return math.floor(model.max_seconds * 100) / 100


def _model_names(loaded: ModelInfo) -> list[str]:
    """The model picker's choices: every model Studio can find, and the one loaded (a folder path
    given on the command line is not among them)."""
    return sorted({entry.name for entry in list_models()} | {loaded.name})


def _follow_controls(model: ModelInfo, seconds: float | None) -> list[Any]:
    """Updates of the cfg, steps and seconds controls for a newly loaded model: its own guidance and
    steps (fixed for a one-step model), its range of lengths (the length asked for kept where the
    model can make it)."""
    top = _slider_seconds(model)
    return [
        gr.update(value=model.default_cfg, interactive=not model.one_step),
        gr.update(value=_slider_steps(model), interactive=not model.one_step),
        gr.update(maximum=top, value=min(seconds or top, top)),
    ]


def play_tab(studio: Studio) -> Controls:
    """The Play tab's parts and handlers, built where the caller opened the tab; returns its controls."""
    model = studio.model
    max_seconds = _slider_seconds(model)
    presets = studio.presets()
    shown_ids = gr.State([])  # library ids of the takes in the slots
    with gr.Row():
        prompt = gr.Textbox(
            label="Prompt",
            placeholder="punchy 808 kick, long tail — press Enter",
            scale=4,
            elem_id="prompt",
            autofocus=True,
        )
        generate_button = gr.Button("Generate", variant="primary", scale=1, elem_id="generate")
    # The takes right under the prompt, the knobs below them: on a 1280×720 screen a take appears where
    # the eye is, not below the fold.
    status = gr.Markdown("", elem_id="status")
    slots = []
    with gr.Row(equal_height=True):
        for i in range(SLOTS):
            with gr.Column(visible=False, min_width=260, elem_classes=["take"]) as column:
                audio = take_player(
                    label=f"Take {i + 1}",
                    buttons=["download"],
                    elem_id=f"take-{i}",
                )
                info = gr.Markdown()
                drag = gr.HTML(elem_classes=["drag-out-slot"])
                with gr.Row():
                    keep = gr.Button("☆ keep", size="sm", min_width=60)
                    vary = gr.Button("vary this", size="sm", min_width=60)
                    use = gr.Button("use as init", size="sm", min_width=60)
            slots.append((column, audio, info, keep, drag, vary, use))
    with gr.Row():
        models = _model_names(model)
        model_picker = gr.Dropdown(models, value=model.name, label="Model", scale=2, elem_id="model")
        preset_picker = gr.Dropdown(["", *presets], value="", label="Preset", scale=2, elem_id="preset")
        negative = gr.Textbox(label="Negative prompt (with cfg > 1)", scale=3)
    with gr.Row():
        seconds = gr.Slider(
            0.1,
            max_seconds,
            value=min(4.0, max_seconds),
            step=0.01,
            label="Seconds",
            elem_id="seconds",
        )
        fixed = {"interactive": not model.one_step}  # a one-step model's steps and cfg are its own
        steps = gr.Slider(
            1, UI_MAX_STEPS, value=_slider_steps(model), step=1, label="Steps", elem_id="steps", **fixed
        )
        cfg = gr.Slider(1, 10, value=model.default_cfg, step=0.1, label="CFG", elem_id="cfg", **fixed)
    with gr.Row():
        variations = gr.Slider(
            1, UI_MAX_VARIATIONS, value=4, step=1, label="Variations", elem_id="variations"
        )
        diversity = gr.Slider(0, 1, value=DEFAULT_DIVERSITY, step=0.01, label="Diversity")
        seed = gr.Number(value=-1, precision=0, label="Seed (-1 random)", elem_id="seed")
        lock_seed = gr.Checkbox(value=False, label="Lock seed", elem_id="lock-seed")
    with gr.Accordion("Style transfer: restyle a recording", open=False), gr.Row():
        init_audio = gr.Audio(
            sources=["upload", "microphone"],
            type="filepath",
            label="Recording",
            elem_id="init",
        )
        with gr.Column():
            strength = gr.Slider(
                0.01,
                1,
                value=DEFAULT_STRENGTH,
                step=0.01,
                label="Strength (0 keeps the recording, 1 ignores it)",
            )
            vary_strength = gr.Slider(0.05, 1, value=VARY_STRENGTH, step=0.01, label="'Vary this' strength")
    with gr.Row():
        preset_name = gr.Textbox(label="Save these settings as a preset named", scale=3)
        save_preset = gr.Button("Save preset", scale=1)

    controls = Controls(
        prompt,
        negative,
        seconds,
        steps,
        cfg,
        seed,
        lock_seed,
        variations,
        diversity,
        init_audio,
        strength,
    )
    slot_outputs = [c for slot in slots for c in slot[:5]]
    generation_outputs = [status, seed, shown_ids, *slot_outputs]

    def show(result: Result, records: list[TakeRecord]) -> list[Any]:
        out: list[Any] = [
            _status(result, records),
            records[0].params["seed"],
            [r.id for r in records],
        ]
        for i in range(SLOTS):
            if i < len(records):
                r = records[i]
                out += [
                    gr.update(visible=True),
                    str(r.path),
                    _summary(r),
                    "★ kept" if r.starred else "☆ keep",
                    _drag_link(r),
                ]
            else:
                out += [gr.update(visible=False), None, "", "☆ keep", ""]
        return out

    def refused(exc: StudioError) -> list[Any]:
        """What was wrong, in the status line; the takes on screen (and the seed) stay as they were."""
        return [f"**Not generated:** {one_line(exc)}", *[gr.update()] * (len(generation_outputs) - 1)]

    def play(*values: Any) -> list[Any]:
        try:
            return show(*studio.run(request_from_controls(*values)))
        except StudioError as exc:
            return refused(exc)

    for trigger in (prompt.submit, generate_button.click):
        trigger(None, js=SHOW_GENERATING)
        trigger(
            play,
            controls.inputs(),
            generation_outputs,
            concurrency_id=ENGINE_QUEUE,
            concurrency_limit=16,
            api_visibility="private",
            show_progress="hidden",
        ).then(None, js=CLEAR_GENERATING)

    for i, (_, _, _, keep, _, vary, use) in enumerate(slots):

        def toggle_keep(ids: list[int], i: int = i) -> str:
            record = studio.library.get(ids[i])
            return "★ kept" if studio.library.star(record.id, not record.starred).starred else "☆ keep"

        def vary_take(ids: list[int], vary_strength: float, i: int = i) -> list[Any]:
            try:
                return show(*studio.run(studio.vary(ids[i], len(ids), vary_strength)))
            except StudioError as exc:
                return refused(exc)

        keep.click(toggle_keep, shown_ids, keep, api_visibility="private")
        vary.click(None, js=SHOW_GENERATING)
        vary.click(
            vary_take,
            [shown_ids, vary_strength],
            generation_outputs,
            concurrency_id=ENGINE_QUEUE,
            api_visibility="private",
            show_progress="hidden",
        ).then(None, js=CLEAR_GENERATING)
        use.click(
            lambda ids, i=i: str(studio.library.get(ids[i]).path),
            shown_ids,
            init_audio,
            api_visibility="private",
        )

    _model_events(studio, model_picker, status, controls)
    _preset_events(studio, preset_picker, preset_name, save_preset, status, controls)

    return controls


def _model_events(studio: Studio, model_picker: gr.Dropdown, status: gr.Markdown, controls: Controls) -> None:
    """Picking a model loads it; a model loaded from elsewhere shows here. Either way cfg, steps and
    the seconds range move to the new model's."""
    cfg, steps, seconds = controls.cfg, controls.steps, controls.seconds

    def pick_model(name: str, seconds_now: float | None) -> list[Any]:
        try:
            loaded = studio.switch_model(name)
        except StudioError as exc:
            raise ui_error(exc) from exc
        # the guidance and steps the new model was made for (ARC 1 and 8, plain flow more)
        return [
            f"model **{loaded.name}** loaded on {loaded.device}",
            *_follow_controls(loaded, seconds_now),
        ]

    model_controls = [cfg, steps, seconds]
    model_picker.change(
        pick_model,
        [model_picker, seconds],
        [status, *model_controls],
        concurrency_id=ENGINE_QUEUE,
        api_visibility="private",
    )

    def follow_model(picked: str, seconds_now: float | None) -> list[Any]:
        """A model loaded from elsewhere (OSC, another browser) shows here within a tick."""
        loaded = studio.model
        if loaded.name == picked:
            return [gr.update()] * (2 + len(model_controls))
        note = f"model **{loaded.name}** was loaded from another controller"
        names = _model_names(loaded)
        return [gr.update(choices=names, value=loaded.name), note, *_follow_controls(loaded, seconds_now)]

    # The tick only reads the loaded model's name into a State; the controls are touched when it
    # changes. Updating them on every tick (to the same values) cost the server a tenth of a core
    # and the page a redraw every 2 s, on the cores the takes are made on.
    loaded_name = gr.State(studio.model.name)
    gr.Timer(2.0).tick(
        lambda: studio.model.name, None, loaded_name, api_visibility="private", show_progress="hidden"
    )
    loaded_name.change(
        follow_model,
        [model_picker, seconds],
        [model_picker, status, *model_controls],
        api_visibility="private",
        show_progress="hidden",
    )


def _preset_events(
    studio: Studio,
    preset_picker: gr.Dropdown,
    preset_name: gr.Textbox,
    save_preset: gr.Button,
    status: gr.Markdown,
    controls: Controls,
) -> None:
    """Picking a preset fills the controls (`/preset` in the API); saving stores them as a user preset."""

    def apply_preset(name: str, recording: str | None = None) -> list[Any]:
        if not name:
            return [gr.update()] * 11
        p, loaded = studio.presets()[name], studio.model
        top = _slider_seconds(loaded)
        note = f"preset **{p.name}** loaded"
        if recording:  # said plainly: a preset over a loaded recording restyles that recording
            note += (
                f" · the next take **restyles the loaded recording** at strength {p.strength:g}; "
                "clear the recording to hear the preset's own sound"
            )
        return [
            p.prompt,
            p.negative_prompt,
            min(p.seconds or top, top),
            p.steps or _slider_steps(loaded),
            loaded.guidance(p.cfg),
            p.seed if p.seed is not None else -1,
            p.seed is not None,
            min(p.variations, UI_MAX_VARIATIONS),
            p.diversity,
            p.strength,
            note,
        ]

    preset_picker.change(
        apply_preset,
        [preset_picker, controls.init_audio],
        [*(c for c in controls.inputs() if c is not controls.init_audio), status],
        api_name="preset",
    )

    def store_preset(name: str, *values: Any) -> tuple[str, Any]:
        request = request_from_controls(*values)
        try:
            preset = Preset(
                name=(name or "").strip(),
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                seconds=request.seconds,
                steps=request.steps,
                cfg=request.cfg,
                variations=request.variations,
                diversity=request.diversity,
                strength=request.strength,
                seed=request.seed,
                source="user",
            )
            path = save_user_preset(preset, studio.presets_dir)
        except StudioError as exc:
            raise ui_error(exc) from exc
        names = ["", *studio.presets()]
        return f"preset **{preset.name}** saved to {path}", gr.update(choices=names, value=preset.name)

    save_preset.click(
        store_preset, [preset_name, *controls.inputs()], [status, preset_picker], api_visibility="private"
    )


# While the model works the status line says so, drawn by the browser alone. Gradio's own progress
# (a spinner on each of the grid's 43 outputs, or a running timer on one) redraws the page every frame
# on the cores that generate: it made a one-step take reach the screen 25 ms (a timer) to 200 ms (the
# spinners) later on 2 cores.
SHOW_GENERATING = "() => document.querySelector('#status')?.classList.add('generating')"
CLEAR_GENERATING = "() => document.querySelector('#status')?.classList.remove('generating')"
# At the status line's right end, the last take's line dimmed; the line keeps its height when empty, so
# nothing below it moves.
STATUS_CSS = """
#status { position: relative; min-height: 1.5em; }
#status.generating > * { opacity: 0.5; }
#status.generating::after { content: "generating…"; position: absolute; top: 0; right: 0; }
"""

# Chromium turns a drag that carries "DownloadURL" into a file drop, so a take can be dragged from the
# browser straight onto a DAW track or sampler; other browsers fall back to dragging the link.
DRAG_OUT_JS = """<script>
document.addEventListener("dragstart", (event) => {
  const link = event.target.closest && event.target.closest("a.drag-out");
  if (!link) return;
  const url = new URL(link.getAttribute("href"), window.location.href).href;
  event.dataTransfer.setData("DownloadURL", `audio/wav:${link.dataset.filename}:${url}`);
  event.dataTransfer.setData("text/uri-list", url);
});
</script>"""


def _drag_link(record: TakeRecord) -> str:
    filename = html.escape(f"{file_stem(record.name)}.wav", quote=True)
    href = html.escape(f"gradio_api/file={record.path}", quote=True)
    return (
        f'<a class="drag-out" draggable="true" href="{href}" data-filename="{filename}" '
        f'download="{filename}" title="drag onto a DAW track or sampler">⇲ drag into your DAW</a>'
    )
