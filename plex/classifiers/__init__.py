"""Classifiers: the Hugging Face wrapper, a prompted causal LM, the callable wrapper, and the default black box."""

from plex.classifiers.base import Classifier
from plex.classifiers.callable import CallableClassifier
from plex.classifiers.hf import HFClassifier, load_classifier
from plex.classifiers.prompt import PromptClassifier

__all__ = ["CallableClassifier", "Classifier", "HFClassifier", "PromptClassifier", "load_classifier"]
