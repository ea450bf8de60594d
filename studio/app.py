"""The studio: a Gradio app for live prompting, variations, style transfer and a sound library.

Every handler goes through the one engine (so browser clicks batch with OSC and MIDI triggers)
and every take is saved to the library before it is shown.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from studio import loops
from studio.audio import read_audio
from studio.errors import StudioError
from studio.library import TakeRecord
from studio.models.registry import list_models
from studio.names import file_stem
from studio.presets import Preset, save_user_preset
from studio.request import DEFAULT_DIVERSITY, DEFAULT_STRENGTH, MAX_VARIATIONS, VARY_STRENGTH, Request
from studio.service import ModelInfo, Result, Studio, open_studio

log = logging.getLogger("studio.app")

SLOTS = 8  # takes shown at once; the UI's variations slider goes to 8
UI_MAX_VARIATIONS = min(SLOTS, MAX_VARIATIONS)
UI_MAX_STEPS = 50  # the steps slider's top (requests over the API may ask for up to MAX_STEPS)
ENGINE_QUEUE = "engine"  # one Gradio concurrency group for every event that runs the model
LIBRARY_COLUMNS = ["id", "name", "prompt", "seconds", "seed", "kept", "tags", "created"]


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


def _library_rows(records: list[TakeRecord]) -> list[list[Any]]:
    from datetime import datetime

    return [
        [
            r.id,
            r.name,
            r.prompt,
            round(r.duration_s, 2),
            r.params.get("seed"),
            "★" if r.starred else "",
            ", ".join(r.tags),
            datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M"),
        ]
        for r in records
    ]


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


def _ui_error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc).replace("\n  how to fix:", " — how to fix:"), print_exception=False)


def _slider_steps(model: ModelInfo) -> int:
    """Where the steps slider starts for a model: its own default steps, within the slider."""
    return min(model.default_steps, UI_MAX_STEPS)


def _slider_seconds(model: ModelInfo) -> float:
    """The seconds slider's top for a model: its longest take, down to the slider's 2 decimals."""
    return math.floor(model.max_seconds * 100) / 100


def _follow_controls(model: ModelInfo, seconds: float | None) -> list[Any]:
    """Updates of the cfg, steps and seconds controls for a newly loaded model: its own guidance and
    steps, its range of lengths (the length asked for kept where the model can make it)."""
    top = _slider_seconds(model)
    return [
        gr.update(value=model.default_cfg),
        gr.update(value=_slider_steps(model)),
        gr.update(maximum=top, value=min(seconds or top, top)),
    ]


def build_app(studio: Studio) -> gr.Blocks:
    model = studio.model
    max_seconds = _slider_seconds(model)
    presets = studio.presets()

    with gr.Blocks(title="Studio", fill_width=True) as app:
        gr.Markdown("# Studio\nType a sound, press Enter. Variations, diversity, restyle a recording.")
        shown_ids = gr.State([])  # library ids of the takes in the slots
        with gr.Tabs() as tabs:
            with gr.Tab("Play", id="play"):
                with gr.Row():
                    prompt = gr.Textbox(
                        label="Prompt",
                        placeholder="punchy 808 kick, long tail — press Enter",
                        scale=4,
                        elem_id="prompt",
                        autofocus=True,
                    )
                    generate_button = gr.Button("Generate", variant="primary", scale=1, elem_id="generate")
                with gr.Row():
                    models = sorted({e.name for e in list_models()} | {model.name})
                    model_picker = gr.Dropdown(
                        models, value=model.name, label="Model", scale=2, elem_id="model"
                    )
                    preset_picker = gr.Dropdown(
                        ["", *presets], value="", label="Preset", scale=2, elem_id="preset"
                    )
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
                    steps = gr.Slider(
                        1, UI_MAX_STEPS, value=_slider_steps(model), step=1, label="Steps", elem_id="steps"
                    )
                    cfg = gr.Slider(1, 10, value=model.default_cfg, step=0.1, label="CFG", elem_id="cfg")
                with gr.Row():
                    variations = gr.Slider(1, UI_MAX_VARIATIONS, value=4, step=1, label="Variations")
                    diversity = gr.Slider(0, 1, value=DEFAULT_DIVERSITY, step=0.01, label="Diversity")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1 random)")
                    lock_seed = gr.Checkbox(value=False, label="Lock seed")
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
                        vary_strength = gr.Slider(
                            0.05, 1, value=VARY_STRENGTH, step=0.01, label="'Vary this' strength"
                        )
                status = gr.Markdown("", elem_id="status")
                slots = []
                with gr.Row(equal_height=True):
                    for i in range(SLOTS):
                        with gr.Column(visible=False, min_width=260, elem_classes=["take"]) as column:
                            audio = gr.Audio(
                                type="filepath",
                                interactive=False,
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
                    preset_name = gr.Textbox(label="Save these settings as a preset named", scale=3)
                    save_preset = gr.Button("Save preset", scale=1)

            with gr.Tab("Library", id="library"):
                with gr.Row():
                    search_text = gr.Textbox(label="Search prompts and names", scale=3)
                    only_kept = gr.Checkbox(label="Kept only")
                    tag_filter = gr.Dropdown(
                        ["", *studio.library.tags()], value="", label="Tag", allow_custom_value=True
                    )
                    refresh = gr.Button("Search")
                table = gr.Dataframe(
                    headers=LIBRARY_COLUMNS,
                    value=_library_rows(studio.library.search()),
                    interactive=False,
                    wrap=True,
                )
                selected_id = gr.Number(value=None, visible=False, precision=0)
                with gr.Row():
                    selected_audio = gr.Audio(
                        type="filepath", interactive=False, label="Selected take", buttons=["download"]
                    )
                    selected_params = gr.JSON(label="Parameters")
                with gr.Row():
                    new_name = gr.Textbox(label="Name")
                    rename = gr.Button("Rename")
                    new_tags = gr.Textbox(label="Tags (comma separated)")
                    retag = gr.Button("Set tags")
                with gr.Row():
                    star = gr.Button("☆/★ keep")
                    reopen = gr.Button("Re-open parameters")
                    delete = gr.Button("Delete", variant="stop")
                with gr.Accordion("Export and loop tools", open=True):
                    with gr.Row():
                        export_format = gr.Dropdown(list(loops.EXPORT_FORMATS), value="wav24", label="Format")
                        trim = gr.Checkbox(label="Trim silence")
                        normalise = gr.Checkbox(label="Normalise to -14 LUFS")
                        fade_in = gr.Number(value=0, label="Fade in (s)")
                        fade_out = gr.Number(value=0, label="Fade out (s)")
                        export = gr.Button("Export")
                    with gr.Row():
                        analyse = gr.Button("Estimate BPM and key")
                        target_bpm = gr.Number(value=120, label="Loop BPM")
                        bars = gr.Number(value=0, precision=0, label="Bars (0 = as many as fit)")
                        make_loop = gr.Button("Make loop")
                    export_info = gr.Markdown()
                    export_file = gr.File(label="Exported file")

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

        def play(*values: Any) -> list[Any]:
            try:
                return show(*studio.run(request_from_controls(*values)))
            except StudioError as exc:
                raise _ui_error(exc) from exc

        for trigger in (prompt.submit, generate_button.click):
            trigger(
                play,
                controls.inputs(),
                generation_outputs,
                concurrency_id=ENGINE_QUEUE,
                concurrency_limit=16,
                api_visibility="private",
            )

        for i, (_, _, _, keep, _, vary, use) in enumerate(slots):

            def toggle_keep(ids: list[int], i: int = i) -> str:
                record = studio.library.get(ids[i])
                return "★ kept" if studio.library.star(record.id, not record.starred).starred else "☆ keep"

            def vary_take(ids: list[int], vary_strength: float, i: int = i) -> list[Any]:
                try:
                    return show(*studio.run(studio.vary(ids[i], len(ids), vary_strength)))
                except StudioError as exc:
                    raise _ui_error(exc) from exc

            keep.click(toggle_keep, shown_ids, keep, api_visibility="private")
            vary.click(
                vary_take,
                [shown_ids, vary_strength],
                generation_outputs,
                concurrency_id=ENGINE_QUEUE,
                api_visibility="private",
            )
            use.click(
                lambda ids, i=i: str(studio.library.get(ids[i]).path),
                shown_ids,
                init_audio,
                api_visibility="private",
            )

        def pick_model(name: str, seconds_now: float | None) -> list[Any]:
            try:
                loaded = studio.switch_model(name)
            except StudioError as exc:
                raise _ui_error(exc) from exc
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
            names = sorted({e.name for e in list_models()} | {loaded.name})
            return [gr.update(choices=names, value=loaded.name), note, *_follow_controls(loaded, seconds_now)]

        gr.Timer(2.0).tick(
            follow_model,
            [model_picker, seconds],
            [model_picker, status, *model_controls],
            api_visibility="private",
            show_progress="hidden",
        )

        def apply_preset(name: str) -> list[Any]:
            if not name:
                return [gr.update()] * 10
            p, loaded = studio.presets()[name], studio.model
            top = _slider_seconds(loaded)
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
            ]

        preset_picker.change(
            apply_preset,
            preset_picker,
            [prompt, negative, seconds, steps, cfg, seed, lock_seed, variations, diversity, strength],
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
                raise _ui_error(exc) from exc
            names = ["", *studio.presets()]
            return f"preset **{preset.name}** saved to {path}", gr.update(choices=names, value=preset.name)

        save_preset.click(
            store_preset, [preset_name, *controls.inputs()], [status, preset_picker], api_visibility="private"
        )

        # -- library --------------------------------------------------------------------------------

        def search(text: str, kept: bool, tag: str) -> tuple[list[list[Any]], Any]:
            records = studio.library.search(text or "", starred=True if kept else None, tag=tag or None)
            return _library_rows(records), gr.update(choices=["", *studio.library.tags()])

        search_inputs = [search_text, only_kept, tag_filter]
        refresh.click(search, search_inputs, [table, tag_filter], api_name="search")
        for trigger in (search_text.submit, only_kept.change, tag_filter.change, tabs.select):
            trigger(search, search_inputs, [table, tag_filter], api_visibility="private")

        def select(evt: gr.SelectData, rows: Any) -> tuple[Any, ...]:
            row = evt.index[0]
            take_id = int(rows.iloc[row, 0]) if hasattr(rows, "iloc") else int(rows[row][0])
            record = studio.library.get(take_id)
            return take_id, str(record.path), record.params, record.name, ", ".join(record.tags)

        table.select(
            select,
            table,
            [selected_id, selected_audio, selected_params, new_name, new_tags],
            api_visibility="private",
        )

        def selected(take_id: float | None) -> TakeRecord:
            if take_id is None:
                raise gr.Error("select a take in the table first", print_exception=False)
            try:
                return studio.library.get(int(take_id))
            except StudioError as exc:
                raise _ui_error(exc) from exc

        def library_action(action):
            def handler(take_id: float | None, *args: Any) -> tuple[Any, ...]:
                record = selected(take_id)
                try:
                    record = action(record, *args)
                except StudioError as exc:
                    raise _ui_error(exc) from exc
                rows, tags = search(*args[-3:])  # every action passes the search filters last
                return rows, tags, record.name, ", ".join(record.tags)

            return handler

        detail = [table, tag_filter, new_name, new_tags]
        rename.click(
            library_action(lambda r, name, *_: studio.library.rename(r.id, name)),
            [selected_id, new_name, *search_inputs],
            detail,
            api_visibility="private",
        )
        retag.click(
            library_action(lambda r, tags, *_: studio.library.set_tags(r.id, tags.split(","))),
            [selected_id, new_tags, *search_inputs],
            detail,
            api_visibility="private",
        )
        star.click(
            library_action(lambda r, *_: studio.library.star(r.id, not r.starred)),
            [selected_id, *search_inputs],
            detail,
            api_visibility="private",
        )

        def remove(take_id: float | None, *filters: Any) -> tuple[Any, ...]:
            studio.library.delete(selected(take_id).id)
            rows, tags = search(*filters)
            return rows, tags, None, None, None

        delete.click(
            remove,
            [selected_id, *search_inputs],
            [table, tag_filter, selected_id, selected_audio, selected_params],
            api_visibility="private",
        )

        def reopen_params(take_id: float | None) -> list[Any]:
            p = selected(take_id).params
            return [
                gr.Tabs(selected="play"),
                p["prompt"],
                p["negative_prompt"],
                p["seconds"],
                p["steps"],
                p["cfg"],
                p["seed"],
                True,
                p["variations"],
                p["diversity"],
                p["init_audio"] if p["init_audio"] and Path(p["init_audio"]).is_file() else None,
                p["strength"] if p["strength"] is not None else DEFAULT_STRENGTH,
            ]

        reopen.click(reopen_params, selected_id, [tabs, *controls.inputs()], api_visibility="private")

        # -- export and loops -----------------------------------------------------------------------

        def export_take(
            take_id: float | None, fmt: str, do_trim: bool, do_normalise: bool, f_in: float, f_out: float
        ):
            record = selected(take_id)
            try:
                audio, rate = _take_audio(record)
                if do_trim:
                    audio = loops.trim_silence(audio, rate)
                if do_normalise:
                    audio = loops.normalize_loudness(audio, rate)
                audio = loops.fade(audio, rate, float(f_in or 0), float(f_out or 0))
                path = studio.export(record, audio, rate, fmt)
            except StudioError as exc:
                raise _ui_error(exc) from exc
            return f"exported **{path.name}**", str(path)

        export.click(
            export_take,
            [selected_id, export_format, trim, normalise, fade_in, fade_out],
            [export_info, export_file],
            api_name="export",
        )

        def analyse_take(take_id: float | None) -> str:
            audio, rate = _take_audio(selected(take_id))
            bpm, key = loops.estimate_bpm(audio, rate), loops.estimate_key(audio, rate)
            return f"about **{bpm:.1f} BPM**, key **{key}**"

        analyse.click(analyse_take, selected_id, export_info, api_name="analyse")

        def loop_take(take_id: float | None, bpm: float, bar_count: float) -> tuple[str, str]:
            record = selected(take_id)
            try:
                audio, rate = _take_audio(record)
                loop, report = loops.make_loop(audio, rate, float(bpm), int(bar_count) or None)
                path = studio.export(record, loop, rate, variant=f"loop{bpm:g}")
            except StudioError as exc:
                raise _ui_error(exc) from exc
            text = (
                f"loop of **{report['bars']} bar(s)** at {report['target_bpm']:g} BPM "
                f"(from ~{report['source_bpm']:.1f} BPM), {report['seconds']:.2f} s"
            )
            return text, str(path)

        make_loop.click(
            loop_take, [selected_id, target_bpm, bars], [export_info, export_file], api_name="loop"
        )

        # -- the documented API ---------------------------------------------------------------------

        with gr.Row(visible=False):
            api_prompt = gr.Textbox()
            api_seconds = gr.Number()
            # No rounding here: 2.7 variations is refused by the validator, not made 3
            api_variations = gr.Number()
            api_seed = gr.Number(precision=0)
            api_steps = gr.Number()
            api_cfg = gr.Number()
            api_diversity = gr.Number()
            api_init = gr.Audio(type="filepath")
            api_strength = gr.Number()
            api_files = gr.File(file_count="multiple")
            api_params = gr.JSON()
            api_button = gr.Button()

        def api_generate(
            prompt: str,
            seconds: float | None = None,
            variations: float | None = None,
            seed: float | None = None,
            steps: float | None = None,
            cfg: float | None = None,
            diversity: float | None = None,
            init_audio: str | None = None,
            strength: float | None = None,
        ) -> tuple[list[str], list[dict]]:
            """Generate takes: their WAV files (already in the library) and, per take, its library id,
            every parameter that reproduces it, the batch's generation time and the device. Every
            parameter after the prompt may be left out (None): the model's or Studio's default."""
            request = Request(
                prompt=prompt or "",
                seconds=seconds,
                variations=variations if variations is not None else 1,
                seed=seed,
                steps=steps,
                cfg=cfg,
                diversity=diversity if diversity is not None else DEFAULT_DIVERSITY,
                init_audio=init_audio or None,
                strength=strength if strength is not None else DEFAULT_STRENGTH,
            )
            try:
                result, records = studio.run(request)
            except StudioError as exc:
                raise _ui_error(exc) from exc
            meta = {"generation_s": result.elapsed_s, "device": result.device}
            return [str(r.path) for r in records], [{"id": r.id, **r.params, **meta} for r in records]

        api_button.click(
            api_generate,
            [
                api_prompt,
                api_seconds,
                api_variations,
                api_seed,
                api_steps,
                api_cfg,
                api_diversity,
                api_init,
                api_strength,
            ],
            [api_files, api_params],
            api_name="generate",
            concurrency_id=ENGINE_QUEUE,
            concurrency_limit=16,
        )
    return app


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


def _take_audio(record: TakeRecord) -> tuple[np.ndarray, int]:
    return read_audio(record.path)


def serve(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
) -> tuple[gr.Blocks, str]:
    """Serve the studio in the browser; with block, until Ctrl+C. Returns (app, url)."""
    app = build_app(studio)
    app.queue(default_concurrency_limit=16)
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        auth=auth,
        prevent_thread_lock=True,
        allowed_paths=[str(studio.library.root), str(studio.exports())],
        footer_links=["api", "settings"],
        show_error=True,
        quiet=True,
        head=DRAG_OUT_JS,
    )
    model = studio.model
    print(f"Studio is running at {url} ({model.name} on {model.device}); Ctrl+C stops it", flush=True)
    if block:
        app.block_thread()
    return app, url


def launch(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    auth: tuple[str, str] | None = None,
    library_dir: str | Path | None = None,
    block: bool = True,
) -> tuple[gr.Blocks, Studio, str]:
    """Load the model once, build the app and serve it; returns (app, studio, url)."""
    studio = open_studio(model, device, library_dir)
    try:
        app, url = serve(studio, host, port, auth, block)
    finally:
        if block:
            studio.close()
    return app, studio, url
