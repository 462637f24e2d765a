"""Leaderboard reports of ``matseg evaluate --report DIR``: the runs as JSON, a Markdown table, a bar chart.

:func:`write_report` takes the result dicts of :func:`~matseg_hub.benchmark.evaluation.evaluate_benchmark`
(``task = "triplet"``) or of ``matseg_hub.segmentation.evaluation.evaluate_segmentation`` (``task = "iou"``) and
writes three files into a report folder:

* ``results.json``: every run as returned, with the settings, the matseg-hub version and the date (UTC);
* ``leaderboard.md``: triplet runs in the paper's layout (one row per model, the runs of one model in several modes
  merged: all cases = ``soft`` mode, soft cases = ``soft_only`` mode; point triplet, material triplet, point top-1;
  images scored), IoU runs as oracle / fixed-threshold IoU per region and per image; then the paper's published
  numbers (SPEC §8) in a separate block labelled as such: they are *not* measured by this run;
* ``leaderboard.png``: a bar chart (:data:`CHART_SIZE` pixels, drawn with Pillow): per model the two triplet
  numbers (all / soft cases, point triplet) or the two IoUs (oracle / fixed, per image), the paper's rows drawn
  beside as hatched outline bars labelled "paper".

The paper gives one triplet accuracy per model and case set without saying whether it is weighted by point or by
material; the reference ``Evaluate.py`` reports both and names the point-weighted one "triplet accuracy" first, so the
chart sets the paper's numbers beside the *point* triplet; the table keeps them in their own block.

The folder follows the output rules of :mod:`matseg_hub.utils.files`: it must be new, empty or an earlier report
(its ``.matseg_output.json`` says so); a re-run replaces only the report's own three files; every file is written
atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import MatSegInputError, MatSegOutputError
from ..utils.files import (OUTPUT_MANIFEST, atomic_write_bytes, atomic_write_text, cannot_write, check_output_folder,
                           read_output_manifest, write_output_manifest)

REPORT_KIND = "evaluate --report"  # the output manifest's "kind": `matseg evaluate --report`'s own folder
REPORT_FILES = ("results.json", "leaderboard.md", "leaderboard.png")
WRITTEN_BY = "matseg evaluate"  # the same mark as `matseg evaluate --output` files
CHART_SIZE = (1000, 560)  # width, height of leaderboard.png in pixels

#: the paper's triplet accuracy (Eppel et al., NeurIPS 2024; SPEC §8): (model, all cases, soft cases)
PAPER_TRIPLET: Tuple[Tuple[str, float, float], ...] = (
    ("MatSeg mixed 2D+3D", 0.92, 0.84),
    ("MatSeg 3D only", 0.90, 0.83),
    ("MatSeg 2D only", 0.91, 0.84),
    ("Materialistic", 0.76, 0.72),
    ("SAM 1 pt", 0.69, 0.63),
    ("SAM 2 pt", 0.70, 0.62),
    ("SAM 4 pt", 0.72, 0.64),
    ("SAM 8 pt", 0.74, 0.65),
    ("random", 0.50, 0.50),
)
#: the paper's IoU on external segmentation sets (SPEC §8), the best threshold (oracle): dataset -> (MatSeg,
#: Materialistic, SAM 8 pt)
PAPER_IOU_MODELS = ("MatSeg", "Materialistic", "SAM 8 pt")
PAPER_IOU: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ("Cu ore", (0.52, 0.36, 0.69)),
    ("FeM ore", (0.62, 0.37, 0.67)),
    ("corrosao-segment", (0.69, 0.49, 0.56)),
    ("leaf diseases", (0.56, 0.47, 0.54)),
    ("URDE dust", (0.50, 0.47, 0.52)),
    ("soil-type-class-2", (0.62, 0.53, 0.72)),
    ("soil type", (0.69, 0.71, 0.88)),
    ("NuInsSeg", (0.38, 0.17, 0.32)),
    ("CryoNuSeg", (0.45, 0.28, 0.28)),
    ("Materialistic real", (0.75, 0.87, 0.85)),
    ("LabPics Chemistry", (0.62, 0.63, 0.75)),
    ("LabPics Medical", (0.71, 0.68, 0.72)),
)
PAPER_CITATION = ("Eppel et al., \"Learning Zero-Shot Material States Segmentation by Implanting Natural Image "
                  "Patterns in Synthetic Data\", NeurIPS 2024 Datasets & Benchmarks")

#: triplet modes in table order, with the paper's name of each case set
MODE_COLUMNS = (("soft", "all cases"), ("soft_only", "soft cases"), ("hard", "hard"))
TRIPLET_CELLS = (("point_triplet", "point triplet"), ("material_triplet", "material triplet"),
                 ("point_top1", "point top-1"))
IOU_CELLS = (("oracle_region", "oracle IoU per region"), ("oracle_image", "oracle IoU per image"),
             ("fixed_region", "fixed IoU per region"), ("fixed_image", "fixed IoU per image"))


# ----------------------------------------------------------------------------------------------------------------
# runs -> rows
# ----------------------------------------------------------------------------------------------------------------
def report_task(runs: Sequence[Mapping[str, Any]]) -> str:
    """The task of the runs (``"triplet"`` or ``"iou"``; a run without ``"task"`` is a triplet run).

    Raises:
        MatSegInputError: no run, a run that is not a result dict, or runs of both tasks.
    """
    if not runs:
        raise MatSegInputError("a report needs at least one run")
    tasks = set()
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not isinstance(run.get("mean"), Mapping) or "model" not in run:
            raise MatSegInputError(f"run {i} is not an evaluation result (a dict with 'model' and 'mean')")
        tasks.add(run.get("task", "triplet"))
    if not tasks <= {"triplet", "iou"}:
        raise MatSegInputError(f"unknown task(s) {sorted(tasks - {'triplet', 'iou'})}: expected 'triplet' or 'iou'")
    if len(tasks) > 1:
        raise MatSegInputError("a report holds runs of one task: got both triplet and iou runs; write two reports")
    return tasks.pop()


def leaderboard_rows(runs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One row per model: the triplet runs of the same model (``run["model"]``) in different modes merged.

    Returns:
        ``[{"model": name, "modes": {mode: run["mean"]}}]`` in the order the models first appear. A second run of the
        same model in the same mode (e.g. another seed) becomes its own row, named ``"<model> (run 2)"``.
    """
    rows: List[Dict[str, Any]] = []
    for run in runs:
        mode = run.get("mode", "soft")
        name = str(run["model"])
        for row in rows:
            if row["base"] == name and mode not in row["modes"]:
                row["modes"][mode] = run["mean"]
                break
        else:
            copies = sum(1 for row in rows if row["base"] == name)
            rows.append({"base": name, "model": name if not copies else f"{name} (run {copies + 1})",
                         "modes": {mode: run["mean"]}})
    return [{"model": row["model"], "modes": row["modes"]} for row in rows]


