"""Ablations of FOMM: what each part of the model is worth, measured on held-out synthetic pairs.

Runs :func:`kmt.ablation.run` (the full model; no Jacobians; no occlusion map; no
equivariance losses; fewer keypoints), every variant with the same data and seed, for
each of ``--seeds`` seeds, and writes a Markdown table (mean over seeds, with the spread
when there are several) and one sentence per variant comparing it with the full model.

    python benchmarks/ablations.py --size 64 --steps 40 --seeds 1 --pairs 128   # about 35 min on 2 busy cores

Results go to benchmarks/results/ablations.md and ablations.json (``--out`` for another
Markdown path, ``--no-write`` to only print). The backend is ``KERAS_BACKEND``
(default tensorflow).
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _cell(values, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = f"{statistics.fmean(values):.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    return text


def _effect(name, runs, metric, unit, digits, extra=()):
    """One clause on ``metric`` of ``name`` against ``full``, seed by seed (paired).

    ``extra``: rows of the full model trained with further seeds, whose spread (with the
    full model's rows in ``runs``) is the yardstick of the noise between training runs.
    """
    pairs = [(by_name[name][metric], by_name["full"][metric]) for by_name in runs
             if by_name[name][metric] is not None and by_name["full"][metric] is not None]
    if not pairs:
        return f"{metric.upper()} not measured"
    differences = [a - b for a, b in pairs]
    mean_difference = statistics.fmean(differences)
    relative = 100 * mean_difference / statistics.fmean(b for _, b in pairs)
    direction = "higher (worse)" if mean_difference > 0 else "lower (better)"
    text = (f"{metric.upper()} {abs(mean_difference):.{digits}f}{unit} {direction} than the full model "
            f"({relative:+.1f}%)")
    full = [by_name["full"][metric] for by_name in runs] + [row[metric] for row in extra]
    full = [value for value in full if value is not None]
    if len(full) < 2:
        return text + _pair_noise(runs[0][name].get(f"{metric}_pairs"), runs[0]["full"].get(f"{metric}_pairs"),
                                  unit, digits)
    full_spread = max(full) - min(full)
    same_sign = all(d > 0 for d in differences) or all(d < 0 for d in differences)
    spread = f"the full model alone spreads {full_spread:.{digits + 1}f}{unit} over {len(full)} seeds"
    if same_sign and abs(mean_difference) > 2 * full_spread:
        return text + f": more than twice the seed noise ({spread})"
    if same_sign and abs(mean_difference) > full_spread:
        return text + f": comparable to the seed noise ({spread}), so not established by this run"
    return text + (f": within the seed noise ({spread}" + ("" if same_sign else ", and the sign changes between seeds")
                   + ")")


def _pair_noise(variant, full, unit, digits):
    """How the one-seed difference compares with the spread of the pair-by-pair differences."""
    if not variant or not full:
        return "; one seed, so seed noise is not measured"
    differences = [a - b for a, b in zip(variant, full) if a is not None and b is not None]
    if len(differences) < 2:
        return "; one seed, so seed noise is not measured"
    mean = statistics.fmean(differences)
    error = 2 * statistics.stdev(differences) / len(differences) ** 0.5
    verdict = "beyond" if abs(mean) > error else "within"
    return f", {verdict} the pairs' noise ({error:.{digits}f}{unit})"


def _noise_sentence(runs, extra):
    if extra:
        seeds = ", ".join(str(row["seed"]) for row in extra)
        l1 = ", ".join(f"{row['l1']:.4f}" for row in extra)
        akd = ", ".join("-" if row["akd"] is None else f"{row['akd']:.2f}" for row in extra)
        return (f" The full model was also trained with seed(s) {seeds} (L1 {l1}; AKD {akd} px): the spread of "
                "the full model over its seeds is the yardstick of the noise between training runs.")
    if len(runs) == 1:
        return (" The noise between training runs is not measured; each difference is compared with the pairs' "
                "noise, twice the standard error of the mean pair-by-pair difference from the full model.")
    return ""


def _text(args, runs, seconds, described, load_before, load_after, command, extra=(), note=None):
    import kmt.ablation as ablation

    names = list(runs[0])
    first = runs[0][names[0]]
    lines = [
        "# Ablations",
        "",
        f"`{command}` on {described['machine']}, {described['date']}; "
        + harness.versions_text(described["versions"])
        + f", Keras backend {os.environ['KERAS_BACKEND']}. Load average before/after: {load_before} / {load_after}. "
        f"Total {seconds / 60:.1f} min for {len(runs)} seed(s) x {len(names)} variants"
        + (f" and {len(extra)} more seed(s) of the full model." if extra else ".") + (f" {note}" if note else ""),
        "",
        f"Config `{args.config}` at {args.size} x {args.size} pixels, batch {args.batch_size or 'of the config'}; "
        f"every variant trained {first['steps']} steps "
        + ("from scratch" if args.init == "none" else
           f"starting from the weights of `{args.init}` wherever the variant has the same variable (what an "
           "ablation changes, such as the keypoint head of fewer_keypoints, starts from its initialisation)")
        + f", with the same seed, training batches and equivariance warps. Measured on {args.pairs} held-out "
        "(source, driving) pairs of test identities and motions: L1 of the prediction against the driving frame "
        "(pixel values in [0, 1]) and AKD, the distance in pixels between the landmarks kmt's synthetic landmark "
        "detector finds on the prediction and on the driving frame. Copying the source frame scores "
        f"L1 {first['copy_l1']:.4f}" + (f" and AKD {first['copy_akd']:.2f} px" if first["copy_akd"] else "") + ". "
        + ("Numbers are means over seeds " + ", ".join(str(s) for s in args.seed_list)
           + ", with the range over seeds in brackets." if len(runs) > 1 else f"One seed ({args.seed_list[0]}).")
        + _noise_sentence(runs, extra),
        "",
        "| variant | what it removes | L1 | AKD (px) | keypoints | copied from init | s / variant |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        rows = [run[name] for run in runs]
        lines.append(f"| {name} | {ablation.ABLATIONS[name][0]} | {_cell([r['l1'] for r in rows], 4)} | "
                     f"{_cell([r['akd'] for r in rows], 2)} | {rows[0]['num_kp']} | "
                     f"{100 * rows[0]['initialized']:.0f}% | {_mean([r['seconds'] for r in rows]):.0f} |")
    lines.append(f"| copy the source frame | (baseline) | {first['copy_l1']:.4f} | "
                 + (f"{first['copy_akd']:.2f}" if first["copy_akd"] is not None else "-") + " | | | |")
    lines += ["", "Measured effects:", ""]
    full = [run["full"] for run in runs]
    akd = _mean([r["akd"] for r in full])
    l1 = _mean([r["l1"] for r in full])
    beats = []
    if akd is not None and first["copy_akd"]:
        beats.append(f"AKD {akd:.2f} px against {first['copy_akd']:.2f} px for copying the source "
                     f"({'better' if akd < first['copy_akd'] else 'not better'})")
    beats.append(f"L1 {l1:.4f} against {first['copy_l1']:.4f} ({'better' if l1 < first['copy_l1'] else 'not better'})")
    lines.append("- **full**: " + "; ".join(beats) + ".")
    for name in names:
        if name == "full":
            continue
        lines.append(f"- **{name}**: " + _effect(name, runs, "akd", " px", 2, extra) + "; "
                     + _effect(name, runs, "l1", "", 4, extra) + ".")
    lines.append("")
    if 1 < len(runs) + len(extra) <= 3:
        lines.append("Two or three seeds give only a rough idea of the noise between training runs; more seeds "
                     "(`--seeds`, `--full-seeds`) sharpen it.")
    if args.init != "none" and any(run[name]["initialized"] < 1 for run in runs for name in names):
        lines.append("A variant that starts part of its networks afresh (copied from init below 100%) is measured "
                     "after a short fine-tuning, so its number also says how fast it recovers, not only what it "
                     "lacks.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthetic-faces-64", help="the base config (name or YAML path)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--steps", type=int, default=40, help="training steps of every variant")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds (0, 1, ...) to run")
    parser.add_argument("--pairs", type=int, default=128, help="held-out pairs to measure on")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the config's)")
    parser.add_argument("--init", default="shipped",
                        help="'shipped' (the model kmt ships), a .kmt path, or 'none' to train from scratch")
    parser.add_argument("--full-seeds", type=int, default=0,
                        help="further seeds for the full model only, to measure the noise between training runs")
    parser.add_argument("--names", nargs="+", help="ablations to run (default: all)")
    parser.add_argument("--out", default=os.path.join(harness.RESULTS, "ablations.md"),
                        help="the Markdown file to write (a .json with the rows goes beside it)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--from-json", help="only rewrite the Markdown from the .json of an earlier run")
    args = parser.parse_args(argv)
    for flag, value, least in (("--steps", args.steps, 1), ("--seeds", args.seeds, 1), ("--pairs", args.pairs, 1),
                               ("--full-seeds", args.full_seeds, 0)):
        if value < least:
            parser.error(f"{flag} must be at least {least}; got {value}.")
    if not args.out.endswith(".md"):
        parser.error(f"--out must name a .md file; got {args.out!r}.")
    import kmt.ablation as ablation

    try:
        names = ablation._names(args.names)
    except ValueError as error:
        parser.error(str(error).replace("`names`", "--names"))
    if "full" not in names:
        names = ["full", *names]
    args.seed_list = list(range(args.seeds))
    if args.from_json:
        with open(args.from_json) as handle:
            saved = json.load(handle)
        runs = [{row["name"]: row for row in rows} for rows in saved["runs"]]
        args.seed_list = [rows[0]["seed"] for rows in saved["runs"]]
        args.pairs = len(saved["runs"][0][0]["l1_pairs"])
        described = {key: saved[key] for key in ("machine", "date", "versions")}
        text = _text(args, runs, saved["seconds"], described, saved["load_before"],
                     saved.get("load_after", "not recorded"), saved["command"], saved.get("full_extra", []), saved.get("note"))
        if not args.no_write:
            with open(args.out, "w") as handle:
                handle.write(text)
        print(text)
        return
    command = "python benchmarks/ablations.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before, described, started = harness.load_average(), harness.describe(), time.perf_counter()
    runs, extra = [], []
    options = dict(config=args.config, size=args.size, steps=args.steps, batch_size=args.batch_size,
                   evaluation_pairs=args.pairs, init=None if args.init == "none" else args.init, progress=True)

    def save():  # after every run, so an interrupted benchmark leaves what it measured
        load_after = harness.load_average()
        text = _text(args, runs, time.perf_counter() - started, described, load_before, load_after, command.strip(),
                     extra)
        if not args.no_write:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out[:-3] + ".json", "w") as handle:
                json.dump({"command": command.strip(), **described, "load_before": load_before,
                           "load_after": load_after, "seconds": time.perf_counter() - started,
                           "runs": [list(r.values()) for r in runs], "full_extra": extra},
                          handle, indent=2, default=str)
            with open(args.out, "w") as handle:
                handle.write(text)
        return text

    for seed in args.seed_list:
        runs.append({row["name"]: row for row in ablation.run(names, seed=seed, **options)})
        text = save()
    for seed in range(args.seeds, args.seeds + args.full_seeds):
        extra += ablation.run(["full"], seed=seed, **options)
        text = save()
    print(text)


if __name__ == "__main__":
    main()
