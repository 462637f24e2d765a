"""``matseg demo``: click a point in a photo, see how similar every pixel's material is (Gradio app).

    pip install "matseg-hub[demo]"
    matseg demo                                       # the built-in net matseg-tiny on the built-in photo
    matseg demo --model path/or/hub-id [--image photo.jpg] [--port 7860] [--share]

The app opens on a photo (``--image``; by default the benchmark sample's photo that ships inside the package;
``--image none``: an empty panel). Upload an image (shrunk to ``--max-size`` like the reference ``Demo.py``), click on a material: the app shows
the cosine-similarity heat map to the clicked point and the mask ``similarity > threshold`` outlined on the photo;
moving the radius or threshold slider redoes the last click.
The image's descriptor map is computed once per upload (:class:`matseg_hub.models.inference.MatSegPredictor`); the
cache holds one image, so this is a single-user demo (served on 127.0.0.1 unless ``--host``/``--share`` say otherwise).
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Tuple

import numpy as np

NAME = "demo"
HELP = "interactive demo (Gradio): click a point, see the material similarity map and mask"
IMAGE_HEIGHT = 400  # px, the three image panels
DEFAULT_MODEL = "matseg-tiny"  # matseg_hub.models.builtin.DEFAULT_BUILTIN_MODEL (kept light: no import at parse time)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"MatSeg model folder, Hub model id or built-in net (default: {DEFAULT_MODEL}, built in)")
    parser.add_argument("--image", default=None,
                        help="photo the app opens on (default: the built-in benchmark photo; 'none': no photo)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--half", action="store_true", help="float16 on CUDA")
    parser.add_argument("--bgr", action="store_true", help="feed BGR like the reference Demo.py")
    parser.add_argument("--max-size", type=int, default=700, help="shrink images whose longer side exceeds this (700)")
    parser.add_argument("--threshold", type=float, default=0.9, help="initial mask threshold (0.9)")
    parser.add_argument("--radius", type=int, default=10, help="initial radius of the clicked disc in pixels (10)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: local only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio link")


# ------------------------------------------------------------------------------------------------ pure helpers
def shrink_image(image: np.ndarray, max_size: Optional[int]) -> np.ndarray:
    """RGB uint8 [H, W, 3] shrunk (bilinear) so that its longer side is at most ``max_size``; unchanged otherwise."""
    import cv2

    height, width = image.shape[:2]
    if not max_size or max(height, width) <= max_size:
        return image
    ratio = max_size / max(height, width)
    return cv2.resize(image, (max(1, int(width * ratio)), max(1, int(height * ratio))), interpolation=cv2.INTER_LINEAR)


def similarity_heatmap(similarity: np.ndarray) -> np.ndarray:
    """float [H, W] cosine similarity -> RGB uint8 [H, W, 3] heat map (negative values clipped to 0)."""
    import cv2

    scaled = (np.clip(similarity, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def mask_overlay(image: np.ndarray, mask: np.ndarray, point: Optional[Tuple[int, int, int]] = None,
                 color: Tuple[int, int, int] = (255, 0, 0), alpha: float = 0.35) -> np.ndarray:
    """RGB uint8 [H, W, 3]: ``image`` with ``mask`` (bool [H, W]) tinted, its contour drawn (the reference demo's
    mask-minus-eroded-mask outline) and the clicked disc ``point`` = (x, y, r) marked in yellow."""
    import cv2

    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    out = out.astype(np.uint8)
    binary = mask.astype(np.uint8)
    contour = (binary - cv2.erode(binary, np.ones((5, 5), np.uint8))) > 0
    out[contour] = color
    if point is not None:
        cv2.circle(out, (int(point[0]), int(point[1])), max(1, int(point[2])), (255, 255, 0), thickness=-1)
    return out


def click_result(predictor: Any, image: np.ndarray, x: int, y: int, radius: int,
                 threshold: float) -> Tuple[np.ndarray, np.ndarray, str]:
    """(heat map RGB uint8, overlay RGB uint8, caption) for a click at (x, y) on the predictor's image."""
    similarity = predictor.similarity_map([[x, y, radius]])
    mask = similarity > threshold
    caption = f"point ({x}, {y}), radius {radius}: {mask.mean() * 100:.1f}% of the image above {threshold:.2f}"
    return similarity_heatmap(similarity), mask_overlay(image, mask, (x, y, radius)), caption


# ------------------------------------------------------------------------------------------------ app
def initial_image(spec: Optional[str], max_size: Optional[int]) -> Optional[np.ndarray]:
    """The photo the app opens on, RGB uint8 [H, W, 3] shrunk to ``max_size``: ``None`` -> the built-in benchmark
    photo (``matseg_hub/resources/benchmark_sample``); ``"none"`` -> no photo (``None``); else an image file.

    Raises:
        MatSegInputError / MatSegFormatError: the file is missing or is no readable image (named).
    """
    from pathlib import Path

    from ..benchmark.format import builtin_benchmark_dir
    from ..errors import MatSegInputError
    from ..utils.images import list_images, read_image

    if spec is not None and str(spec).lower() == "none":
        return None
    if spec is None:
        path = list_images(builtin_benchmark_dir() / "images")[0]
    else:
        path = Path(spec)
        if not path.is_file():
            raise MatSegInputError(f"--image: {path} is not a file; give a photo (JPEG, PNG, ...) or 'none'")
    return shrink_image(np.ascontiguousarray(read_image(path)[..., :3]), max_size)


