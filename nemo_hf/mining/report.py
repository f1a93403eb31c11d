"""The difficulty report: how hard the mined negatives are, to tune τ and K.

It sets the text→image scores of the chosen negatives against those of all candidates,
and the image→image similarity of chosen negatives to the query image against all
candidates', with the thresholds drawn in; plus the fallback count. Printed as a short
summary, saved as JSON and as a PNG plot.

    >>> import numpy as np
    >>> from nemo_hf.mining.selection import HIST_BINS, Selection, SelectionStats
    >>> hist = np.zeros(HIST_BINS, dtype=np.int64)
    >>> stats = SelectionStats(1, 4, hist, hist, hist, 0, 0)
    >>> sel = Selection(np.array([[1, 2, -1]]), np.array([[0.3, 0.2, np.nan]], np.float32),
    ...                 np.array([2]), np.array([False]), stats)
    >>> report = DifficultyReport.from_selection(sel, model="tiny", n_pool=5, top_k=3,
    ...                                          needed=2, tau_text=None, tau_image=0.9)
    >>> report.n_fallback, report.chosen_text_quantiles["50%"]
    (0, 0.25)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nemo_hf.mining.selection import HIST_BINS, Selection

__all__ = ["DifficultyReport"]

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_EDGES = np.linspace(-1.0, 1.0, HIST_BINS + 1)


def _label(q: float) -> str:
    return f"{round(q * 100)}%"


def _hist_quantiles(counts: np.ndarray) -> dict[str, float | None]:
    """Quantiles read off a histogram over ``_EDGES`` (linear within a bin)."""
    total = counts.sum()
    if total == 0:
        return {_label(q): None for q in _QUANTILES}
    cumulative = np.concatenate([[0], np.cumsum(counts)]) / total
    return {_label(q): round(float(np.interp(q, cumulative, _EDGES)), 4) for q in _QUANTILES}


def _exact_quantiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {_label(q): None for q in _QUANTILES}
    return {_label(q): round(float(np.quantile(values, q)), 4) for q in _QUANTILES}


def _tau(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"


def _quantile_line(quantiles: dict[str, float | None]) -> str:
    return ", ".join(f"{k} {v}" for k, v in quantiles.items())


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


@dataclass
class DifficultyReport:
    """Summary of one mining run. Histograms share 200 equal bins over [-1, 1].

    ``chosen_text_*`` cover every stored negative of every sentence; ``candidate_*`` and
    ``*_image_*`` cover all candidates of an evenly spaced sample of sentences
    (``sample_sentences``, all sentences when there are few).
    """

    model: str
    n_sentences: int
    n_pool: int
    top_k: int
    needed: int
    tau_text: float | None
    tau_image: float | None
    tau_own: float | None
    n_fallback: int
    mean_list_length: float
    sample_sentences: int
    sample_candidates: int
    candidates_above_tau_text: float
    candidates_above_tau_image: float
    chosen_text_quantiles: dict[str, float | None]
    candidate_text_quantiles: dict[str, float | None]
    chosen_image_quantiles: dict[str, float | None]
    candidate_image_quantiles: dict[str, float | None]
    hist_edges: list[float]
    chosen_text_hist: list[int]
    candidate_text_hist: list[int]
    chosen_image_hist: list[int]
    candidate_image_hist: list[int]

    @classmethod
    def from_selection(
        cls,
        selection: Selection,
        *,
        model: str,
        n_pool: int,
        top_k: int,
        needed: int,
        tau_text: float | None,
        tau_image: float | None,
        tau_own: float | None = None,
    ) -> DifficultyReport:
        """Build the report from a :class:`~nemo_hf.mining.selection.Selection`."""
        chosen = selection.scores[np.isfinite(selection.scores)]
        chosen_hist = np.histogram(np.clip(chosen, -1.0, 1.0), bins=_EDGES)[0]
        stats = selection.stats
        return cls(
            model=model,
            n_sentences=len(selection.counts),
            n_pool=n_pool,
            top_k=top_k,
            needed=needed,
            tau_text=tau_text,
            tau_image=tau_image,
            tau_own=tau_own,
            n_fallback=int(selection.fallback.sum()),
            mean_list_length=round(float(selection.counts.mean()), 3) if len(selection.counts) else 0.0,
            sample_sentences=stats.sample_sentences,
            sample_candidates=stats.candidates,
            candidates_above_tau_text=_share(stats.above_tau_text, stats.candidates),
            candidates_above_tau_image=_share(stats.above_tau_image, stats.candidates),
            chosen_text_quantiles=_exact_quantiles(chosen),
            candidate_text_quantiles=_hist_quantiles(stats.text_candidates),
            chosen_image_quantiles=_hist_quantiles(stats.image_chosen),
            candidate_image_quantiles=_hist_quantiles(stats.image_candidates),
            hist_edges=[round(float(e), 6) for e in _EDGES],
            chosen_text_hist=chosen_hist.astype(int).tolist(),
            candidate_text_hist=stats.text_candidates.astype(int).tolist(),
            chosen_image_hist=stats.image_chosen.astype(int).tolist(),
            candidate_image_hist=stats.image_candidates.astype(int).tolist(),
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return asdict(self)

    def summary(self) -> str:
        """A few lines for the console."""
        return "\n".join(
            [
                f"NeMo negative mining with {self.model}: {self.n_sentences} sentences, "
                f"{self.n_pool} pool images, top_k={self.top_k}, tau_text={_tau(self.tau_text)}, "
                f"tau_image={_tau(self.tau_image)}, tau_own={_tau(self.tau_own)}, {self.needed} negatives per mosaic",
                f"  fallback (fewer than {self.needed} survived τ, filled from the least similar): "
                f"{self.n_fallback} sentences ({_share(self.n_fallback, self.n_sentences):.2%}); "
                f"mean list length {self.mean_list_length}",
                f"  text→image, chosen:     {_quantile_line(self.chosen_text_quantiles)}",
                f"  text→image, candidates: {_quantile_line(self.candidate_text_quantiles)}"
                f"  (above the text limit: {self.candidates_above_tau_text:.3%})",
                f"  image→image, chosen:     {_quantile_line(self.chosen_image_quantiles)}",
                f"  image→image, candidates: {_quantile_line(self.candidate_image_quantiles)}"
                f"  (above tau_image: {self.candidates_above_tau_image:.3%})",
                f"  candidate distributions from {self.sample_sentences} sentences "
                f"({self.sample_candidates} candidate pairs)",
            ]
        )

    def save(self, folder: str | Path, stem: str = "mining_report") -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.png`` into ``folder``; return both paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        json_path, png_path = folder / f"{stem}.json", folder / f"{stem}.png"
        json_path.write_text(json.dumps(self.to_dict(), indent=1))
        self.plot(png_path)
        return json_path, png_path

    def plot(self, path: str | Path) -> None:
        """Save the two distributions (text→image, image→image) as a PNG."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        edges = np.asarray(self.hist_edges)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        panels = (
            ("text→image cosine", self.candidate_text_hist, self.chosen_text_hist, self.tau_text, "tau_text"),
            ("image→image cosine (query image)", self.candidate_image_hist, self.chosen_image_hist,
             self.tau_image, "tau_image"),
        )  # fmt: skip
        for ax, (title, candidates, chosen, tau, tau_name) in zip(axes, panels, strict=True):
            for hist, label in ((candidates, "all candidates"), (chosen, f"chosen (top {self.top_k})")):
                counts = np.asarray(hist, dtype=float)
                if counts.sum():
                    ax.stairs(counts / counts.sum() / np.diff(edges), edges, label=label)
            if tau is not None:
                ax.axvline(tau, color="red", linestyle="--", label=f"{tau_name} = {tau:g}")
            filled = np.flatnonzero(np.asarray(candidates) + np.asarray(chosen))
            if filled.size:
                low, high = edges[filled[0]], edges[filled[-1] + 1]
                if tau is not None:
                    low, high = min(low, tau), max(high, tau)
                ax.set_xlim(low - 0.02, high + 0.02)
            ax.set_xlabel(title)
            ax.set_ylabel("density")
            ax.legend(loc="upper left", fontsize=8)
        fig.suptitle(
            f"NeMo mining ({self.model}): {self.n_fallback}/{self.n_sentences} sentences fell back",
            fontsize=10,
        )
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