def _cell(value: Any, digits: int = 5) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _data_name(runs: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    data = settings.get("data", runs[0].get("data"))
    return "the built-in sample" if data is None else str(data)


def triplet_markdown(runs: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], *, version: str,
                     date: str) -> str:
    """``leaderboard.md`` of triplet runs (see the module docstring)."""
    rows = leaderboard_rows(runs)
    modes = [m for m, _ in MODE_COLUMNS if m in ("soft", "soft_only") or any(m in r["modes"] for r in rows)]
    titles = dict(MODE_COLUMNS)
    header = ["model"] + [f"{titles[m]}: {label}" for m in modes for _, label in TRIPLET_CELLS] + \
        [f"images scored ({' / '.join(titles[m] for m in modes)})"]
    body = []
    for row in rows:
        cells = [_md_escape(row["model"])]
        for mode in modes:
            mean = row["modes"].get(mode)
            cells += [_cell(mean.get(key)) if mean is not None else "—" for key, _ in TRIPLET_CELLS]
        cells.append(" / ".join(str(row["modes"][m].get("num_scored_images", "n/a")) if m in row["modes"] else "—"
                                for m in modes))
        body.append(cells)
    max_size = settings.get("max_size", runs[0].get("max_size"))
    lines = ["# MatSeg benchmark leaderboard", "",
             f"Triplet accuracy (SPEC §3) on {_data_name(runs, settings)}, evaluation size "
             f"{max_size or 'full resolution'}; measured by matseg-hub {version} on {date}.",
             "All cases = `soft` mode (the group relations used; the paper's \"all\"), soft cases = `soft_only` mode "
             "(only partially similar pairs). Top-1 is point-weighted; \"—\": not run in that mode.", ""]
    lines += _table(header, body, ["---"] + ["---:"] * (len(header) - 1))
    lines += ["", "## Paper (reference): published numbers, not measured by this run", "",
              f"From {PAPER_CITATION}, on the full benchmark (1,220 photos). The paper gives one triplet accuracy per "
              "case set without saying whether it is point- or material-weighted; compare it with the point triplet "
              "above (the reference `Evaluate.py` reports that one first).", ""]
    lines += _table(["model (paper)", "all cases: triplet", "soft cases: triplet"],
                    [[name, f"{a:.2f}", f"{s:.2f}"] for name, a, s in PAPER_TRIPLET], ["---", "---:", "---:"])
    return "\n".join(lines) + "\n"