def build_demo(predictor: Any, *, max_size: Optional[int] = 700, threshold: float = 0.9, radius: int = 10,
               image: Optional[np.ndarray] = None):
    """The Gradio ``Blocks`` app around a :class:`~matseg_hub.models.inference.MatSegPredictor`.

    ``image``: RGB uint8 [H, W, 3] the app opens on (set on the predictor now, shown in the input panel), or None.
    """
    from ..errors import require

    gr = require("gradio", "matseg demo", extra="demo")
    start = None
    if image is not None:
        start = shrink_image(np.ascontiguousarray(image[..., :3]).astype(np.uint8), max_size)
        predictor.set_image(start)
    start_caption = f"{start.shape[1]}x{start.shape[0]} px: click on a material" if start is not None \
        else "upload an image"

    last_click = {"point": None}  # (x, y) of the last click, re-used when a slider moves (single-user, like the cache)

    def on_upload(image):
        last_click["point"] = None
        if image is None:
            predictor.reset_image()
            return None, None, None, "upload an image"
        image = shrink_image(np.ascontiguousarray(image[..., :3]).astype(np.uint8), max_size)
        predictor.set_image(image)
        return image, None, None, f"{image.shape[1]}x{image.shape[0]} px: click on a material"

    def on_click(image, radius_value, threshold_value, evt: gr.SelectData):
        if image is None or not predictor.is_image_set:
            return None, None, "upload an image first"
        x, y = (int(v) for v in evt.index)
        last_click["point"] = (x, y)
        return click_result(predictor, image, x, y, int(radius_value), float(threshold_value))

    def on_settings(image, radius_value, threshold_value):
        """A slider moved: redo the last click with the new radius / threshold (nothing to do before a click)."""
        if image is None or not predictor.is_image_set or last_click["point"] is None:
            return gr.update(), gr.update(), gr.update()
        x, y = last_click["point"]
        return click_result(predictor, image, x, y, int(radius_value), float(threshold_value))

    # gradio finds the event argument by its annotation; this module's annotations are strings (PEP 563)
    on_click.__annotations__["evt"] = gr.SelectData

    with gr.Blocks(title="MatSeg: zero-shot material state segmentation") as demo:
        gr.Markdown("# MatSeg\nUpload a photo, then click on a material: the heat map shows how similar every "
                    "pixel's material is to the clicked point; the outline shows `similarity > threshold`.")
        # same height for the three panels; outputs as PNG (lossless: exact heat-map colours, crisp mask outline);
        # elem_ids give stable selectors (tests/test_demo_browser.py drives the page in headless Chromium)
        with gr.Row(equal_height=True):
            image = gr.Image(value=start, type="numpy", label="image (click a material)", height=IMAGE_HEIGHT,
                             elem_id="matseg-image")
            heat = gr.Image(type="numpy", label="similarity to the clicked point (black 0 → yellow 1)",
                            interactive=False, format="png", height=IMAGE_HEIGHT, elem_id="matseg-heat")
            overlay = gr.Image(type="numpy", label="mask (red: similarity > threshold; yellow: clicked point)",
                               interactive=False, format="png", height=IMAGE_HEIGHT, elem_id="matseg-mask")
        caption = gr.Markdown(start_caption, elem_id="matseg-caption")
        with gr.Row():
            radius_slider = gr.Slider(0, 50, value=radius, step=1, label="point radius (px)",
                                      elem_id="matseg-radius")
            threshold_slider = gr.Slider(0.0, 1.0, value=threshold, step=0.01, label="mask threshold",
                                         elem_id="matseg-threshold")
        image.upload(on_upload, inputs=image, outputs=[image, heat, overlay, caption])
        image.clear(on_upload, inputs=image, outputs=[image, heat, overlay, caption])
        image.select(on_click, inputs=[image, radius_slider, threshold_slider], outputs=[heat, overlay, caption])
        for slider in (radius_slider, threshold_slider):
            slider.change(on_settings, inputs=[image, radius_slider, threshold_slider], outputs=[heat, overlay, caption],
                          trigger_mode="always_last", show_progress="hidden")
    return demo


def run(args: argparse.Namespace) -> int:
    from ..errors import require

    require("gradio", "matseg demo", extra="demo")
    import torch

    from ..models.inference import MatSegPredictor, load_model_and_processor

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = initial_image(args.image, args.max_size)  # a wrong --image fails before the model loads
    model, processor = load_model_and_processor(args.model, device=device, bgr=args.bgr)
    predictor = MatSegPredictor(model, processor, device=device, half=args.half)
    demo = build_demo(predictor, max_size=args.max_size, threshold=args.threshold, radius=args.radius, image=start)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)
    return 0
