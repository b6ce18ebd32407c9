"""``plex demo``: the main job on the embedded default, end to end, with nothing to download.

1. trains the default black box (MiniLM fine-tuned on polarity) unless it is already saved;
2. labels a slice of the polarity train split with LIME (resumable: a re-run reuses what exists);
3. prints what it chose, the classifier's accuracy, the teacher's cost per text and an example.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from plex.config import ClassifierTrainConfig, LabelConfig

logger = logging.getLogger(__name__)

DEMO_LIMIT = 64
DEMO_LIME_SAMPLES = 500


def run_demo(output: str | Path = "outputs/demo", limit: int | None = None, num_samples: int | None = None) -> dict:
    from plex.classifiers.train import train_classifier
    from plex.label import load_labels, run_label

    output = Path(output)
    limit = limit or DEMO_LIMIT
    num_samples = num_samples or DEMO_LIME_SAMPLES
    clf_cfg = ClassifierTrainConfig()
    clf_dir = Path(clf_cfg.output)
    if (clf_dir / "config.json").is_file():
        print(f"[1/2] classifier: reusing {clf_dir}")
    else:
        print(f"[1/2] classifier: fine-tuning {clf_cfg.encoder} on polarity ({clf_cfg.epochs} epochs) -> {clf_dir}")
        train_classifier(clf_cfg)
    metrics = json.loads((clf_dir / "metrics.json").read_text()) if (clf_dir / "metrics.json").is_file() else {}

    print(f"[2/2] labels: LIME with {num_samples} samples on the first {limit} polarity train sentences")
    label_cfg = LabelConfig(classifier=str(clf_dir), teacher="lime", teacher_args={"num_samples": num_samples, "seed": 0},
                            output=str(output / f"labels-lime-{num_samples}"), limit=limit, shard_size=16)
    result = run_label(label_cfg)
    rows = load_labels(result.output)
    per_text = sum(rows["seconds"]) / max(len(rows), 1)

    print()
    if metrics:
        print(f"classifier   {clf_dir}  validation accuracy {metrics['val_accuracy']:.3f}  "
              f"test accuracy {metrics['test_accuracy']:.3f}")
    print(f"labels       {result.output}  {result.rows} texts, LIME {per_text:.2f} s/text")
    example = rows[0]
    scores = example["scores"][example["target"]]
    top = sorted(zip(scores, example["words"]), reverse=True)[:3]
    print(f"example      {example['text']!r}")
    print(f"             predicted {example['target']} (p={max(example['probs']):.2f}); "
          f"top words: {', '.join(f'{w} ({s:+.3f})' for s, w in top)}")
    return {"classifier": metrics, "labels": str(result.output), "rows": result.rows, "seconds_per_text": per_text}
