"""Does NeMo help? The fair test: every arm over several seeds, judged by criteria written before the runs.

    python -m benchmarks.nemo_effect                                  # 3 seeds × 7 arms (hours on 2 cores)
    python -m benchmarks.nemo_effect --seeds 0 1 2 --parallel 2       # two seeds at a time, one thread each
    python -m benchmarks.nemo_effect --finished-only                  # summarise what has run, train nothing
    python -m benchmarks.nemo_effect --quick                          # a smoke run: toy world and budget
    python -m benchmarks.nemo_effect --finished-only --merge-from runs/later   # join arms run apart, then summarise

Each seed runs :func:`nemo_hf.experiment.run.run_experiment` with the benchmark's arms —
``none``, ``random``, ``nemo`` (CLIP-mined), ``oracle`` (mined from the ground truth, no false
negatives) and ``noisy-<σ>`` (the oracle's scores plus Gaussian noise) — into ``--out/seed<s>``:
the same world, data order and initial weights for every arm of a seed, a separate
evaluation world, and every arm's per-sentence scores. An arm already finished with the same
configuration is read back, so an interrupted benchmark resumes.

The summary (``summary.json``, printed, and ``--write`` into BENCHMARKS.md) gives per arm the
mean over seeds of object accuracy on referring-hard and easy sentences and oIoU; per seed
and pooled, the paired differences with ``random`` and ``none`` and their sentence-bootstrap
95% intervals; the convergence check; and the verdict of the criteria (:data:`CRITERIA`):
confirmed, refuted or inconclusive. Then where CLIP mining lands between random and the
oracle, and the noisy oracle's curve (``noise_curve.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from nemo_hf.experiment.evaluation import PRIMARY, SentenceScores
from nemo_hf.experiment.run import BASELINES, compare, run_experiment
from nemo_hf.experiment.settings import BENCHMARK_ARMS, ExperimentSettings
from nemo_hf.experiment.statistics import Difference, mean_paired_difference
from nemo_hf.pretrained import PRETRAINED

SECTION = "Does NeMo help? Results"
ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT.parent / "BENCHMARKS.md"

CRITERIA = {
    "confirm": [
        "oracle − random ≥ +2.0 points of referring-hard object accuracy in every seed, each seed's 95% interval "
        "above 0",
        "oracle − none ≥ +2.0 points of referring-hard object accuracy (mean over seeds)",
        "oracle − none ≥ −1.0 point of object accuracy on easy sentences (mean over seeds): the easy stratum loses "
        "at most 1 point",
    ],
    "refute": ["oracle − random ≤ +0.5 points (mean over seeds) and its pooled 95% interval's upper end < +1.5"],
    "otherwise": "inconclusive: add seeds",
}
CONVERGENCE = ("the none arm's referring-hard object accuracy on the learning curve's sentences moves ≤ 1.0 point "
               "between the mean of its evaluations in the third quarter of training and in the last quarter, in "
               "every seed; if not, every arm is trained again with 1.5× the steps")
# Amended 2026-12-06, while the 4,500-step runs of seed 2 were under way: the same test on every arm the verdict
# compares (none, random, oracle), not the none arm alone. A mosaic arm sees plain pictures half as often, so it
# can be far from its plateau when the none arm is at its own; judging it there would compare budgets, not methods.
# The amendment can only withhold a verdict, never produce one.
JUDGED_ARMS = ("none", "random", "oracle")
CONVERGENCE_AMENDMENT = ("amended 2026-12-06, during the 4,500-step runs: the same test on every judged arm "
                         f"({', '.join(JUDGED_ARMS)}), each against its own curve")

# The fine-tune study (``--finetune-from``), written 2026-12-06 before any of its runs: every arm continues the
# seed's converged none-arm checkpoint (ExperimentSettings.finetune: a fifth of the rates, mined mosaics from the
# first step), as the demo does for 200 steps. The convergence rule above applies unchanged, to every judged arm.
FINETUNE_SECTION = "Does NeMo help as a fine-tune? Results"
FINETUNE_CRITERIA = {
    "helps": ["oracle − none ≥ +1.0 point of referring-hard object accuracy, pooled 95% interval above 0",
              "oracle − none ≥ −1.0 point of object accuracy on easy sentences"],
    "harms": ["oracle − none ≤ −1.0 point of referring-hard object accuracy, pooled 95% interval below 0"],
    "mining matters (reported beside the outcome)": [
        "oracle − random ≥ +1.0 point of referring-hard object accuracy, pooled 95% interval above 0"],
    "otherwise": "no effect detected at this budget",
    "seeds": "three for a verdict; fewer give a result of those seeds, labelled so",
}


def benchmark_settings(args: argparse.Namespace) -> ExperimentSettings:
    """The settings every seed shares (the seed is set per run)."""
    base = ExperimentSettings(arms=tuple(args.arms), max_train_steps=args.steps, eval_images=args.eval_images,
                              curve_sentences=args.curve_sentences, eval_steps=args.eval_steps).replace(
        warmup_epochs=args.warmup_epochs)
    return base.quick().replace(arms=tuple(args.arms)) if args.quick else base


def seeded(settings: ExperimentSettings, seed: int, finetune_from: str | None) -> ExperimentSettings:
    """One seed's settings; for the fine-tune study, continuing that seed's checkpoint.

    >>> seeded(ExperimentSettings(), 2, "runs/seed{seed}/final").init_from
    'runs/seed2/final'
    """
    settings = settings.replace(seed=seed)
    return settings.finetune(finetune_from.format(seed=seed)) if finetune_from else settings


def _scores(out: Path, arm: str) -> SentenceScores:
    return SentenceScores.load(out / "arms" / arm / "scores.npz")


def arm_converged(run: dict[str, Any], arm: str, steps: int, tolerance: float = 0.01) -> dict[str, Any]:
    """The convergence test (:data:`CONVERGENCE`) on one arm of one seed: third quarter against last quarter."""
    curve = [p for p in run["arms"].get(arm, {}).get("learning_curve", [])
             if p.get("referring_hard_object_accuracy") is not None]
    third = [p["referring_hard_object_accuracy"] for p in curve if 0.5 * steps < p["step"] <= 0.75 * steps]
    last = [p["referring_hard_object_accuracy"] for p in curve if p["step"] > 0.75 * steps]
    if not third or not last:
        return {"converged": None, "why": "the learning curve has no evaluation in the third or the last quarter"}
    move = statistics.fmean(last) - statistics.fmean(third)
    return {"converged": abs(move) <= tolerance, "move": round(move, 4)}


def converged(run: dict[str, Any], steps: int, tolerance: float = 0.01) -> dict[str, Any]:
    """The convergence rule on one seed: every judged arm that ran passes (:data:`CONVERGENCE_AMENDMENT`).

    The quarters are of the seed's own ``max_train_steps`` when its results say (``steps``
    otherwise), so a seed trained again with 1.5× the steps is judged on that budget. ``move``
    is the none arm's, as the rule was first written; ``arms`` gives each arm's test.
    """
    steps = run.get("settings", {}).get("max_train_steps", steps)  # a seed trained longer is judged on its own budget
    arms = {arm: arm_converged(run, arm, steps, tolerance) for arm in JUDGED_ARMS if arm in run["arms"]}
    verdicts = [a["converged"] for a in arms.values()]
    passed = None if not verdicts or None in verdicts else all(verdicts)
    return {"converged": passed, "move": arms.get("none", {}).get("move"), "arms": arms}


def pooled(outs: list[Path], arm: str, base: str, stratum: str) -> Difference:
    """``arm`` − ``base`` over seeds on object accuracy of a stratum (``hard`` or ``easy``), with a pooled interval."""
    pairs = []
    for out in outs:
        a, b = _scores(out, arm), _scores(out, base)
        keep = a.referring_hard if stratum == "hard" else ~a.referring_hard
        pairs.append((a.correct[keep], b.correct[keep]))
    return mean_paired_difference(pairs)


def verdict(
    runs: dict[int, dict[str, Any]], outs: list[Path], convergence: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """The criteria applied to the runs (the oracle, random and none arms of every seed).

    Runs that fail the convergence rule are not judged: the rule says to train every arm again
    with more steps first. Their differences are still reported, as differences at that budget.
    """
    needed = {"oracle", "random", "none"}
    if not runs or not all(needed <= set(run["arms"]) for run in runs.values()):
        return {"verdict": "not judged: every seed needs the oracle, random and none arms"}
    unsettled = sorted(seed for seed in runs if not convergence.get(seed, {}).get("converged"))
    if unsettled:
        return {"verdict": f"not judged: seed(s) {unsettled} fail the convergence rule, so every arm trains again "
                           "with 1.5× the steps first (the differences above are at this budget only)"}
    per_seed = {seed: run["comparisons"]["oracle − random"]["referring_hard"] for seed, run in runs.items()}
    vs_random = pooled(outs, "oracle", "random", "hard")
    vs_none = pooled(outs, "oracle", "none", "hard")
    easy_vs_none = pooled(outs, "oracle", "none", "easy")
    checks = {
        "every seed: oracle − random ≥ 2.0 points, interval above 0": all(
            d["value"] >= 0.02 and d["low"] > 0 for d in per_seed.values()),
        "oracle − none ≥ 2.0 points (mean)": vs_none.value >= 0.02,
        "easy: oracle − none ≥ −1.0 point (mean)": easy_vs_none.value >= -0.01,
    }
    refuted = vs_random.value <= 0.005 and vs_random.high < 0.015
    outcome = "confirmed" if all(checks.values()) else "refuted" if refuted else "inconclusive: add seeds"
    return {"verdict": outcome, "checks": checks, "refuted_check": refuted, "seeds": len(runs),
            "oracle_vs_random_per_seed": per_seed, "oracle_vs_random": vs_random.to_dict(),
            "oracle_vs_none": vs_none.to_dict(), "easy_oracle_vs_none": easy_vs_none.to_dict()}


def finetune_verdict(
    runs: dict[int, dict[str, Any]], outs: list[Path], convergence: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """The fine-tune study's criteria (:data:`FINETUNE_CRITERIA`) applied to the runs."""
    if not runs or not all({"oracle", "random", "none"} <= set(run["arms"]) for run in runs.values()):
        return {"verdict": "not judged: every seed needs the oracle, random and none arms"}
    unsettled = sorted(seed for seed in runs if not convergence.get(seed, {}).get("converged"))
    if unsettled:
        return {"verdict": f"not judged: seed(s) {unsettled} fail the convergence rule (the differences above are at "
                           "this budget only)"}
    vs_none, vs_random = pooled(outs, "oracle", "none", "hard"), pooled(outs, "oracle", "random", "hard")
    easy_vs_none = pooled(outs, "oracle", "none", "easy")
    checks = {
        "oracle − none ≥ +1.0 point, interval above 0": vs_none.value >= 0.01 and vs_none.low > 0,
        "easy: oracle − none ≥ −1.0 point": easy_vs_none.value >= -0.01,
        "harms: oracle − none ≤ −1.0 point, interval below 0": vs_none.value <= -0.01 and vs_none.high < 0,
        "mining matters: oracle − random ≥ +1.0 point, interval above 0": vs_random.value >= 0.01 and vs_random.low > 0,
    }
    names = list(checks)
    outcome = ("NeMo helps as a fine-tune" if checks[names[0]] and checks[names[1]] else
               "NeMo harms as a fine-tune" if checks[names[2]] else FINETUNE_CRITERIA["otherwise"])
    if len(runs) < 3:
        which = "this seed" if len(runs) == 1 else "these seeds"
        outcome += f" ({len(runs)} seed(s) of the three a verdict needs: a result of {which}, not a verdict)"
    return {"verdict": outcome, "checks": checks, "seeds": len(runs), "oracle_vs_none": vs_none.to_dict(),
            "oracle_vs_random": vs_random.to_dict(), "easy_oracle_vs_none": easy_vs_none.to_dict()}


