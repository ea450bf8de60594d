"""What every part of the browser app shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

ENGINE_QUEUE = "engine"  # one Gradio concurrency group for every event that runs the model


def one_line(exc: Exception) -> str:
    """A StudioError as the browser shows it: the message, then how to fix it, on one line. An
    upload is named as the user named it, not by the server's temporary copy of it."""
    text = str(exc).replace("\n  how to fix:", " — how to fix:")
    return re.sub(re.escape(str(get_upload_folder())) + r"/[^/\s]+/", "", text)


def ui_error(exc: Exception) -> gr.Error:
    return gr.Error(one_line(exc), print_exception=False)


def take_player(**options: Any) -> gr.Audio:
    """An audio player for the library's takes. Gradio runs ffprobe on every audio file it sends, to
    check a browser can play it: about 60 ms a file on 2 cores, one file after another, while the
    user waits for the grid. The library writes every take as PCM WAV, which every browser plays, so
    this player sends a take's WAV as it lies (other values still go through Gradio's checks)."""
    player = gr.Audio(type="filepath", interactive=False, **options)
    checked = player.postprocess

    def postprocess(value: Any) -> FileData | bytes | None:
        if isinstance(value, (str, Path)) and Path(value).suffix.lower() == ".wav" and Path(value).is_file():
            return FileData(path=str(value), orig_name=Path(value).name)
        return checked(value)

    player.postprocess = postprocess  # type: ignore[method-assign]
    return player
