"""Teachers: the slow explainers (perturbation and gradient) whose word attributions plex distils.

``get_teacher("lime", num_samples=500)`` builds a teacher by name; ``TEACHERS`` lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from plex.teachers.base import Teacher
from plex.teachers.gradients import IntegratedGradients
from plex.teachers.gsmile import GSmile
from plex.teachers.lime import Lime
from plex.teachers.lime_llm import LimeLLM
from plex.teachers.occlusion import Occlusion
from plex.teachers.shap import Shap

TEACHERS: dict[str, type[Teacher]] = {
    "lime": Lime,
    "lime-llm": LimeLLM,
    "shap": Shap,
    "occlusion": Occlusion,
    "ig": IntegratedGradients,
    "gsmile": GSmile,
}


def get_teacher(name: str, **settings: Any) -> Teacher:
    """Build the teacher called ``name`` with ``settings`` (its dataclass fields).

    Raises:
        ValueError: for an unknown name or setting (the message lists the valid ones) and for
            invalid values.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; known teachers: {', '.join(sorted(TEACHERS))}")
    cls = TEACHERS[key]
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in settings if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} for teacher {key!r}: "
            f"{', '.join(hints)}; valid settings: {', '.join(valid)}"
        )
    return cls(**settings)


__all__ = ["GSmile", "LimeLLM", "TEACHERS", "IntegratedGradients", "Lime", "Occlusion", "Shap", "Teacher", "get_teacher"]
