"""The documented API: `/generate` (the others, `/preset`, `/search`, `/export`, `/analyse` and
`/loop`, are the tabs' own events)."""

from __future__ import annotations

import gradio as gr

from studio.app.common import ENGINE_QUEUE, ui_error
from studio.errors import StudioError
from studio.request import DEFAULT_DIVERSITY, DEFAULT_STRENGTH, Request
from studio.service import Studio


def api_events(studio: Studio) -> None:
    """The hidden components and the `/generate` event, built inside the app's Blocks."""
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
            raise ui_error(exc) from exc
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
