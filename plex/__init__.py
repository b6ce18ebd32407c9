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
    "Plex",
    "load_classifier",
    "segment",
    "teachers",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name):
    # teachers pull in lime and shap, the student Lightning: import them on first use.
    import importlib

    if name == "teachers":
        return importlib.import_module("plex.teachers")
    if name == "Plex":
        return importlib.import_module("plex.student").Plex
    raise AttributeError(f"module 'plex' has no attribute {name!r}")