def _hard(run: dict[str, Any], arm: str, key: str = "object_accuracy") -> float:
    return float(run["arms"][arm]["metrics"]["objects"]["groups"].get(PRIMARY, {}).get(key, float("nan")))


def summarise(runs: dict[int, dict[str, Any]], outs: dict[int, Path], steps: int, *,
              finetune: bool = False) -> dict[str, Any]:
    """Per arm the mean (and std) over the seeds that ran it; pooled comparisons; convergence; verdict; CLIP's place.

    ``finetune``: the runs are the fine-tune study's, judged by :data:`FINETUNE_CRITERIA`.
    """
    arms = list(dict.fromkeys(arm for run in runs.values() for arm in run["arms"]))

    def mean_std(values: list[float]) -> list[float]:
        return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    def seeds_with(*names: str) -> list[int]:
        return [seed for seed, run in runs.items() if all(name in run["arms"] for name in names)]

    table = {}
    for arm in arms:
        have = [runs[seed] for seed in seeds_with(arm)]
        table[arm] = {
            "seeds": seeds_with(arm),
            "referring_hard": mean_std([_hard(run, arm) for run in have]),
            "easy": mean_std([run["arms"][arm]["metrics"]["objects"]["groups"].get("referring=easy", {}).get(
                "object_accuracy", float("nan")) for run in have]),
            "oiou": mean_std([run["arms"][arm]["metrics"]["overall_iou"] for run in have]),
            "wrong_object_hard": mean_std([_hard(run, arm, "wrong_object_rate") for run in have]),
        }
    comparisons = {
        f"{arm} − {base}": {"seeds": seeds_with(arm, base), **{
            stratum: pooled([outs[seed] for seed in seeds_with(arm, base)], arm, base, stratum).to_dict()
            for stratum in ("hard", "easy")}}
        for base in ("random", "none") if base in table for arm in table if arm != base
    }
    convergence = {seed: converged(run, steps) for seed, run in runs.items()}
    summary: dict[str, Any] = {
        "seeds": sorted(runs), "arms": table, "comparisons": comparisons,
        "steps": {seed: run.get("settings", {}).get("max_train_steps", steps) for seed, run in runs.items()},
        "convergence": convergence,
        "section": FINETUNE_SECTION if finetune else SECTION,
        "criteria": FINETUNE_CRITERIA if finetune else CRITERIA,
        "verdict": (finetune_verdict if finetune else verdict)(
            {seed: runs[seed] for seed in seeds_with("oracle", "random", "none")},
            [outs[seed] for seed in seeds_with("oracle", "random", "none")], convergence),
        "audits": {arm: {key: statistics.fmean(runs[seed]["audits"][arm][key] for seed in table[arm]["seeds"])
                         for key in runs[table[arm]["seeds"][0]]["audits"][arm]} for arm in table},
    }
    summary["noise_curve"] = noise_curve(runs)
    if {"oracle", "random", "nemo"} <= set(table):
        same = seeds_with("oracle", "random", "nemo")
        means = {arm: statistics.fmean(_hard(runs[seed], arm) for seed in same) for arm in ("oracle", "random", "nemo")}
        gap = means["oracle"] - means["random"]
        summary["clip_between_random_and_oracle"] = (means["nemo"] - means["random"]) / gap if gap else None
    return summary


