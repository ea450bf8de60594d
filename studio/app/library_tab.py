"""The Library tab: search, listen, rename, tag, keep, delete, re-open a take's parameters, and
the export and loop tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from studio import loops
from studio.app.common import take_player, ui_error
from studio.app.play_tab import Controls
from studio.audio import read_audio
from studio.errors import AudioError, StudioError
from studio.library import TakeRecord
from studio.request import DEFAULT_STRENGTH
from studio.service import Studio

LIBRARY_COLUMNS = ["id", "name", "prompt", "seconds", "seed", "kept", "tags", "created"]


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


def _take_audio(record: TakeRecord) -> tuple[np.ndarray, int]:
    return read_audio(record.path)


def library_tab(studio: Studio, tabs: gr.Tabs, controls: Controls) -> None:
    """The Library tab's parts and handlers, built where the caller opened the tab. `tabs` and the
    Play tab's `controls` are where "re-open parameters" sends a take's settings."""
    with gr.Row():
        search_text = gr.Textbox(label="Search prompts and names", scale=3)
        only_kept = gr.Checkbox(label="Kept only")
        tag_filter = gr.Dropdown(["", *studio.library.tags()], value="", label="Tag", allow_custom_value=True)
        refresh = gr.Button("Search")
    table = gr.Dataframe(
        headers=LIBRARY_COLUMNS,
        value=_library_rows(studio.library.search()),
        interactive=False,
        wrap=True,
        # a 1,000-character prompt must not push the other columns off a 1280-wide screen
        max_chars=80,
        column_widths=["5%", "15%", "35%", "8%", "10%", "6%", "9%", "12%"],
    )
    selected_id = gr.Number(value=None, visible=False, precision=0)
    with gr.Row():
        selected_audio = take_player(label="Selected take", buttons=["download"])
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
    _export_tools(studio, selected_id)

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

    def library_action(action):
        def handler(take_id: float | None, *args: Any) -> tuple[Any, ...]:
            record = _selected(studio, take_id)
            try:
                record = action(record, *args)
            except StudioError as exc:
                raise ui_error(exc) from exc
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
        studio.library.delete(_selected(studio, take_id).id)
        rows, tags = search(*filters)
        return rows, tags, None, None, None

    delete.click(
        remove,
        [selected_id, *search_inputs],
        [table, tag_filter, selected_id, selected_audio, selected_params],
        api_visibility="private",
    )

    def reopen_params(take_id: float | None) -> list[Any]:
        p = _selected(studio, take_id).params
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


def _selected(studio: Studio, take_id: float | None) -> TakeRecord:
    if take_id is None:
        raise gr.Error("select a take in the table first", print_exception=False)
    try:
        return studio.library.get(int(take_id))
    except StudioError as exc:
        raise ui_error(exc) from exc


def _export_tools(studio: Studio, selected_id: gr.Number) -> None:
    """Export (format, trim, loudness, fades), BPM and key, and loops of the selected take; every
    file lands in the export folder under the take's name (`/export`, `/analyse`, `/loop`)."""

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
            source_bpm = gr.Number(value=0, label="Source BPM (0 = estimate it)")
            make_loop = gr.Button("Make loop")
        export_info = gr.Markdown()
        export_file = gr.File(label="Exported file")

    def export_take(
        take_id: float | None, fmt: str, do_trim: bool, do_normalise: bool, f_in: float, f_out: float
    ):
        record = _selected(studio, take_id)
        try:
            audio, rate = _take_audio(record)
            if do_trim:
                audio = loops.trim_silence(audio, rate)
            if do_normalise:
                audio = loops.normalize_loudness(audio, rate)
            audio = loops.fade(audio, rate, float(f_in or 0), float(f_out or 0))
            path = studio.export(record, audio, rate, fmt)
        except StudioError as exc:
            raise ui_error(exc) from exc
        return f"exported **{path.name}**", str(path)

    export.click(
        export_take,
        [selected_id, export_format, trim, normalise, fade_in, fade_out],
        [export_info, export_file],
        api_name="export",
    )

    def analyse_take(take_id: float | None) -> str:
        try:
            audio, rate = _take_audio(_selected(studio, take_id))
        except StudioError as exc:
            raise ui_error(exc) from exc
        # Each reading on its own: rain has a key but no beat, a drum loop a beat but maybe no key
        readings = []
        readers = ((loops.estimate_bpm, "about **{:.1f} BPM**"), (loops.estimate_key, "key **{}**"))
        for estimate, shown in readers:
            try:
                readings.append(shown.format(estimate(audio, rate)))
            except AudioError as exc:
                readings.append(exc.message)
        return ", ".join(readings)

    analyse.click(analyse_take, selected_id, export_info, api_name="analyse")

    def loop_take(
        take_id: float | None, bpm: float, bar_count: float, source_bpm: float | None = None
    ) -> tuple[str, str]:
        record = _selected(studio, take_id)
        try:
            audio, rate = _take_audio(record)
            loop, report = loops.make_loop(
                audio, rate, float(bpm), int(bar_count) or None, source_bpm=float(source_bpm or 0) or None
            )
            path = studio.export(record, loop, rate, variant=f"loop{bpm:g}")
        except StudioError as exc:
            raise ui_error(exc) from exc
        text = (
            f"loop of **{report['bars']} bar(s)** at {report['target_bpm']:g} BPM "
            f"(from ~{report['source_bpm']:.1f} BPM), {report['seconds']:.2f} s"
        )
        return text, str(path)

    make_loop.click(
        loop_take, [selected_id, target_bpm, bars, source_bpm], [export_info, export_file], api_name="loop"
    )
