"""Classifiers: the Hugging Face wrapper, the callable wrapper, and the default black box."""

from plex.classifiers.base import Classifier
from plex.classifiers.callable import CallableClassifier
from plex.classifiers.hf import HFClassifier, load_classifier

__all__ = ["CallableClassifier", "Classifier", "HFClassifier", "load_classifier"]