def noise_curve(runs: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The noisy oracle's points, over the seeds that ran every noisy arm: σ against referring-hard accuracy.

    Everything on the curve (the oracle at σ = 0, the random and none levels) is the mean over
    those same seeds, so a noisy arm run on one seed is not drawn against means of three.
    """
    noisy = {float(arm.removeprefix("noisy-")): arm for run in runs.values() for arm in run["arms"]
             if arm.startswith("noisy-")}
    seeds = sorted(seed for seed, run in runs.items() if set(noisy.values()) <= set(run["arms"]))
    if not noisy or not seeds:
        return None

    def mean(arm: str) -> float | None:
        have = [_hard(runs[seed], arm) for seed in seeds if arm in runs[seed]["arms"]]
        return statistics.fmean(have) if len(have) == len(seeds) else None

    points = [(sigma, mean(noisy[sigma])) for sigma in sorted(noisy)]
    if mean("oracle") is not None:
        points.insert(0, (0.0, mean("oracle")))
    return {"seeds": seeds, "points": points, "levels": {arm: mean(arm) for arm in ("random", "none", "nemo")
                                                          if mean(arm) is not None}}


def plot_noise_curve(path: Path, curve: dict[str, Any] | None) -> Path | None:
    """Draw :func:`noise_curve`: the noisy oracle from σ = 0 (the oracle) up, random and none as levels."""
    if curve is None or len(curve["points"]) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(*zip(*curve["points"], strict=True), marker="o", label="noisy oracle (σ = 0: the oracle)")
    for arm, colour in (("random", "tab:orange"), ("none", "tab:grey"), ("nemo", "tab:green")):
        if arm in curve["levels"]:
            ax.axhline(curve["levels"][arm], color=colour, lw=1, label=arm if arm != "nemo" else "CLIP-mined (nemo)")
    ax.set_xlabel("noise σ added to the oracle's scores (which lie in [0, 1])")
    ax.set_ylabel("object accuracy, referring-hard")
    seeds = curve["seeds"]
    ax.set_title(f"Too ambiguous ↔ too trivial, against the ground truth (seed{'s' * (len(seeds) > 1)} "
                 f"{', '.join(map(str, seeds))})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _finished(out: Path, arms: Sequence[str], partial: bool = False) -> dict[str, Any] | None:
    """A seed's results, read back when it ran every arm asked for (``partial``: any of them)."""
    saved = out / "results.json"
    if not saved.is_file():
        return None
    run = json.loads(saved.read_text())
    ran = set(run.get("arms", {}))
    return run if (ran & set(arms) if partial else set(arms) <= ran) else None


def _comparable(key: str, value: Any) -> Any:
    """A setting as merging compares it: a start given as a shipped model's folder is that model's name.

    Runs of 2026-12-06 recorded the folder a shipped name resolves to (on the machine they ran on);
    later runs record the name. Both are the same weights, so both are one start.

    >>> _comparable("init_from", "/elsewhere/nemo_hf/pretrained/synthetic-segmenter")
    'nemo-hf/synthetic-segmenter'
    >>> _comparable("init_from", "runs/seed0/arms/none/final"), _comparable("seed", 2)
    ('runs/seed0/arms/none/final', 2)
    """
    if key == "init_from" and isinstance(value, str):
        path = Path(value)
        for name, folder in PRETRAINED.items():
            if path.parent.name == "pretrained" and path.parent.parent.name == "nemo_hf" and path.name == folder.name:
                return name
    return value


def merge_arms(into: Path, extra: Path) -> dict[str, Any]:
    """Add the arms of the seed folder ``extra`` to the seed folder ``into``; return the merged results.

    For arms of one seed that ran in separate processes or sessions from the same start (the
    same world, evaluation world and settings but the arm list): their entries join
    ``into/results.json``, their ``scores.npz`` are copied, and the comparisons with the
    baselines are computed for the new pairs, so the summary reads them as if one run had
    trained them all. Only what the summary reads is copied, not weights. A folder whose
    settings or world differ, or an arm both folders hold, is refused; ``results.json`` is
    replaced in one step, last, so a failed merge leaves it as it was.
    """
    ours, theirs = (json.loads((folder / "results.json").read_text()) for folder in (into, extra))
    differ = sorted(key for key in {*ours["settings"], *theirs["settings"]} - {"arms"}
                    if _comparable(key, ours["settings"].get(key)) != _comparable(key, theirs["settings"].get(key)))
    if differ or ours["world"] != theirs["world"]:
        world = "differ" if ours["world"] != theirs["world"] else "agree"
        raise ValueError(f"cannot merge {extra} into {into}: they ran different experiments "
                         f"(settings differing: {differ or 'none'}; worlds {world})")
    if both := sorted(set(ours["arms"]) & set(theirs["arms"])):
        raise ValueError(f"cannot merge {extra} into {into}: both hold arm(s) {both}")
    for arm in theirs["arms"]:
        (into / "arms" / arm).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extra / "arms" / arm / "scores.npz", into / "arms" / arm / "scores.npz")
    merged = dict(ours)
    merged["settings"] = {**ours["settings"], "arms": [*ours["settings"]["arms"], *theirs["settings"]["arms"]]}
    for key in ("arms", "audits", "mining"):
        merged[key] = {**ours.get(key, {}), **theirs.get(key, {})}
    merged["comparisons"] = dict(ours["comparisons"])
    for base in BASELINES:
        for arm in merged["arms"]:
            name = f"{arm} − {base}"
            if base in merged["arms"] and arm != base and name not in merged["comparisons"]:
                merged["comparisons"][name] = compare(_scores(into, arm), _scores(into, base),
                                                      seed=merged["settings"]["seed"])
    merged["merged_from"] = [*ours.get("merged_from", []), str(extra)]
    partial = into / "results.json.partial"
    partial.write_text(json.dumps(merged, indent=2))
    partial.replace(into / "results.json")
    return merged


