"""NeMo's effect, measured: the none / random / NeMo experiment over several seeds, and a sweep of NeMo's knobs.

    python -m benchmarks.nemo_effect                        # 3 seeds × 3 arms, then the sweep
    python -m benchmarks.nemo_effect --seeds 0 1 2 --steps 1200 --skip-sweep
    python -m benchmarks.nemo_effect --quick                # a smoke run: tiny world, few steps

Each seed runs :func:`nemo_hf.experiment.run_experiment` (a finished run whose
``results.json`` holds the same settings is read back instead, so an interrupted benchmark
resumes) (a new synthetic world, mining with
the shipped CLIP, three segmenters trained with the same data, seed and budget) and the
script prints mean ± standard deviation of oIoU overall, per distractor group (0, 1, 2,
3+, the hard stratum ≥ 2) and per object size, for every arm, and the hard-stratum gaps
NeMo − random and random − none as ratios of their seed-to-seed standard deviation.

The sweep varies one knob of the mined arm at a time — ``tau_text``, ``tau_image``,
``top_k`` — over the same seeds (the none and random arms do not depend on them), so the
"neither too ambiguous nor too trivial" curve can be read off: hard-stratum oIoU against
each value. Results go to ``--out`` as JSON; BENCHMARKS.md records the latest figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from nemo_hf.experiment.report import GROUPS
from nemo_hf.experiment.run import run_experiment
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.nemo.settings import NeMoSettings

_SIZES = ("size=small", "size=medium", "size=large")
SWEEP: dict[str, tuple[Any, ...]] = {
    "tau_text": (None, 0.3, 0.2, 0.1),
    "tau_image": (None, 0.95, 0.9, 0.8),
    "top_k": (5, 20, 80),
    "tau_own": (0.0, -0.05),
}


def run_or_reuse(out: Path, settings: ExperimentSettings, train: bool = True) -> dict[str, Any] | None:
    """The experiment's results in ``out``: read back when a finished run with these settings is there.

    Otherwise the run is made, or with ``train=False`` skipped (``None``).
    """
    saved = out / "results.json"
    if saved.is_file():
        results = json.loads(saved.read_text())
        if _saved_settings(results) == settings.to_dict():
            print(f"reusing {saved}")
            results["seed"] = settings.seed
            return results
    return run_experiment(out, settings, pictures=False) if train else None


def _saved_settings(results: dict[str, Any]) -> dict[str, Any] | None:
    """A saved run's settings, with settings added since then at their defaults (which reproduce the old runs).

    Runs saved before NeMo's knobs were a nested ``nemo`` entry held them at the top level.
    """
    saved = results.get("settings")
    if not isinstance(saved, dict):
        return None
    saved = dict(saved)
    nemo_names = {f.name for f in dataclasses.fields(NeMoSettings)} - {f.name for f in dataclasses.fields(ExperimentSettings)}
    flat = {name: saved.pop(name) for name in list(saved) if name in nemo_names}
    nested = saved.pop("nemo", None)
    tuples = {key: tuple(value) for key, value in saved.items() if isinstance(value, list)}
    try:
        nemo = NeMoSettings(**nested) if nested else dataclasses.replace(ExperimentSettings().nemo, **flat)
        return ExperimentSettings(**{**saved, **tuples}, nemo=nemo).to_dict()
    except (TypeError, ValueError):
        return None


def parse_sweep(specs: list[str]) -> dict[str, tuple[Any, ...]]:
    """``["top_k=5,80", "tau_text=none,0.3"]`` → ``{"top_k": (5, 80), "tau_text": (None, 0.3)}``.

    >>> parse_sweep(["top_k=5,80", "tau_text=none,0.3"])
    {'top_k': (5, 80), 'tau_text': (None, 0.3)}
    """
    sweep: dict[str, tuple[Any, ...]] = {}
    for spec in specs:
        knob, _, values = spec.partition("=")
        if knob not in SWEEP or not values:
            raise SystemExit(f"--sweep {spec!r}: expected KNOB=V1,V2,... with KNOB one of {sorted(SWEEP)}")
        cast = int if knob == "top_k" else float
        sweep[knob] = tuple(None if v.lower() == "none" else cast(v) for v in values.split(","))
    return sweep


def _oiou(metrics: dict[str, Any], group: str | None) -> float:
    if group is None:
        return float(metrics["overall_iou"])
    return float(metrics["groups"].get(group, {}).get("overall_iou", float("nan")))


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v == v]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """arm → group → (mean, std) of oIoU over the runs (one run per seed)."""
    arms = runs[0]["arms"]
    return {
        arm: {
            group or "all": _mean_std([_oiou(run["arms"][arm]["metrics"], group) for run in runs])
            for group in (None, *GROUPS, *_SIZES)
        }
        for arm in arms
    }


def print_summary(summary: dict[str, dict[str, tuple[float, float]]]) -> None:
    columns = [c for c in ("all", *GROUPS, *_SIZES) if any(groups[c][0] == groups[c][0] for groups in summary.values())]
    print("| arm | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for arm, groups in summary.items():
        print(f"| {arm} | " + " | ".join(f"{groups[c][0]:.4f} ± {groups[c][1]:.4f}" for c in columns) + " |")
    hard = {arm: groups["distractors>=2"] for arm, groups in summary.items()}
    for better, worse in (("nemo", "random"), ("random", "none"), ("nemo", "none")):
        if better in hard and worse in hard:
            gap = hard[better][0] - hard[worse][0]
            spread = max(hard[better][1], hard[worse][1])
            versus = f"{gap / spread:+.2f}× the larger std" if spread > 0 else "no spread to compare with (one seed)"
            print(f"hard stratum {better} − {worse}: {gap:+.4f} oIoU = {versus}")


def sweep_point(value: Any, runs: list[dict[str, Any]], defaults: list[dict[str, Any]]) -> dict[str, Any]:
    """One sweep value over its seeds: hard-stratum and overall oIoU (mean, std), how hard its negatives were,
    and its hard-stratum gap to the default NeMo arm of the same seed (same world and data order: a paired gap).
    """
    hard = {r["seed"]: _oiou(r["arms"]["nemo"]["metrics"], "distractors>=2") for r in runs}
    default_hard = {r["seed"]: _oiou(r["arms"]["nemo"]["metrics"], "distractors>=2") for r in defaults}
    return {
        "value": value,
        "seeds": sorted(hard),
        "hard_oiou": _mean_std(list(hard.values())),
        "all_oiou": _mean_std([_oiou(r["arms"]["nemo"]["metrics"], None) for r in runs]),
        "gap_vs_default": _mean_std([hard[s] - default_hard[s] for s in hard if s in default_hard]),
        "chosen_text_median": statistics.fmean(r["mining"]["chosen_text_quantiles"]["50%"] for r in runs),
    }


def plot_sweep(
    path: Path, base: ExperimentSettings, runs: list[dict[str, Any]],
    summary: dict[str, dict[str, tuple[float, float]]], sweep: dict[str, list[dict[str, Any]]],
) -> None:
    """Hard-stratum oIoU of the NeMo arm against each knob's value, and against how hard the chosen negatives were."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    default = sweep_point(None, runs, runs)
    fig, axes = plt.subplots(1, len(sweep) + 1, figsize=(4 * (len(sweep) + 1), 3.6), sharey=True)
    everything = []
    for ax, (knob, points) in zip(axes, sweep.items()):
        points = sorted([*points, {**default, "value": getattr(base.nemo, knob)}], key=lambda p: _order(p["value"]))
        everything += [(knob, p) for p in points if p["value"] != getattr(base.nemo, knob)]
        xs = range(len(points))
        ax.errorbar(xs, [p["hard_oiou"][0] for p in points], yerr=[p["hard_oiou"][1] for p in points],
                    marker="o", capsize=3, color="tab:green", label="NeMo")
        ax.set_xticks(list(xs), ["off" if p["value"] is None else f"{p['value']:g}" for p in points])
        ax.set_xlabel(f"{knob} (default {getattr(base.nemo, knob)})")
    for ax in axes:
        for arm, color in (("none", "tab:gray"), ("random", "tab:orange")):
            if arm in summary:
                mean, std = summary[arm]["distractors>=2"]
                ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)
                ax.axhline(mean, color=color, linestyle="--", label=f"{arm} (mean ± std)")
    last = axes[-1]
    everything.append(("defaults", default))
    for knob, point in everything:
        last.errorbar(point["chosen_text_median"], point["hard_oiou"][0], yerr=point["hard_oiou"][1],
                      marker="o", capsize=3, linestyle="none", label=None)
        label = "" if knob == "defaults" else "=off" if point["value"] is None else f"={point['value']:g}"
        last.annotate(f"{knob}{label}", (point["chosen_text_median"], point["hard_oiou"][0]), fontsize=6)
    last.set_xlabel("chosen negatives' median text→image cosine")
    axes[0].set_ylabel("hard-stratum oIoU (≥ 2 distractors)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"NeMo's knobs on the synthetic world (seeds: {len(runs)}, {base.max_train_steps} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _order(value: Any) -> float:
    """Sort key: by value, "off" (None: no limit) last, so each panel runs from strict to lenient."""
    return float("inf") if value is None else float(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1200, help="training steps per arm")
    parser.add_argument("--num-images", type=int, default=1500)
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="train on the first N training objects only (the small-data regime)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/.cache/nemo_effect"))
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--sweep", nargs="+", default=None, metavar="KNOB=V1,V2",
                        help=f"knobs and values to sweep instead of the default {SWEEP}")
    parser.add_argument("--quick", action="store_true", help="tiny world and budget: checks the script runs")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: summarise the runs already in --out (sweep points over the seeds they have)")
    args = parser.parse_args(argv)
    base = ExperimentSettings(num_images=args.num_images, max_train_steps=args.steps,
                              max_train_samples=args.max_train_samples)
    if args.quick:
        base = base.quick()
    started = time.perf_counter()
    train = not args.finished_only
    runs = [run_or_reuse(args.out / f"seed{seed}", base.replace(seed=seed), train) for seed in args.seeds]
    runs = [run for run in runs if run is not None]
    if not runs:
        raise SystemExit(f"no finished run in {args.out} for seeds {args.seeds}")
    summary = summarise(runs)
    print(f"\n## none / random / NeMo over seeds {[run['seed'] for run in runs]}: oIoU mean ± std\n")
    print_summary(summary)
    sweep: dict[str, list[dict[str, Any]]] = {}
    if not args.skip_sweep:
        for knob, values in (parse_sweep(args.sweep) if args.sweep else SWEEP).items():
            for value in values:
                if getattr(base.nemo, knob) == value:
                    continue  # the main runs cover the default value
                runs_at = [
                    run_or_reuse(args.out / f"{knob}={value}" / f"seed{seed}",
                                 base.replace(seed=seed, arms=("nemo",), **{knob: value}), train)
                    for seed in args.seeds
                ]
                runs_at = [run for run in runs_at if run is not None]
                if not runs_at:
                    continue
                point = sweep_point(value, runs_at, runs)
                sweep.setdefault(knob, []).append(point)
                hard, gap = point["hard_oiou"], point["gap_vs_default"]
                print(f"{knob}={value} (seeds {point['seeds']}): hard-stratum oIoU {hard[0]:.4f} ± {hard[1]:.4f}, "
                      f"vs the default arm of the same seeds {gap[0]:+.4f} ± {gap[1]:.4f}; chosen negatives' "
                      f"median text→image cosine {point['chosen_text_median']:.3f}")
    if sweep:
        plot_sweep(args.out / "sweep.png", base, runs, summary, sweep)
        print(f"saved {args.out / 'sweep.png'}")
    (args.out / "summary.json").write_text(json.dumps(
        {"seeds": [run["seed"] for run in runs], "settings": base.to_dict(), "summary": summary, "sweep": sweep,
         "seconds": round(time.perf_counter() - started)}, indent=2))
    print(f"\nsaved {args.out / 'summary.json'} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
