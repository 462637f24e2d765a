# Copyright 2024-2026 the MatSeg Hub authors. Licensed under the Apache License, Version 2.0.
"""Triplet accuracy: the score of the MatSeg zero-shot material-state segmentation benchmark.

A thin `evaluate` wrapper over `triplet_core.py` beside it, a verbatim copy of the computation in
`matseg_hub.metrics.triplet` (kept identical by the project's tests): the numbers are the same whether the metric is used
through `evaluate` or through `matseg_hub`, and the module needs only numpy, datasets and evaluate.
"""

import datasets
import evaluate

from .triplet_core import score_images

_CITATION = """@inproceedings{eppel2024matseg,
  title     = {Learning Zero-Shot Material States Segmentation, by Implanting Natural Image Patterns in Synthetic Data},
  author    = {Eppel, Sagi and Li, Jolina Yining and Drehwald, Manuel S. and Aspuru-Guzik, Alan},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS) Datasets and Benchmarks Track},
  year      = {2024}
}
"""

_DESCRIPTION = """\
Triplet accuracy scores material-state descriptors against point annotations grouped by material state (the MatSeg
benchmark). For every annotated point (the anchor), all points are ranked by cosine similarity of their
descriptors to the anchor's; the ranking is compared with the ground-truth similarity of their groups (1 for the
same group, 0.3 / 0.6 for partially similar groups, 0 otherwise): the score is the fraction of point pairs that are
ordered correctly. Top-1 asks whether the best match is (one of) the most similar in the ground truth. Values are
averaged over points ("point") and over groups ("material") per image, then over images. Random descriptors score
0.5, perfect ones 1.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, the point descriptors: float [N_i, D] (one row per annotated point, L2-normalised,
        e.g. `matseg_hub.metrics.triplet.point_descriptors(feature_map, points)`, `pip install matseg-hub`). Compute them
        from your descriptor map before calling the metric: full feature maps are not accepted (they would be
        cached through Arrow).
    references: per image, the group id (str or int) of each of the N_i points.
    group_similarity: optional, per image: None (no partial similarity), a dict {group: {other_group: weight}},
        a dense [G, G] matrix (rows `group_ids`, or indexed by integer group ids), or
        {"group_ids": [...], "matrix": [[...]]} as the MatSeg benchmark dataset stores it.
    group_ids: optional, per image, the group id of each row of a dense `group_similarity`.
    mode: "soft" (default; partial similarities used, the paper's "all" numbers), "hard" (relations ignored) or
        "soft_only" (only comparisons with a partial similarity, the paper's "soft cases").
    normalize: L2-normalise the descriptor rows first (default False: rows that are not unit vectors are an error).
    similarities: True when `predictions` hold, per image, a promptable model's (SAM, Materialistic) similarity rows
        [N_i, N_i] instead of descriptors: row a = every point's similarity to anchor a's prompt, NaN for points
        left out of that anchor's ranking (its other prompt points). The anchor is always ranked first.
    ties: "first" (default: equal similarities ordered as the reference's numpy argsort leaves them) or "average"
        (a tied pair of different ground truth counts as half an error; the fair rule for hard segmentations).
    return_per_image: also return the per-image results under "per_image" (default False).
Returns:
    point_triplet, material_triplet, point_top1, material_top1: benchmark means of the per-image values (None when
        no image could be scored), num_images, num_scored_images, num_skipped_images (images with no point that
        has anything to be ranked against, left out of the means), num_anchors, mode.
Examples:
    >>> import numpy as np
    >>> metric = evaluate.load("triplet_accuracy")
    >>> desc = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.28, 0.96]])
    >>> out = metric.compute(predictions=[desc], references=[["wood", "wood", "rust", "rust"]])
    >>> out["point_triplet"], out["point_top1"], out["num_anchors"]
    (1.0, 1.0, 4)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TripletAccuracy(evaluate.Metric):
    def _info(self):
        descriptors = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": descriptors,
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": descriptors,
                                   "references": datasets.Sequence(datasets.Value("int64"))}),
            ],
            reference_urls=[
                "https://github.com/sagieppel/Zero-Shot-Material-State-Segmentation-Net",
                "https://arxiv.org/abs/2403.03309",
            ],
        )

    def _compute(self, predictions, references, group_similarity=None, group_ids=None, mode="soft",
                 normalize=False, similarities=False, ties="first", return_per_image=False):
        score, per_image = score_images(
            predictions, references, group_similarity, group_ids=group_ids, mode=mode, normalize=normalize,
            similarities=similarities, ties=ties)
        if return_per_image:
            score["per_image"] = per_image
        return score