def _run_seeds_in_parallel(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """``--parallel N``: one process per seed, N at a time, each with one torch thread."""
    pending = list(args.seeds)
    running: list[subprocess.Popen] = []
    base = [a for a in argv if a not in ("--parallel", str(args.parallel))]
    while pending or running:
        while pending and len(running) < args.parallel:
            seed = pending.pop(0)
            command = [sys.executable, "-m", "benchmarks.nemo_effect", *base, "--seeds", str(seed), "--no-summary",
                       "--threads", "1"]
            log = open(args.out / f"seed{seed}.log", "a")  # noqa: SIM115 (closed with the process)
            running.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT.parent))
            print(f"seed {seed}: {' '.join(command[1:])} (log: {args.out / f'seed{seed}.log'})")
        for process in list(running):
            if process.poll() is not None:
                running.remove(process)
                if process.returncode:
                    raise SystemExit(f"{process.args} failed ({process.returncode}); see its log")
        if running:
            try:
                running[0].wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


def render(summary: dict[str, Any], settings: ExperimentSettings, note: str) -> str:
    """The BENCHMARKS.md section of the results."""
    arms = summary["arms"]
    whose = "its seed's checkpoint " if "{seed}" in (settings.init_from or "") else ""
    start = (f"every arm continuing {whose}`{settings.init_from}` at rates {settings.learning_rate:g} (new layers) and "
             f"{settings.encoder_learning_rate:g} (towers); " if settings.init_from else "")
    budgets = summary.get("steps", {})
    steps = (f"{settings.max_train_steps}" if len(set(budgets.values())) <= 1 else
             ", ".join(f"{n} (seed {seed})" for seed, n in budgets.items()))
    lines = [f"## {summary.get('section', SECTION)}", "", f"Seeds {summary['seeds']}; {start}{steps} "
             f"steps of {settings.train_batch_size} at {settings.input_size} px per arm; criteria and settings in the "
             "section above, written before the runs. " + note, "",
             "| arm | seeds | object accuracy, referring-hard | easy | wrong-object rate, referring-hard | oIoU |",
             "|---|---|---|---|---|---|"]
    for arm, v in arms.items():
        lines.append(f"| {arm} | {len(v['seeds'])} | {v['referring_hard'][0]:.4f} ± {v['referring_hard'][1]:.4f} | "
                     f"{v['easy'][0]:.4f} ± {v['easy'][1]:.4f} | {v['wrong_object_hard'][0]:.4f} | "
                     f"{v['oiou'][0]:.4f} ± {v['oiou'][1]:.4f} |")
    lines += ["", "Pooled paired differences (points, 95% interval resampling each seed's sentences):", "",
              "| comparison | seeds | referring-hard | easy |", "|---|---|---|---|"]
    for name, v in summary["comparisons"].items():
        lines.append(f"| {name} | {len(v['seeds'])} | {_points(v['hard'])} | {_points(v['easy'])} |")
    decided = summary["verdict"]
    lines += ["", f"**Verdict: {decided['verdict']}.** " + "; ".join(
        f"{check}: {'yes' if ok else 'no'}" for check, ok in decided.get("checks", {}).items()), "",
        "Convergence (" + CONVERGENCE + "; " + CONVERGENCE_AMENDMENT + "): " + "; ".join(
            f"seed {seed}: {c.get('converged')} (" + ", ".join(
                f"{arm} moved {a.get('move')}" for arm, a in c.get("arms", {}).items()) + ")"
            for seed, c in summary["convergence"].items())]
    if (curve := summary.get("noise_curve")) is not None:
        levels = ", ".join(f"{arm} {value:.4f}" for arm, value in curve["levels"].items())
        lines += ["", f"The noisy oracle (seeds {curve['seeds']}; referring-hard object accuracy by σ, σ = 0 the oracle): "
                      + ", ".join(f"σ {sigma:g}: {value:.4f}" for sigma, value in curve["points"])
                      + (f"; beside {levels}" if levels else "") + " (`noise_curve.png`)."]
    if summary.get("clip_between_random_and_oracle") is not None:
        lines += ["", f"CLIP mining lands at {summary['clip_between_random_and_oracle']:.2f} of the way from random "
                      "mosaics (0) to the oracle (1) on referring-hard object accuracy."]
    return "\n".join(lines) + "\n"


