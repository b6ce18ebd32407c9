"""plex: perturbation-free local explanations for text classifiers."""

import logging

from plex.attribution import Attribution
from plex.classifiers import CallableClassifier, Classifier, HFClassifier, load_classifier
from plex.words import segment

__version__ = "0.1.0"
__all__ = [
    "Attribution",
    "CallableClassifier",
    "Classifier",
    "HFClassifier",
    "load_classifier",
    "segment",
    "teachers",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name):
    # teachers pull in lime and shap; import them on first use.
    if name == "teachers":
        import importlib

        return importlib.import_module("plex.teachers")
    raise AttributeError(f"module 'plex' has no attribute {name!r}")
