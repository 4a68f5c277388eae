"""Command line: `selfmoa run`, `selfmoa study`, `selfmoa status`, `selfmoa judges`, `selfmoa train`, `selfmoa config`.

`selfmoa train` also runs under `accelerate launch -m selfmoa.cli train ...` (one process per GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from selfmoa import config as C


def _common(p: argparse.ArgumentParser, run_id: bool = True) -> None:
    p.add_argument("--config", default="configs/cpu.yaml", help="YAML profile (default: configs/cpu.yaml)")
    if run_id:
        p.add_argument("--run-id", default=None, help="run folder name (default: <profile>-seed<seed>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.beta=0.2 (repeatable)",
    )


def _seeds(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--seeds", type=int, nargs="+", required=required, metavar="SEED", help="training seeds, e.g. --seeds 0 1 2"
    )


def build_parser() -> argparse.ArgumentParser:
    """The `selfmoa` argument parser."""
    parser = argparse.ArgumentParser(prog="selfmoa", description="Self-MOA study runner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="execute the study's notebooks with papermill (resumes)")
    _common(p_run)
    p_run.add_argument("--force", action="store_true", help="recompute stages even when complete")
    p_run.add_argument("--kernel", default="selfmoa", help="Jupyter kernel name (default: selfmoa)")
    p_run.add_argument("--log-output", action="store_true", help="stream notebook output")
    p_study = sub.add_parser(
        "study", help="run stages 00-07b for every seed, then one cross-seed report (08_report) over them"
    )
    _common(p_study, run_id=False)
    _seeds(p_study, required=True)
    p_study.add_argument("--study-id", default=None, help="study folder name (default: <profile>-study)")
    p_study.add_argument("--force", action="store_true", help="recompute stages even when complete")
    p_study.add_argument("--kernel", default="selfmoa", help="Jupyter kernel name (default: selfmoa)")
    p_study.add_argument("--log-output", action="store_true", help="stream notebook output")
    p_status = sub.add_parser("status", help="which stages of a run (or, with --seeds, of a study) are complete")
    _common(p_status)
    _seeds(p_status, required=False)
    p_status.add_argument("--study-id", default=None, help="study folder name (default: <profile>-study)")
    p_judges = sub.add_parser("judges", help="validate the train and eval judges on held-out labelled answers")
    _common(p_judges)
    p_train = sub.add_parser(
        "train",
        help="stage 06_align (or a pairs file) outside the notebooks; several GPUs: accelerate launch -m selfmoa.cli train",
    )
    _common(p_train)
    p_train.add_argument(
        "--iteration", type=int, default=None, help="loop iteration t of the run's 06_align (default 0)"
    )
    p_train.add_argument("--force", action="store_true", help="retrain even when the stage is complete")
    p_train.add_argument("--pairs", metavar="JSONL", help="train the base policy on this pairs.jsonl instead")
    p_train.add_argument("--output", metavar="DIR", help="adapter folder written by --pairs training")
    p_var = sub.add_parser("variant", help="train and evaluate one study variant of a run (07b runs one per process)")
    _common(p_var)
    p_var.add_argument("--name", required=True, help="variant name from the run's 07b plan, e.g. loop_ws0")
    p_var.add_argument(
        "--round",
        type=int,
        default=None,
        dest="round_",
        help="train only this round of a static_sched_* variant (its process starts one per round)",
    )
    p_cfg = sub.add_parser("config", help="list every config key with its default and help")
    p_cfg.add_argument("--check", metavar="PATH", help="validate a config file and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `selfmoa` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.cmd == "config":
            if args.check:
                C.load(args.check)
                print(f"{args.check}: ok")
                return 0
            for key, default, help_ in C.describe():
                print(f"{key:32s} {default:28s} {help_}")
            return 0
        if args.cmd == "judges":
            return _judges(args.config, args.overrides)
        if args.cmd == "train":
            return _train(args)
        if args.cmd == "variant":
            return _variant(args)
        from selfmoa import pipeline

        if args.cmd == "status":
            if args.seeds:
                plan = pipeline.study_plan(args.config, args.seeds, args.overrides, args.study_id)
                rows = pipeline.study_status(plan)
            else:
                rows = pipeline.status(args.config, args.run_id, args.overrides)
            for row in rows:
                secs = "" if row["seconds"] is None else f"{row['seconds']:.1f}s"
                where = f"{row['run']:20s} " if args.seeds else ""
                print(f"{where}{row['step']:24s} {row['state']:9s} {secs}")
            return 0
        if args.cmd == "study":
            return _study(args)
        from selfmoa import runlock
        from selfmoa.paths import resolve_path, run_dir

        args.overrides = pipeline.publish_guard(args.config, args.overrides)
        cfg = C.load(resolve_path(args.config), args.overrides)
        C.check_installed(cfg)
        with runlock.hold(run_dir(cfg.runs_dir, args.run_id or pipeline.default_run_id(cfg))):
            summary = pipeline.run(
                args.config,
                args.run_id,
                args.overrides,
                force=args.force,
                kernel_name=args.kernel,
                log_output=args.log_output,
            )
        ran = sum(s["ran"] for s in summary["steps"])
        print(
            f"run {summary['run_id']}: {ran} steps ran, {len(summary['steps']) - ran} skipped, "
            f"{summary['seconds']:.0f}s"
        )
        return 0
    except (C.ConfigError, RuntimeError, ValueError) as err:
        print(f"selfmoa: error: {one_line(str(err))}", file=sys.stderr)
        return 2


def one_line(text: str) -> str:
    """An error message on one line (YAML parser errors span several)."""
    return " ".join(text.split())


def _judges(config_path: str, overrides: list[str]) -> int:
    """Write data/results/<profile>/judges.csv (accuracy, F1, AUROC of every judge and ensemble)."""
    from selfmoa.judges.factory import judge_lm
    from selfmoa.judges.validation import split_timing, validate_judges, write_timing_manifest
    from selfmoa.paths import resolve_path, results_dir

    cfg = C.load(resolve_path(config_path), overrides)
    table, timing = split_timing(validate_judges(cfg, judge_lm(cfg, "train", "eval")))
    out = results_dir(cfg.profile) / "judges.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    manifest = resolve_path(cfg.cache_dir) / "judges" / f"{cfg.profile}.judges.manifest.json"
    write_timing_manifest(manifest, timing)
    cols = ["configuration", "aspect", "judge", "n", "accuracy", "f1", "auroc", "unscored_fraction"]
    print(table[cols].round(3).to_string(index=False))
    print(f"wrote {out} (timing in {manifest})")
    return 0


def _study(args: argparse.Namespace) -> int:
    """`selfmoa study`: every seed run, then the cross-seed report (`selfmoa.pipeline.study`)."""
    from selfmoa import pipeline
    from selfmoa.paths import resolve_path

    overrides = pipeline.publish_guard(args.config, args.overrides, args.seeds)
    plan = pipeline.study_plan(args.config, args.seeds, overrides, args.study_id)
    for r in plan.runs:
        C.check_installed(C.load(resolve_path(args.config), list(r.overrides)))
    out = pipeline.study(plan, force=args.force, kernel_name=args.kernel, log_output=args.log_output)
    for r in out["runs"]:
        ran = sum(s["ran"] for s in r["steps"])
        print(
            f"seed {r['seed']} ({r['run_id']}): {ran} steps ran, {len(r['steps']) - ran} skipped, {r['seconds']:.0f}s"
        )
    print(
        f"study {plan.study_id}: report {'ran' if out['report']['steps'] and out['report']['steps'][0]['ran'] else 'skipped'}, "
        f"{out['seconds']:.0f}s in all"
    )
    return 0


def _variant(args: argparse.Namespace) -> int:
    """One study variant of a run in this process (`selfmoa.variant_runs.run_in_process`)."""
    from selfmoa import pipeline, variant_runs
    from selfmoa.paths import resolve_path

    run_id = args.run_id or pipeline.default_run_id(C.load(resolve_path(args.config), args.overrides))
    if args.round_ is not None:
        row = variant_runs.train_round_in_process(args.config, run_id, args.name, args.round_, args.overrides)
        print(json.dumps({"name": args.name, "round": row["round"], "n_pairs": row["n_pairs"]}))
        return 0
    result = variant_runs.run_in_process(args.config, run_id, args.name, args.overrides)
    print(json.dumps({k: result[k] for k in ("name", "n_pairs", "seconds")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train stage 06_align of a run (or a pairs file) in this process; see `selfmoa.launch`."""
    from selfmoa import launch

    req = launch.train_request(
        args.config, args.overrides, args.run_id, args.iteration, args.pairs, args.output, args.force
    )
    metrics = launch.train(req)
    if metrics is not None:
        print(json.dumps(metrics, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
