"""A person in a browser: open the studio, type a prompt, press Enter, see the takes, play one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_app import free_port

from studio.app import launch
from tests.tiny import make_model_folder, tiny_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("STUDIO_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")
)
# Chromium on a closed network: no background connections, no sandbox as root, no GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def studio_page(browser, tiny_model_dir, tmp_path, monkeypatch):
    """The studio on the tiny model, open in a browser page: yields (page, studio)."""
    monkeypatch.setenv("STUDIO_PRESETS_DIR", str(tmp_path / "presets"))
    app, studio, url = launch(
        str(tiny_model_dir), port=free_port(), library_dir=tmp_path / "lib", block=False
    )
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        yield page, studio
    finally:
        app.close()
        studio.close()


def test_type_enter_see_takes_and_play_one(studio_page, monkeypatch):
    from gradio import processing_utils

    page, studio = studio_page
    probed: list[str] = []
    monkeypatch.setattr(processing_utils, "audio_is_playable", lambda path: probed.append(path) or True)
    page.wait_for_selector("#status", state="attached")
    page.evaluate(
        """() => { window.statusClasses = [];
            new MutationObserver(() => window.statusClasses.push(document.querySelector('#status').className))
                .observe(document.querySelector('#status'), {attributes: true}); }"""
    )
    page.fill("#prompt textarea", "punchy 808 kick, long tail")
    page.press("#prompt textarea", "Enter")
    page.wait_for_function("document.querySelector('#status').innerText.includes('take(s)')", timeout=60_000)
    status = page.inner_text("#status")
    assert "4 take(s)" in status and "on cpu" in status
    # "generating…" showed on the status line while the model worked, and went with the takes
    page.wait_for_function("!document.querySelector('#status').classList.contains('generating')")
    assert any("generating" in classes for classes in page.evaluate("window.statusClasses"))
    assert probed == []  # the takes went to the players as the library wrote them
    for i in range(4):
        assert page.is_visible(f"#take-{i}")
    assert not page.is_visible("#take-4")

    # Drag-out: the take's link carries the file as a DownloadURL, which Chromium drops as a file.
    link = page.locator("#take-0").locator("xpath=..").locator("a.drag-out")
    assert link.get_attribute("draggable") == "true"
    dragged = link.evaluate(
        """(a) => {
            const transfer = new DataTransfer();
            a.dispatchEvent(new DragEvent("dragstart", {bubbles: true, dataTransfer: transfer}));
            return transfer.getData("DownloadURL");
        }"""
    )
    kind, name, href = dragged.split(":", 2)
    assert kind == "audio/wav" and name.endswith(".wav")
    response = page.request.get(href)
    assert response.ok and response.body()[:4] == b"RIFF"

    page.click("#take-0 button[aria-label='Play']")
    page.wait_for_selector("#take-0 button[aria-label='Pause']", timeout=5_000)  # it is playing

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-play.png"), full_page=True)
    records = studio.library.search(limit=100)
    assert len(records) == 4  # saved before they were shown

    page.locator("#take-1").locator("xpath=..").get_by_role("button", name="☆ keep").click()
    page.get_by_role("button", name="★ kept").wait_for(timeout=10_000)
    assert [r.starred for r in studio.library.search(limit=100)].count(True) == 1

    page.get_by_role("tab", name="Library").click()
    page.locator("text=punchy 808 kick, long tail >> visible=true").first.wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "studio-library.png"), full_page=True)


def test_a_refused_take_keeps_the_last_good_takes_on_screen(studio_page):
    page, studio = studio_page
    page.fill("#prompt textarea", "glass bottle hit")
    page.press("#prompt textarea", "Enter")
    page.wait_for_function("document.querySelector('#status').innerText.includes('take(s)')", timeout=60_000)
    page.fill("#prompt textarea", "")
    page.press("#prompt textarea", "Enter")
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('Not generated: the prompt is empty')",
        timeout=30_000,
    )
    assert all(page.is_visible(f"#take-{i}") for i in range(4))
    assert page.locator("text=Error").count() == 0  # no red error pills over the takes
    assert len(studio.library.search()) == 4


def test_empty_prompt_shows_a_message_and_saves_nothing(studio_page):
    page, studio = studio_page
    page.press("#prompt textarea", "Enter")
    page.get_by_text("the prompt is empty").wait_for(timeout=30_000)
    assert studio.library.search() == []


@pytest.fixture
def flow_model_in_user_dir(tmp_path, monkeypatch):
    """A plain flow model (Euler 50 by its objective, cfg 4) and a one-step student among the
    user's models."""
    flow = {"model.diffusion.diffusion_objective": "rectified_flow"}
    make_model_folder(tmp_path / "user-models" / "tiny-flow", tiny_config(default_cfg=4.0, **flow))
    swift = tiny_config(default_sampler="onestep", default_steps=1, default_cfg=1.0)
    make_model_folder(tmp_path / "user-models" / "tiny-swift", swift)
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path / "user-models"))