def iou_markdown(runs: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], *, version: str, date: str) -> str:
    """``leaderboard.md`` of IoU runs (see the module docstring)."""
    thresholds = sorted({str(run.get("threshold")) for run in runs})
    header = ["model"] + [label for _, label in IOU_CELLS] + ["images", "regions", "small regions left out"]
    body = []
    for run in runs:
        mean = run["mean"]
        body.append([_md_escape(run["model"])] + [_cell(mean.get(key)) for key, _ in IOU_CELLS] +
                    [str(mean.get(k, "n/a")) for k in ("num_images", "num_regions", "num_small_regions")])
    lines = ["# Segmentation-set leaderboard (point-prompted IoU)", "",
             f"IoU (SPEC §10) on {_data_name(runs, settings)}; measured by matseg-hub {version} on {date}.",
             "Oracle = the best threshold of a sweep over [0, 1] for each query map (as the authors' evaluation "
             "picks it: it sees the ground truth, an upper bound); fixed = one threshold for the whole set: "
             f"{', '.join(thresholds)}. Per region: the mean over regions; per image: over images.", ""]
    lines += _table(header, body, ["---"] + ["---:"] * (len(header) - 1))
    lines += ["", "## Paper (reference): published numbers, not measured by this run", "",
              f"From {PAPER_CITATION}: IoU with the best threshold (the oracle) on the paper's external sets.", ""]
    lines += _table(["dataset (paper)"] + list(PAPER_IOU_MODELS),
                    [[name] + [f"{v:.2f}" for v in values] for name, values in PAPER_IOU],
                    ["---"] + ["---:"] * len(PAPER_IOU_MODELS))
    return "\n".join(lines) + "\n"


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def paper_iou_for(data: Any) -> Optional[Tuple[str, Tuple[float, float, float]]]:
    """The paper's IoU row whose dataset name the data's name (folder name or Hub id) matches, or ``None``."""
    if data is None:
        return None
    name = _norm(Path(str(data)).name)
    for dataset, values in PAPER_IOU:
        if _norm(dataset) == name:
            return dataset, values
    return None


# ----------------------------------------------------------------------------------------------------------------
# chart
# ----------------------------------------------------------------------------------------------------------------
_COLORS = ((31, 119, 180), (255, 127, 14))  # the two measured series
_PAPER = (90, 90, 90)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw, text: str, font) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2] - box[0]


def _fit(draw, text: str, font, width: int) -> str:
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, "…" + text, font) > width:
        text = text[1:]
    return "…" + text


def _hatched_bar(draw, box: Tuple[int, int, int, int], color: Tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=color, width=2)
    for start in range(x0 - (y1 - y0), x1, 7):  # diagonal hatch clipped to the box
        a = (max(start, x0), y1 - (max(start, x0) - start))
        b = (min(start + (y1 - y0), x1), y1 - (min(start + (y1 - y0), x1) - start))
        if a[0] < b[0]:
            draw.line([a, b], fill=color, width=1)


