"""MatSeg classes for transformers' Auto classes: they come from the installed package
(``pip install matseg-hub``); nothing else is defined or run here."""

from matseg_hub.models.matseg import MatSegConfig, MatSegImageProcessor, MatSegModel  # noqa: F401