def test_picking_a_model_moves_steps_and_cfg_to_what_it_was_made_for(flow_model_in_user_dir, studio_page):
    """From the tiny ARC-style model (ping-pong 8, cfg 1) to a plain flow model (Euler 50, cfg 4),
    to a one-step student (1 step, cfg 1, neither to be changed), then to the shipped studio-mini,
    a flow model whose config names ping-pong 8 at cfg 4."""
    page, studio = studio_page
    value = "document.querySelector('#{} input[type=number]').value === '{}'"
    fixed = "document.querySelector('#{} input[type=number]').disabled === {}"
    assert page.locator("#steps input[type=number]").input_value() == "8"
    for model, steps, cfg in [("tiny-flow", "50", "4"), ("tiny-swift", "1", "1"), ("studio-mini", "8", "4")]:
        page.click("#model input")
        page.get_by_role("option", name=model, exact=True).click()
        page.wait_for_function(
            f"document.querySelector('#status').innerText.includes('{model} ')", timeout=60_000
        )
        page.wait_for_function(value.format("steps", steps))
        page.wait_for_function(value.format("cfg", cfg))
        one_step = "true" if model == "tiny-swift" else "false"
        page.wait_for_function(fixed.format("steps", one_step))
        page.wait_for_function(fixed.format("cfg", one_step))
        assert studio.host.engine.model_name == model
        if model == "tiny-swift":  # Enter makes a one-step take
            page.fill("#prompt textarea", "soft click")
            page.press("#prompt textarea", "Enter")
            page.wait_for_function("document.querySelector('#status').innerText.includes('take(s)')")
            assert studio.library.search()[0].params["sampler"] == "onestep"


def test_picking_a_model_loads_it_and_moves_cfg_to_its_default(studio_page):
    """The tiny ARC-style model starts at cfg 1; picking the embedded MAR model loads it and sets
    the CFG slider to the guidance it was made for (its default_cfg, 3)."""
    page, studio = studio_page
    cfg = page.locator("#cfg input[type=number]")
    assert float(cfg.input_value()) == 1
    page.click("#model input")
    page.get_by_role("option", name="studio-mini-energy").click()
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('studio-mini-energy')", timeout=60_000
    )
    page.wait_for_function("document.querySelector('#cfg input[type=number]').value === '3'")
    assert studio.host.engine.model_name == "studio-mini-energy"


def test_a_model_loaded_from_another_controller_shows_with_its_ranges(
    flow_model_in_user_dir, studio_page, tmp_path
):
    """OSC (or another browser) loads a longer plain flow model: the page follows within a tick."""
    page, studio = studio_page
    flow = {"model.diffusion.diffusion_objective": "rectified_flow", "sample_size": 131072}  # 2.97 s
    make_model_folder(tmp_path / "user-models" / "tiny-flow-long", tiny_config(default_cfg=4.0, **flow))
    seconds_max = "document.querySelector('#seconds input[type=number]')?.max === '{}'"
    page.wait_for_function(seconds_max.format("1.48"))  # the tiny model's 65,536 samples
    studio.switch_model("tiny-flow-long")  # what /studio/param model tiny-flow-long does
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('tiny-flow-long was loaded from another')",
        timeout=30_000,
    )
    page.wait_for_function(seconds_max.format("2.97"))
    page.wait_for_function("document.querySelector('#steps input[type=number]').value === '50'")
    page.wait_for_function("document.querySelector('#cfg input[type=number]').value === '4'")
    assert page.locator("#model input").input_value() == "tiny-flow-long"


def test_on_a_1280_by_720_screen_takes_show_without_scrolling_and_the_library_fits(studio_page):
    page = studio_page[0]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.fill("#prompt textarea", "vinyl crackle, " + "warm dusty texture " * 50)  # a long prompt
    page.press("#prompt textarea", "Enter")
    page.wait_for_function("document.querySelector('#status').innerText.includes('take(s)')", timeout=60_000)
    box = page.locator("#take-0").bounding_box()
    assert box is not None and box["y"] + 40 < 720  # the first take's player is on screen
    page.get_by_role("tab", name="Library").click()
    page.locator("text=vinyl crackle >> visible=true").first.wait_for(timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no column pushed off-screen
    created = page.locator("text=" + __import__("datetime").date.today().isoformat()).first
    created_box = created.bounding_box()
    assert created_box is not None and created_box["x"] + created_box["width"] <= 1280