def bar_chart(groups: Sequence[Tuple[str, Sequence[Optional[float]], bool]], series: Sequence[str], title: str,
              *, size: Tuple[int, int] = CHART_SIZE, reference_line: Optional[Tuple[float, str]] = None) -> bytes:
    """A grouped bar chart as PNG bytes (RGB, ``size`` pixels).

    Args:
        groups: ``(label, values, is_paper)`` per bar group; ``values`` in [0, 1] (``None``: no bar), one per series;
            paper groups are drawn as hatched outline bars.
        series: the legend name of each value.
        reference_line: ``(y, label)``: a dashed horizontal line (e.g. the paper's random 0.5).
    """
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    small, normal = _font(12), _font(15)
    left, right, top, bottom = 56, 16, 64, 170
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(value: float) -> int:
        return int(round(top + plot_h * (1.0 - min(max(value, 0.0), 1.0))))

    draw.text((left, 12), title, fill="black", font=normal)
    for i, name in enumerate(series):  # legend: measured (filled) and paper (hatched)
        x = left + i * 170
        draw.rectangle((x, 38, x + 14, 52), fill=_COLORS[i % 2])
        draw.text((x + 20, 38), _fit(draw, name, small, 145), fill="black", font=small)
    x = left + len(series) * 170
    _hatched_bar(draw, (x, 38, x + 14, 52), _PAPER)
    draw.text((x + 20, 38), "paper (published)", fill="black", font=small)
    if reference_line is not None:
        x += 170
        for dx in (0, 12):
            draw.line([(x + dx, 45), (x + dx + 6, 45)], fill=(200, 0, 0), width=2)
        draw.text((x + 24, 38), reference_line[1], fill="black", font=small)
    for tick in range(11):
        value = tick / 10
        y = y_of(value)
        draw.line([(left, y), (width - right, y)], fill=(225, 225, 225) if tick else (0, 0, 0), width=1)
        label = f"{value:.1f}"
        draw.text((left - 8 - _text_width(draw, label, small), y - 7), label, fill="black", font=small)
    draw.line([(left, top), (left, top + plot_h)], fill="black", width=1)
    n = max(len(groups), 1)
    slot = plot_w / n
    bar_w = max(2, int(slot * 0.8 / max(len(series), 1)))
    first_paper = next((i for i, g in enumerate(groups) if g[2]), None)
    if first_paper:
        x = int(left + first_paper * slot)
        draw.line([(x, top), (x, top + plot_h)], fill=(160, 160, 160), width=1)
    for i, (label, values, is_paper) in enumerate(groups):
        x0 = left + i * slot + slot * 0.1
        for j, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            box = (int(x0 + j * bar_w), y_of(value), int(x0 + (j + 1) * bar_w) - 1, y_of(0.0))
            if is_paper:
                _hatched_bar(draw, box, _COLORS[j % 2])
            else:
                draw.rectangle(box, fill=_COLORS[j % 2])
                label_v = f"{value:.3f}"
                if _text_width(draw, label_v, small) <= bar_w:
                    draw.text((box[0] + (bar_w - _text_width(draw, label_v, small)) // 2, box[1] - 15), label_v,
                              fill="black", font=small)
        text = _fit(draw, ("paper: " if is_paper else "") + label, small, bottom - 10)
        tw = _text_width(draw, text, small)
        strip = Image.new("RGB", (tw + 4, 16), "white")
        ImageDraw.Draw(strip).text((2, 0), text, fill=_PAPER if is_paper else (0, 0, 0), font=small)
        strip = strip.rotate(90, expand=True)
        cx = int(left + i * slot + slot / 2 - strip.width / 2)
        image.paste(strip, (cx, top + plot_h + 6))
    if reference_line is not None:
        y = y_of(reference_line[0])
        for x in range(left, width - right, 12):
            draw.line([(x, y), (min(x + 6, width - right), y)], fill=(200, 0, 0), width=2)
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def triplet_chart(runs: Sequence[Mapping[str, Any]]) -> bytes:
    """``leaderboard.png`` of triplet runs: point triplet, all / soft cases, per model; the paper's rows beside."""
    groups = [(row["model"], [(row["modes"].get(m) or {}).get("point_triplet") for m in ("soft", "soft_only")], False)
              for row in leaderboard_rows(runs)]
    groups += [(name, [a, s], True) for name, a, s in PAPER_TRIPLET if name != "random"]
    return bar_chart(groups, ["all cases (soft)", "soft cases (soft_only)"],
                     "MatSeg benchmark: point triplet accuracy (hatched: the paper's published numbers)",
                     reference_line=(0.5, "random (paper) 0.5"))


def iou_chart(runs: Sequence[Mapping[str, Any]], data: Any = None) -> bytes:
    """``leaderboard.png`` of IoU runs: oracle and fixed IoU per image, per model; the paper's numbers for a
    dataset whose folder name matches one of the paper's sets drawn beside (as oracle bars: the paper reports the
    best-threshold IoU)."""
    groups = [(str(run["model"]), [run["mean"].get("oracle_image"), run["mean"].get("fixed_image")], False)
              for run in runs]
    match = paper_iou_for(data)
    if match is not None:
        groups += [(f"{model} ({match[0]})", [value, None], True) for model, value in zip(PAPER_IOU_MODELS, match[1])]
    return bar_chart(groups, ["oracle IoU per image", "fixed IoU per image"],
                     "Point-prompted IoU (hatched: the paper's published oracle IoU for this dataset)")


# ----------------------------------------------------------------------------------------------------------------
# the report folder
# ----------------------------------------------------------------------------------------------------------------
def check_report_folder(folder: Union[str, Path], *, overwrite: bool = False, sources: Iterable[Any] = (),
                        option: str = "--report") -> None:
    """Refuse, before any scoring, a report folder that is a file, overlaps a source, or holds files and is not an
    earlier report (unless ``overwrite``: then only the report's own file names are replaced there).

    Raises:
        MatSegOutputError: naming the folder and what to do.
    """
    from ..utils.files import check_sources_apart

    path = Path(folder)
    if overwrite:
        check_sources_apart(path, [s for s in sources if s is not None], option=option)
        if path.exists() and not path.is_dir():
            raise MatSegOutputError(f"{option} {path} is a file, not a folder; nothing was changed. Choose a folder",
                                    path=path)
        for name in REPORT_FILES:
            if (path / name).is_dir():
                raise MatSegOutputError(f"{option} {path / name} is a folder where the report writes a file; nothing "
                                        "was changed. Choose another report folder", path=path / name)
        return
    check_output_folder(path, REPORT_KIND, sources=[s for s in sources if s is not None], option=option)


def write_report(runs: Sequence[Mapping[str, Any]], folder: Union[str, Path], *, overwrite: bool = False,
                 settings: Optional[Mapping[str, Any]] = None, sources: Iterable[Any] = (),
                 date: Optional[str] = None) -> Dict[str, Path]:
    """Write ``results.json``, ``leaderboard.md`` and ``leaderboard.png`` into ``folder`` (see the module docstring).

    Args:
        runs: result dicts of ``evaluate_benchmark`` (triplet) or ``evaluate_segmentation`` (iou), all one task.
        folder: the report folder: new, empty, or an earlier report (a re-run replaces only these three files).
        overwrite: also write into a folder that is not a report folder (only the three file names are replaced
            there; nothing else is touched).
        settings: the run's settings recorded in ``results.json`` (``matseg evaluate`` passes its options).
        sources: local data folders the report must not overlap.
        date: the date written (ISO 8601, UTC); default now.

    Returns:
        ``{"results": path, "leaderboard": path, "chart": path}``.

    Raises:
        MatSegInputError: no runs, not result dicts, or runs of two tasks.
        MatSegOutputError: a folder that may not be written (see :func:`check_report_folder`).
    """
    __version__ = _package_version()
    task = report_task(runs)
    settings = dict(settings or {})
    sources = list(sources)
    check_report_folder(folder, overwrite=overwrite, sources=sources)
    date = date or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    runs = [dict(run) for run in runs]
    payload = {"written_by": WRITTEN_BY, "matseg_hub_version": __version__, "date": date, "task": task,
               "settings": settings, "runs": runs}
    try:
        results_text = json.dumps(payload, indent=2, default=_json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise MatSegInputError(f"the runs cannot be written as JSON: {exc}") from None
    if task == "triplet":
        markdown = triplet_markdown(runs, settings, version=__version__, date=date)
        chart = triplet_chart(runs)
    else:
        markdown = iou_markdown(runs, settings, version=__version__, date=date)
        chart = iou_chart(runs, settings.get("data", runs[0].get("data")))
    path = Path(folder)
    try:
        manifest = read_output_manifest(path) if path.is_dir() else None
        fresh = not path.exists() or (manifest is None and not any(path.iterdir()))
        path.mkdir(parents=True, exist_ok=True)
        if fresh or (manifest is not None and manifest.get("kind") == REPORT_KIND):
            # only a new or empty folder, or an earlier report, is marked as a report folder: an --overwrite into
            # a folder of other files (or another command's output) leaves its ownership as it was
            write_output_manifest(path, REPORT_KIND, files=REPORT_FILES)
        out = {"results": atomic_write_text(path / "results.json", results_text),
               "leaderboard": atomic_write_text(path / "leaderboard.md", markdown),
               "chart": atomic_write_bytes(path / "leaderboard.png", chart)}
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    return out


def _package_version() -> str:
    """The installed matseg-hub version (``benchmark/`` may not import the top-level package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("matseg-hub")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
        return "unknown"


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover - numpy is a core dependency
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = ["write_report", "check_report_folder", "leaderboard_rows", "triplet_markdown", "iou_markdown",
           "triplet_chart", "iou_chart", "bar_chart", "report_task", "paper_iou_for", "PAPER_TRIPLET", "PAPER_IOU",
           "PAPER_IOU_MODELS", "REPORT_FILES", "REPORT_KIND", "CHART_SIZE", "OUTPUT_MANIFEST"]
