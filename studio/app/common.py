"""What every part of the browser app shares."""

from __future__ import annotations

import re

import gradio as gr
from gradio.utils import get_upload_folder

ENGINE_QUEUE = "engine"  # one Gradio concurrency group for every event that runs the model


def one_line(exc: Exception) -> str:
    """A StudioError as the browser shows it: the message, then how to fix it, on one line. An
    upload is named as the user named it, not by the server's temporary copy of it."""
    text = str(exc).replace("\n  how to fix:", " — how to fix:")
    return re.sub(re.escape(str(get_upload_folder())) + r"/[^/\s]+/", "", text)


def ui_error(exc: Exception) -> gr.Error:
    return gr.Error(one_line(exc), print_exception=False)
