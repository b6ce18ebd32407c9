"""The PLEX student: Siamese scorer, its training with Lightning, and fast inference."""

from plex.student.infer import Plex
from plex.student.model import ScorerConfig, SiameseScorer

__all__ = ["Plex", "ScorerConfig", "SiameseScorer"]
