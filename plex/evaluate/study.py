"""``plex study``: one table over classifiers of different sizes.

For each size (the first N layers of the encoder, fine-tuned on polarity), it reports the
classifier's test accuracy and, for LIME at a fixed budget on the evaluation texts, comprehensiveness
(faithfulness) and plausibility against the rationales.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from plex.config import ClassifierTrainConfig, StudyConfig

logger = logging.getLogger(__name__)

COLUMNS = ["layers", "parameters", "test_accuracy", "comprehensiveness", "sufficiency", "token_f1", "auprc",
           "lime_ms_per_text"]


def run_study(cfg: StudyConfig, progress: bool = True) -> list[dict]:
    from plex.classifiers import load_classifier
    from plex.classifiers.train import train_classifier
    from plex.data import load_split
    from plex.evaluate.faithfulness import faithfulness
    from plex.evaluate.plausibility import plausibility
    from plex.evaluate.report import markdown_table
    from plex.io import open_output
    from plex.teachers import Lime

    rows = []
    for layers in cfg.layers:
        folder = Path(cfg.checkpoints) / f"classifier-{Path(cfg.encoder).name}-{layers}layers-{Path(cfg.dataset).stem}"
        if not (folder / "metrics.json").is_file():
            logger.info("training the %d-layer classifier -> %s", layers, folder)
            train_classifier(ClassifierTrainConfig(encoder=cfg.encoder, dataset=cfg.dataset, output=str(folder),
                                                   epochs=cfg.epochs, num_layers=layers), progress=progress)
        metrics = json.loads((folder / "metrics.json").read_text())
        clf = load_classifier(folder)
        data = load_split(cfg.data, cfg.split, labels=clf.labels, keep=("rationale_spans",))
        data = data.select(range(min(cfg.n, len(data))))
        lime = Lime(num_samples=cfg.lime_samples, seed=0)
        attrs = lime.explain(clf, list(data["text"]))
        faith = faithfulness(clf, attrs)
        row = {
            "layers": layers,
            "parameters": sum(p.numel() for p in clf.model.parameters()),
            "test_accuracy": metrics["test_accuracy"],
            "comprehensiveness": float(np.nanmean([f["comprehensiveness"] for f in faith])),
            "sufficiency": float(np.nanmean([f["sufficiency"] for f in faith])),
            "lime_ms_per_text": 1000 * float(np.mean([a.meta["seconds"] for a in attrs])),
        }
        if "rationale_spans" in data.column_names:
            plaus = [plausibility(a, s) for a, s, g in zip(attrs, data["rationale_spans"], data["label"])
                     if a.target == g]
            row["token_f1"] = float(np.nanmean([p["token_f1_oracle_k"] for p in plaus]))
            row["auprc"] = float(np.nanmean([p["auprc"] for p in plaus]))
            row["plausibility_texts"] = len(plaus)
        rows.append(row)
        logger.info("%d layers: %s", layers, row)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with open_output(out / "study.json") as f:
        json.dump({"config": dataclasses.asdict(cfg), "rows": rows}, f, indent=2)
    table = markdown_table({f"{r['layers']} layers": r for r in rows}, COLUMNS[1:], first="classifier")
    with open_output(out / "study.md") as f:
        f.write(f"# Model-size study: {cfg.encoder} on {cfg.dataset}\n\nLIME ({cfg.lime_samples} samples) on the first "
                f"{cfg.n} texts of `{cfg.data}`; plausibility on correctly predicted texts. token_f1 is the "
                "token F1 at oracle k (k = the number of rationale words of each text).\n\n"
                f"{table}\n")
    return rows
