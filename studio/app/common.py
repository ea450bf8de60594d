"""What every part of the browser app shares."""

from __future__ import annotations

import gradio as gr

ENGINE_QUEUE = "engine"  # one Gradio concurrency group for every event that runs the model


def one_line(exc: Exception) -> str:
    """A StudioError as the browser shows it: the message, then how to fix it, on one line."""
    return str(exc).replace("\n  how to fix:", " — how to fix:")


def ui_error(exc: Exception) -> gr.Error:
    return gr.Error(one_line(exc), print_exception=False)
