"""``bench/nab/run``: our detectors on NAB files, scored, beside the published scoreboard.

Usage: ``bench/nab/run [--files LIST] [--detectors NAMES] [--jobs N] [--tune]``.
LIST is a file of NAB paths relative to ``data/``, one a line (default: the
tune list, ``tune-files.txt``); ``-`` reads it from standard input.

Thresholds come from ``bench/nab/detectors.yml``, where they were written after
``--tune`` chose them on the tune files; a detector without thresholds gets them
optimised on the tune files in this run (the tune files are then evaluated
too). Thresholds are never chosen on the files being scored unless those are
tune files: the held-out files are only ever scored. ``--tune`` optimises on the
given files, refuses any held-out file, and prints the thresholds to write down.

Output (stdout): one line per detector, ``NAME standard low_fp low_fn`` (NAB's
normalised 0-100 scores for the three profiles on the given files); then the
published scoreboard as ``published:NAME standard low_fp low_fn``; then
precision, recall and detection delay per category at the standard profile's
threshold. Lines starting with ``#`` are explanations. Progress goes to stderr.

Exit codes: 0 success; 1 some detector could not be evaluated (the others are
still reported); 2 bad input (a file list, a NAB path, the definitions).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from bench.nab.corpus import (
    FloatArray,
    NabError,
    NabFile,
    default_root,
    load_corpus,
    read_list,
    tune_list,
)
from bench.nab.detectors import (
    DEFAULT_DETECTORS,
    Detector,
    compile_detector,
    load_detectors,
    select,
)
from bench.nab.harness import FileScores, evaluate_files
from bench.nab.scorer import (
    PROFILE_NAMES,
    Optimum,
    Profile,
    Scores,
    category_report,
    file_results,
    load_profiles,
    normalise,
    optimise,
    score_at,
)

EXIT_OK, EXIT_NOT_EVALUATED, EXIT_USAGE = 0, 1, 2
SHORT = {"standard": "standard", "reward_low_FP_rate": "low_fp", "reward_low_FN_rate": "low_fn"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/nab/run",
        description="Run our detectors over NAB files through the store and the evaluator, "
        "and print NAB scores (standard, low_fp, low_fn) beside the published scoreboard.")
    p.add_argument("--files", metavar="LIST",
                   help="file listing NAB paths relative to data/, one a line ('-': stdin); "
                   "default: the tune files")
    p.add_argument("--detectors", metavar="NAMES",
                   help="comma-separated detector names (default: all in the definitions)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="files evaluated in parallel (processes; default 1)")
    p.add_argument("--tune", action="store_true",
                   help="choose thresholds on the given files (tune files only) and print them")
    p.add_argument("--config", type=Path, default=DEFAULT_DETECTORS, metavar="YML",
                   help="detector definitions (default: bench/nab/detectors.yml)")
    p.add_argument("--nab", type=Path, default=None, metavar="DIR",
                   help="the NAB corpus (default: ../shared/peer/nab beside the checkout)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.stdout)
    except NabError as e:
        print(f"bench/nab/run: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `bench/nab/run | head`
        sys.stderr.close()
        return EXIT_OK


def _requested(args: argparse.Namespace, root: Path) -> tuple[list[str], str]:
    if args.files is None:
        return tune_list(root), str(root / "tune-files.txt")
    if args.files == "-":
        names = [ln.split("#", 1)[0].strip() for ln in sys.stdin.read().splitlines()]
        return [n for n in names if n], "<stdin>"
    return read_list(Path(args.files)), args.files


def run(args: argparse.Namespace, out: TextIO) -> int:
    root = args.nab or default_root()
    if not (root / "labels" / "combined_windows.json").is_file():
        raise NabError(f"no NAB corpus at {root} (expected labels/combined_windows.json; "
                       "set --nab or NAB_ROOT)")
    names, origin = _requested(args, root)
    if not names:
        raise NabError(f"{origin}: no files listed")
    files = load_corpus(names, root, origin=origin)
    tune_names = tune_list(root)
    if args.tune:
        held_out = [n for n in names if n not in tune_names]
        if held_out:
            raise NabError(f"--tune: {held_out[0]} is a held-out file: thresholds are chosen "
                           "on tune-files.txt only")
    detectors = select(load_detectors(args.config), args.detectors)
    for d in detectors:
        compile_detector(d, args.config)
    profiles = load_profiles(root)
    # Detectors without written thresholds get them from the tune files: evaluate those too.
    untuned = not args.tune and any(d.thresholds is None for d in detectors)
    extra = load_corpus([n for n in tune_names if n not in names] if untuned else [], root)
    tune_files = [f for f in files if f.name in tune_names] + extra

    def progress(r: FileScores, k: int, n: int) -> None:
        moved = f", {r.moved_rows} rows moved to keep times increasing" if r.moved_rows else ""
        print(f"nab: [{k}/{n}] {r.name}: {r.seconds:.1f} s{moved}", file=sys.stderr, flush=True)

    evaluated = evaluate_files(files + extra, [(d.name, d.expr) for d in detectors], root,
                               args.jobs, progress)
    scores, failed = _collect(detectors, evaluated)
    good = [d for d in detectors if d.name not in failed]
    thetas = {d.name: _thresholds(d, tune_files, scores[d.name], profiles, args.tune)
              for d in good}
    _print_scores(out, files, good, scores, thetas, profiles, failed, args, untuned)
    if args.tune:
        _print_yaml(out, good, thetas)
    elif sorted(names) == sorted(tune_names):
        _warn_stale(good, files, scores, thetas, profiles)
    _print_published(out, root)
    _print_categories(out, files, good, scores, thetas, profiles)
    return EXIT_NOT_EVALUATED if failed else EXIT_OK


def _collect(detectors: Sequence[Detector], evaluated: Mapping[str, FileScores]
             ) -> tuple[dict[str, dict[str, FloatArray]], dict[str, str]]:
    scores: dict[str, dict[str, FloatArray]] = {d.name: {} for d in detectors}
    failed: dict[str, str] = {}
    for name in sorted(evaluated):
        r = evaluated[name]
        for d in detectors:
            if d.name in r.errors:
                failed.setdefault(d.name, f"{name}: {r.errors[d.name]}")
            else:
                scores[d.name][name] = r.scores[d.name]
    return scores, failed


def _thresholds(d: Detector, tune_files: Sequence[NabFile], scores: Scores,
                profiles: Mapping[str, Profile], tune: bool) -> dict[str, float]:
    if d.thresholds is not None and not tune:
        return dict(d.thresholds)
    return {p: optimise(tune_files, scores, profiles[p]).threshold for p in PROFILE_NAMES}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_scores(out: TextIO, files: Sequence[NabFile], detectors: Sequence[Detector],
                  scores: Mapping[str, Scores], thetas: Mapping[str, Mapping[str, float]],
                  profiles: Mapping[str, Profile], failed: Mapping[str, str],
                  args: argparse.Namespace, tuned_extra: bool) -> None:
    windows = sum(len(f.windows) for f in files)
    print(f"# NAB scores on {len(files)} file(s) with {windows} window(s), normalised "
          "(null detector 0, perfect 100)", file=out)
    if args.tune:
        print("# thresholds: optimised on these (tune) files now", file=out)
    else:
        print(f"# thresholds: from {args.config} (chosen on the tune files)"
              + ("; detectors without any: optimised on the tune files in this run"
                 if tuned_extra else ""), file=out)
    if not windows:
        print("# these files have no window: NAB's 0-100 scale is undefined (n/a); "
              "raw scores are in the comment", file=out)
    print("# NAME standard low_fp low_fn", file=out)
    for d in detectors:
        raws = {p: score_at(files, scores[d.name], thetas[d.name][p], profiles[p])
                for p in PROFILE_NAMES}
        norm = [_fmt(normalise(raws[p], windows, profiles[p])) for p in PROFILE_NAMES]
        raw = " ".join(f"{SHORT[p]}={raws[p]:.3f}" for p in PROFILE_NAMES)
        print(f"{d.name} {' '.join(norm)}  # raw {raw}", file=out)
    for name, why in failed.items():
        print(f"# not evaluated: {name}: {why}", file=out)


def _yaml_float(x: float) -> str:
    return ".inf" if x == math.inf else repr(x)


def _print_yaml(out: TextIO, detectors: Sequence[Detector],
                thetas: Mapping[str, Mapping[str, float]]) -> None:
    print("# thresholds to write into bench/nab/detectors.yml:", file=out)
    for d in detectors:
        body = ", ".join(f"{p}: {_yaml_float(thetas[d.name][p])}" for p in PROFILE_NAMES)
        print(f"#   {d.name}:\n#     thresholds: {{{body}}}", file=out)


def _warn_stale(detectors: Sequence[Detector], files: Sequence[NabFile],
                scores: Mapping[str, Scores], thetas: Mapping[str, Mapping[str, float]],
                profiles: Mapping[str, Profile]) -> None:
    """On the tune files, a written threshold should still be the optimum: say if not."""
    for d in detectors:
        if d.thresholds is None:
            continue
        for p in PROFILE_NAMES:
            best: Optimum = optimise(files, scores[d.name], profiles[p])
            raw = score_at(files, scores[d.name], thetas[d.name][p], profiles[p])
            if best.raw > raw + 1e-9:
                print(f"bench/nab/run: warning: {d.name}: the {p} threshold in the definitions "
                      f"no longer is the tune files' optimum (raw {raw:.3f} < {best.raw:.3f} at "
                      f"θ={best.threshold!r}); run --tune and update it", file=sys.stderr)


def _print_published(out: TextIO, root: Path) -> None:
    path = root / "results" / "final_results.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"# published scoreboard unavailable ({path}: {e})", file=out)
        return
    print("#\n# published scoreboard (results/final_results.json): all 58 files, thresholds "
          "tuned on all of them;\n# subset scores above are NOT directly comparable with it",
          file=out)
    rows = sorted(table.items(), key=lambda kv: -float(kv[1].get("standard", 0.0)))
    for name, by_profile in rows:
        cells = " ".join(_fmt(float(by_profile[p])) for p in PROFILE_NAMES)
        print(f"published:{name} {cells}", file=out)


def _print_categories(out: TextIO, files: Sequence[NabFile], detectors: Sequence[Detector],
                      scores: Mapping[str, Scores], thetas: Mapping[str, Mapping[str, float]],
                      profiles: Mapping[str, Profile]) -> None:
    print("#\n# per category at the standard profile's threshold: recall = windows detected / "
          "windows;\n# precision = true alerts / alerts (an alert is a run of consecutive "
          "detected rows, true when it overlaps a window);\n# delay = median from a window's "
          "first row to its first detection, in rows and in time", file=out)
    print("# detector category files windows detected recall alerts precision delay_rows delay",
          file=out)
    for d in detectors:
        results = file_results(files, scores[d.name], thetas[d.name]["standard"],
                               profiles["standard"])
        for c in category_report(files, results):
            delay = "n/a" if c.median_delay_s is None else humanise_seconds(c.median_delay_s)
            print(f"{d.name} {c.category} {c.files} {c.windows} {c.detected} "
                  f"{_fmt(c.recall)} {c.alerts} {_fmt(c.precision)} "
                  f"{_fmt(c.median_delay_rows, 0)} {delay}", file=out)


def humanise_seconds(seconds: float) -> str:
    """``3d4h``, ``2h35m``, ``45m``, ``30s``: the two largest units."""
    s = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return "".join(parts)
