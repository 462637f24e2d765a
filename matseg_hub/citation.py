"""How to cite MatSeg: one definition used by every dataset card, model card and the metric module."""

PAPER_URL = "https://arxiv.org/abs/2403.03309"

CITATION = """@inproceedings{eppel2024matseg,
  title     = {Learning Zero-Shot Material States Segmentation, by Implanting Natural Image Patterns in Synthetic Data},
  author    = {Eppel, Sagi and Li, Jolina Yining and Drehwald, Manuel S. and Aspuru-Guzik, Alan},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS) Datasets and Benchmarks Track},
  year      = {2024}
}"""
