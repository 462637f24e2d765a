"""``matseg demo`` end to end: the real server (a subprocess on 127.0.0.1) driven by headless Chromium.

The model is a tiny MatSeg network whose weights are set so that its descriptor is a function of colour (the
stem computes R - B and B - R, every other path is zeroed), so the expected output is known: on an image whose
left half is orange and right half blue, a click on the left half gives similarity 1 there and <= 0 on the
right. The test uploads that image in the page, clicks on the orange half, waits for the outputs and checks the
page screenshot's pixels (heat map bright over the clicked half, dark over the other; mask over the clicked half
only) and the images the server sent.

Needs the ``test`` extra (gradio, playwright — only its Python driver; no browser is downloaded) and Debian's
Chromium (``apt-get install chromium``; ``.ci/run`` installs it). Set ``MATSEG_CHROMIUM`` to use another
Chromium binary and ``MATSEG_TEST_ARTIFACTS`` to a folder to keep the screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[test]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[test]')")

from matseg_hub.models.matseg import MatSegConfig, MatSegModel  # noqa: E402

CHROMIUM = os.environ.get("MATSEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (Debian: apt-get install chromium; "
                                                "or set MATSEG_CHROMIUM)"),
]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOST = "127.0.0.1"
ORANGE = (230, 140, 40)
BLUE = (40, 90, 200)
HEIGHT, WIDTH = 192, 320  # image: left half ORANGE, right half BLUE
SERVER_START_TIMEOUT = 60.0
UI_TIMEOUT_MS = 20_000


def colour_model() -> MatSegModel:
    """Tiny MatSeg model whose descriptor is a function of the pixel's colour: GELU(LayerNorm(R - B, B - R, 0, ..))
    (stem = mean of R - B / B - R over each 4x4 patch; ConvNeXt layers, lower decoder path and PSP zeroed out of
    the last decoder block; skip projection = identity). Colours with R > B and with B > R get descriptors of
    cosine similarity <= 0."""
    torch.manual_seed(0)
    config = MatSegConfig.from_convnext_size(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], descriptor_dim=8)
    model = MatSegModel(config).eval()
    state = model.state_dict()
    with torch.no_grad():
        stem = torch.zeros_like(state["backbone.embeddings.patch_embeddings.weight"])  # [8, 4, 4, 4]
        stem[0, 0], stem[0, 2] = 1 / 16, -1 / 16  # R - B
        stem[1, 2], stem[1, 0] = 1 / 16, -1 / 16  # B - R
        state["backbone.embeddings.patch_embeddings.weight"].copy_(stem)
        state["backbone.embeddings.patch_embeddings.bias"].zero_()
        state["backbone.encoder.stages.0.layers.0.layer_scale_parameter"].zero_()  # stage 1 = the stem
        state["decoder.blocks.2.conv.conv.weight"].zero_()  # nothing from the deeper stages
        state["decoder.blocks.2.skip.conv.weight"].copy_(torch.eye(8)[:, :, None, None])
    return model


def two_colour_image(rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 [HEIGHT, WIDTH, 3]: left half ORANGE, right half BLUE, with a little noise."""
    image = np.empty((HEIGHT, WIDTH, 3), np.float32)
    image[:, : WIDTH // 2] = ORANGE
    image[:, WIDTH // 2:] = BLUE
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """Start ``matseg demo`` on a free loopback port; yield its URL; stop it."""
    root = tmp_path_factory.mktemp("demo")
    colour_model().save_pretrained(root / "model")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(root / "gradio"),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "matseg_hub", "demo", "--model", str(root / "model"), "--device", "cpu",
             "--image", "none", "--host", HOST, "--port", str(port)],  # no start photo: the test uploads its own
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    url = f"http://{HOST}:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers(url):
            if process.poll() is not None:
                pytest.fail(f"matseg demo exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"matseg demo did not answer on {url} within {SERVER_START_TIMEOUT:.0f} s:\n"
                            f"{log_path.read_text(errors='replace')}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def page(tmp_path):
    """A page of a headless Chromium with a fresh profile; closed (browser and driver stopped) afterwards."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800}, timeout=30_000)
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _wait_for_served_image(page, selector: str) -> None:
    """Wait until the ``img`` at ``selector`` shows a file served by the app, fully loaded."""
    page.wait_for_function("""s => { const img = document.querySelector(s);
        return img && img.src.includes('/gradio_api/file=') && img.complete && img.naturalWidth > 0; }""", arg=selector)


def _content_box(page, selector: str):
    """(x, y, width, height) of the image drawn by the ``img`` at ``selector`` (object-fit contain/scale-down,
    centred), in page pixels, and its natural (width, height)."""
    info = page.eval_on_selector(selector, """img => {
        const r = img.getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight,
                fit: getComputedStyle(img).objectFit};
    }""")
    scale = min(info["w"] / info["nw"], info["h"] / info["nh"])
    if info["fit"] == "scale-down":
        scale = min(scale, 1.0)
    elif info["fit"] not in ("contain",):
        scale_x, scale_y = info["w"] / info["nw"], info["h"] / info["nh"]  # fill: stretched
        return (info["x"], info["y"], info["nw"] * scale_x, info["nh"] * scale_y), (info["nw"], info["nh"])
    width, height = info["nw"] * scale, info["nh"] * scale
    return (info["x"] + (info["w"] - width) / 2, info["y"] + (info["h"] - height) / 2, width, height), \
        (info["nw"], info["nh"])


def _region(shot: np.ndarray, box, x0: float, x1: float, y0: float = 0.2, y1: float = 0.8) -> np.ndarray:
    """Pixels of the screenshot (RGB) inside the relative window [x0, x1] x [y0, y1] of ``box``."""
    x, y, w, h = box
    return shot[int(round(y + y0 * h)): int(round(y + y1 * h)), int(round(x + x0 * w)): int(round(x + x1 * w))]


def test_click_shows_heat_map_and_mask_in_chromium(demo_url, page, tmp_path):
    image = two_colour_image(np.random.default_rng(0))
    image_path = tmp_path / "two_colours.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    page.goto(demo_url, wait_until="domcontentloaded")
    page.locator("#matseg-image input[type=file]").set_input_files(str(image_path))
    caption = page.locator("#matseg-caption")
    sync_api.expect(caption).to_contain_text(f"{WIDTH}x{HEIGHT} px: click on a material")
    _wait_for_served_image(page, "#matseg-image img")

    # click at a quarter of the width, half the height: the middle of the orange half
    input_box, natural = _content_box(page, "#matseg-image img")
    assert natural == (WIDTH, HEIGHT)
    page.mouse.click(input_box[0] + input_box[2] * 0.25, input_box[1] + input_box[3] * 0.5)
    sync_api.expect(caption).to_contain_text("point (")
    _wait_for_served_image(page, "#matseg-heat img")
    _wait_for_served_image(page, "#matseg-mask img")

    # the caption names the clicked pixel and about half of the image above the threshold
    text = caption.inner_text()
    x_click, y_click = (int(v) for v in text.split("point (", 1)[1].split(")", 1)[0].split(","))
    assert abs(x_click - WIDTH * 0.25) <= 3 and abs(y_click - HEIGHT * 0.5) <= 3, text
    percent = float(text.split("radius 10: ", 1)[1].split("%", 1)[0])
    assert 45.0 <= percent <= 55.0, text

    shot_path = tmp_path / "matseg-demo.png"
    page.screenshot(path=str(shot_path))
    if os.environ.get("MATSEG_TEST_ARTIFACTS"):
        artifacts = Path(os.environ["MATSEG_TEST_ARTIFACTS"])
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_path, artifacts / shot_path.name)
    shot = cv2.cvtColor(cv2.imread(str(shot_path)), cv2.COLOR_BGR2RGB).astype(np.float32)

    # heat map (inferno): near white-yellow (252, 255, 164) over the clicked half, near black over the other
    heat_box, heat_natural = _content_box(page, "#matseg-heat img")
    assert heat_natural == (WIDTH, HEIGHT)
    clicked, other = _region(shot, heat_box, 0.05, 0.4), _region(shot, heat_box, 0.6, 0.95)
    assert clicked.size and other.size
    assert clicked.mean(axis=(0, 1))[:2].min() > 220, clicked.mean(axis=(0, 1))
    assert other.mean() < 25, other.mean(axis=(0, 1))

    # mask overlay: the clicked half tinted red (and its outline / the yellow click disc), the other half untouched
    mask_box, mask_natural = _content_box(page, "#matseg-mask img")
    assert mask_natural == (WIDTH, HEIGHT)
    tinted, untouched = _region(shot, mask_box, 0.05, 0.15), _region(shot, mask_box, 0.6, 0.95)
    tinted_mean, untouched_mean = tinted.mean(axis=(0, 1)), untouched.mean(axis=(0, 1))
    expected_tint = 0.65 * np.asarray(ORANGE) + 0.35 * np.asarray((255, 0, 0))
    assert np.abs(tinted_mean - expected_tint).max() < 12, (tinted_mean, expected_tint)
    assert np.abs(untouched_mean - np.asarray(BLUE)).max() < 12, (untouched_mean, BLUE)
    x, y, w, h = mask_box
    disc = shot[int(y + y_click * h / HEIGHT), int(x + x_click * w / WIDTH)]
    assert disc[0] > 200 and disc[1] > 200 and disc[2] < 80, disc  # yellow click marker

    # the page's input panel still shows the uploaded image: orange left, blue right
    input_box, _ = _content_box(page, "#matseg-image img")
    left, right = _region(shot, input_box, 0.05, 0.4), _region(shot, input_box, 0.6, 0.95)
    assert np.abs(left.mean(axis=(0, 1)) - ORANGE).max() < 12 and np.abs(right.mean(axis=(0, 1)) - BLUE).max() < 12

    # moving a slider redoes the last click with the new setting
    radius_input = page.locator("#matseg-radius input[type=number]")
    radius_input.fill("20")
    radius_input.press("Enter")
    sync_api.expect(caption).to_contain_text(f"point ({x_click}, {y_click}), radius 20:")