def _points(d: dict[str, float]) -> str:
    return f"{100 * d['value']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(BENCHMARK_ARMS))
    parser.add_argument("--steps", type=int, default=ExperimentSettings().max_train_steps)
    parser.add_argument("--eval-steps", type=int, default=250, help="learning-curve evaluations every N steps")
    parser.add_argument("--curve-sentences", type=int, default=1500)
    parser.add_argument("--eval-images", type=int, default=ExperimentSettings().eval_images)
    parser.add_argument("--warmup-epochs", type=int, default=2,
                        help="epochs of random mosaics before mined ones (the released schedule)")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "nemo_effect")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--parallel", type=int, default=1, help="seeds run at once, each a process of one thread")
    parser.add_argument("--finished-only", action="store_true", help="summarise finished seeds, train nothing")
    parser.add_argument("--no-summary", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the toy budget: checks the script; means nothing")
    parser.add_argument("--finetune-from", default=None, metavar="PATH",
                        help="the fine-tune study: every arm continues this checkpoint ('{seed}' is replaced by the "
                             "seed: e.g. runs/seed{seed}/arms/none/final), judged by its own criteria")
    parser.add_argument("--note", default="", help="what shared the machine, for the written section")
    parser.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    parser.add_argument("--merge-from", type=Path, default=None, metavar="DIR",
                        help="first add the arms of DIR/seed<N> (run apart from the same start) to --out/seed<N>")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = benchmark_settings(args)
    if args.merge_from is not None:
        for seed in args.seeds:
            merge_arms(args.out / f"seed{seed}", args.merge_from / f"seed{seed}")
    if args.parallel > 1 and not args.finished_only:
        _run_seeds_in_parallel(args, argv)
    runs: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        done = _finished(out, settings.arms, partial=args.finished_only)
        if done is None and not args.finished_only:
            done = run_experiment(out, seeded(settings, seed, args.finetune_from), pictures=seed == args.seeds[0],
                                  quick=args.quick)
        if done is not None:
            runs[seed] = done
    if args.no_summary or not runs:
        return None
    outs = {seed: args.out / f"seed{seed}" for seed in runs}
    summary = summarise(runs, outs, settings.max_train_steps, finetune=args.finetune_from is not None)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if (curve := plot_noise_curve(args.out / "noise_curve.png", summary["noise_curve"])) is not None:
        print(f"saved {curve}")
    # the start as given ('{seed}' unfilled): seeds continue different checkpoints
    shared = settings.finetune(args.finetune_from) if args.finetune_from else settings
    section = render(summary, shared, args.note or f"{report.machine()}; load average {os.getloadavg()[0]:.1f}.")
    print(section)
    if args.write:
        report.write_section(DEFAULT_OUTPUT, summary["section"], section)
    return summary


if __name__ == "__main__":
    main()
