"""Every YAML file in configs/ loads into its typed config, and bad settings name the fix."""

from pathlib import Path

import pytest

from plex.config import (
    ClassifierTrainConfig,
    ConfigError,
    DistillStudyConfig,
    EvaluateConfig,
    LabelConfig,
    PromptClassifierConfig,
    StudentTrainConfig,
    StudyConfig,
    load_config,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
KINDS = {"label": LabelConfig, "classifier": ClassifierTrainConfig, "train": StudentTrainConfig,
         "evaluate": EvaluateConfig, "study": StudyConfig, "prompt": PromptClassifierConfig,
         "distill": DistillStudyConfig}


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_file_loads(path):
    kind = path.parent.name
    assert kind in KINDS, f"{path} is in a folder ({kind}) with no config class; known: {sorted(KINDS)}"
    cfg = load_config(KINDS[kind], path)
    if kind == "label":
        from plex.teachers import get_teacher

        teacher = get_teacher(cfg.teacher, **cfg.teacher_args)
        assert teacher.config()["name"] == cfg.teacher
    if kind == "distill":
        from plex.evaluate.distill import allocations, variants

        assert allocations(cfg) and variants(cfg)


def test_unknown_key_names_the_close_match(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("teacher: lime\nnum_sample: 5\n")
    with pytest.raises(ConfigError, match="num_sample.*known: .*teacher_args"):
        load_config(LabelConfig, path)
    with pytest.raises(ConfigError, match="did you mean 'limit'"):
        load_config(LabelConfig, limt=3)


def test_wrong_type_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="'epochs'.*int"):
        load_config(ClassifierTrainConfig, epochs="three")
    path = tmp_path / "ok.yaml"
    path.write_text("limit: 5\nteacher_args: {num_samples: 10}\n")
    cfg = load_config(LabelConfig, path, limit=7, split=None)
    assert cfg.limit == 7 and cfg.split == "train" and cfg.teacher_args == {"num_samples": 10}
