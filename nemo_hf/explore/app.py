"""The explorer's page (Gradio, the optional ``[app]`` extra): mining and mosaics, and a segmentation tab.

``nemo-hf explore DATA`` serves it on ``127.0.0.1`` (this machine only; ``--host 0.0.0.0``
opens it to the network, with no login). Two tabs:

**Mining.** A dataset (a ``build_refcoco.py --out`` Parquet folder, a ``save_to_disk``
folder or a Hub id; its config and split) and a CLIP (default the shipped
``nemo-hf/synthetic-clip``, offline) are loaded once: the pool and every expression embedded,
from mining's cache when the split was mined before. Then, for the expression chosen (by
number, or by a search over the expressions), the page shows its picture with the target
outlined, a summary (how many candidates each τ drops, how many K keeps and at which
cosine it cuts, whether the list fell back), the ranked candidates with their text→image
and image→image cosines and what the rule made of each, and four mosaics drawn as four
epochs of training would draw them. Moving a slider (τ_text, τ_image, τ_own, K, the grid,
the seed) re-cuts the ranking and re-draws the mosaics from the cached embeddings; nothing
is embedded again, and only the pictures shown are decoded. On synthetic data a candidate
that holds an object the expression fits is marked, and a mosaic cell where an object
fits the expression on the whole canvas (a wrong label) is outlined in red; the target's
cell is outlined in green.

**Segment.** An uploaded picture, an expression and a model (anything the
``referring-image-segmentation`` pipeline loads: a CLIPSeg, a CRIS, a Florence-2, by Hub id
or folder): the mask over the picture, the mask itself, and its score with what the score
means for that architecture.

Gradio is imported when the page is built, so the package works without the extra; the
settings a page's controls give are turned into NeMo's own settings here:

>>> settings, note = settings_from_controls(top_k=5, tau_text_on=False, tau_text=0.3, tau_image_on=True,
...                                        tau_image=0.85, tau_own_on=False, tau_own=0.0, grid=2, seed=1)
>>> settings.top_k, settings.tau_text, settings.tau_image, settings.seed, note
(5, None, 0.85, 1, None)
>>> settings_from_controls(top_k=2, tau_text_on=False, tau_text=0.3, tau_image_on=False, tau_image=0.9,
...                        tau_own_on=False, tau_own=0.0, grid=3, seed=0)[1]
'K = 2 is fewer than a 3x3 mosaic needs: K = 8 shown'
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import numpy as np

from nemo_hf.explore.session import FALLBACK, KEPT, DrawnMosaic, MiningExplorer, Ranking
from nemo_hf.explore.sources import open_split
from nemo_hf.nemo.settings import NeMoSettings

__all__ = ["DEFAULT_CLIP", "DEFAULT_SEGMENTER", "build_app", "drawn_in", "launch", "settings_from_controls"]

DEFAULT_CLIP = "nemo-hf/synthetic-clip"
DEFAULT_SEGMENTER = "nemo-hf/synthetic-clip"
"""The segment tab's model when none is named: the shipped CLIP as a CLIPSeg, offline (its decoder is untrained)."""
MOSAICS = 4
_HEADERS = ["rank", "image_id", "text→image", "image→image", "what the rule did", "drawn in the mosaics of epochs",
            "fits the expression"]


def settings_from_controls(*, top_k: float, tau_text_on: bool, tau_text: float, tau_image_on: bool, tau_image: float,
                           tau_own_on: bool, tau_own: float, grid: Any, seed: float) -> tuple[NeMoSettings, str | None]:
    """NeMo's settings from the page's controls, and a note when K had to be raised to fill a mosaic."""
    grid = int(grid)
    needed = grid * grid - 1
    note = None
    if int(top_k) < needed:
        note = f"K = {int(top_k)} is fewer than a {grid}x{grid} mosaic needs: K = {needed} shown"
    settings = NeMoSettings(
        top_k=max(int(top_k), needed), grid=grid, seed=int(seed),
        tau_text=float(tau_text) if tau_text_on else None,
        tau_image=float(tau_image) if tau_image_on else None,
        tau_own=float(tau_own) if tau_own_on else None,
    )
    return settings, note


def _summary(explorer: MiningExplorer, ranking: Ranking, settings: NeMoSettings, note: str | None) -> str:
    counts = ranking.counts
    taus = ", ".join(f"{name} {'off' if value is None else f'{value:.2f}'}" for name, value in (
        ("τ_text", settings.tau_text), ("τ_image", settings.tau_image), ("τ_own", settings.tau_own)))
    dropped = ", ".join(f"{counts.get(status, 0)} {status}" for status in ("above τ_text", "above own + τ_own",
                                                                          "above τ_image"))
    ids = "" if ranking.ref_id is None else f" (ref {ranking.ref_id}, sent {ranking.sent_id})"
    cut = f" — K cuts at cosine {ranking.k_cut:.3f}" if ranking.k_cut is not None else ""
    lines = [
        f"### “{ranking.sentence}”",
        f"Sentence {ranking.index} of {len(explorer.sentences)}, image {ranking.image_id}{ids}; its own image's "
        f"text→image cosine {ranking.own_text_score:.3f}.",
        f"{taus}, K {settings.top_k}, grid {settings.grid}x{settings.grid} ({settings.negatives_needed} negatives), "
        f"seed {settings.seed}.",
        f"**{sum(counts.values())} candidates: {dropped}; {counts.get(KEPT, 0)} kept{cut}; "
        f"{counts.get('beyond K', 0)} beyond K.**",
    ]
    if ranking.fallback:
        lines.append(f"**Fallback:** fewer than {settings.negatives_needed} survived the τs; "
                     f"{counts.get(FALLBACK, 0)} filled from the least similar end.")
    if ranking.synthetic:
        fitting = sum(1 for c in ranking.candidates if c.fits and c.status in (KEPT, FALLBACK))
        lines.append(f"Ground truth (synthetic): {fitting} of the {len(ranking.kept)} kept hold an object the "
                     "expression fits in their own picture; red cells in a mosaic hold one on the whole canvas.")
    if note:
        lines.append(f"*{note}.*")
    return "\n\n".join(lines)


def drawn_in(mosaics: list[DrawnMosaic]) -> dict[int, list[int]]:
    """Per negative image_id, the epochs whose mosaic drew it (the query's own cell left out).

    >>> from PIL import Image
    >>> drawn_in([DrawnMosaic(Image.new("RGB", (2, 2)), [5, 7, 8, 9], 0, None, 0),
    ...           DrawnMosaic(Image.new("RGB", (2, 2)), [7, 5, 6, 1], 1, None, 1)])
    {7: [0, 1], 8: [0], 9: [0], 6: [1], 1: [1]}
    """
    epochs: dict[int, list[int]] = {}
    for mosaic in mosaics:
        for cell, image_id in enumerate(mosaic.source_image_ids):
            if cell != mosaic.target_cell:
                epochs.setdefault(image_id, []).append(mosaic.epoch)
    return epochs


def _table(ranking: Ranking, drawn: dict[int, list[int]]) -> list[list[Any]]:
    return [[c.rank, c.image_id, round(c.text_score, 4), round(c.image_score, 4), c.status,
             ", ".join(map(str, drawn.get(c.image_id, []))) or "—",
             "—" if c.fits is None else ("yes" if c.fits else "no")] for c in ranking.candidates]


def build_app(explorer: MiningExplorer | None = None, *, source: str = "", config: str | None = None,
              split: str = "train", clip: str = DEFAULT_CLIP, cache_dir: str | None = None,
              model: str | None = None) -> Any:
    """The page (a ``gradio.Blocks``) for ``explorer``, its data fields filled with where it came from."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    held: dict[str, Any] = {"explorer": explorer}
    pipelines: dict[str, Any] = {}

    def load(new_source: str, new_config: str, new_split: str, new_clip: str) -> tuple[str, Any]:
        try:
            ds = open_split(new_source, new_config or None, new_split or "train", cache_dir)
            held["explorer"] = MiningExplorer(ds, clip=new_clip or DEFAULT_CLIP, cache_dir=cache_dir)
        except Exception as error:  # shown on the page: the server keeps the split it had
            return f"**Could not load {new_source!r}:** {error}", gr.update()
        count = len(held["explorer"].sentences)
        return _status(new_source, new_split, count), gr.update(value=0, maximum=count - 1)

    def show(index: float, top_k: float, tau_text_on: bool, tau_text: float, tau_image_on: bool, tau_image: float,
             tau_own_on: bool, tau_own: float, grid: Any, seed: float) -> tuple[Any, ...]:
        current: MiningExplorer | None = held["explorer"]
        if current is None:
            return "Load a dataset first.", None, [], [], []
        try:
            settings, note = settings_from_controls(top_k=top_k, tau_text_on=tau_text_on, tau_text=tau_text,
                                                    tau_image_on=tau_image_on, tau_image=tau_image,
                                                    tau_own_on=tau_own_on, tau_own=tau_own, grid=grid, seed=seed)
            index = int(index or 0)
            ranking = current.ranking(index, settings)
            mosaics = current.mosaics(index, settings, count=MOSAICS)
        except (ValueError, IndexError) as error:
            return f"**{error}**", None, [], [], []
        drawn = drawn_in(mosaics)
        gallery = [(current.thumbnail(c.image_id), f"#{c.rank} · image {c.image_id} · t→i {c.text_score:.3f} · "
                    f"i→i {c.image_score:.3f} · {c.status}" + (" · drawn" if c.image_id in drawn else "")
                    + (" · FITS the expression" if c.fits else ""))
                   for c in ranking.candidates]
        pictures = [(m.image, f"epoch {m.epoch}: cells {m.source_image_ids}, target in cell {m.target_cell}"
                     + ("" if m.wrong_cells is None else f", wrong label in cells {m.wrong_cells}" if m.wrong_cells
                        else ", no wrong label")) for m in mosaics]
        return (_summary(current, ranking, settings, note), current.query_image(index), _table(ranking, drawn),
                gallery, pictures)

    def find(text: str) -> tuple[Any, str]:
        current: MiningExplorer | None = held["explorer"]
        if current is None:
            return gr.update(), "Load a dataset first."
        found = current.find(text, limit=20)
        if not found:
            return gr.update(), f"No expression contains {text!r}."
        listed = "\n".join(f"- {i}: {current.sentences[i]}" for i in found)
        return found[0], f"{len(found)} shown (the first is selected):\n{listed}"

    def segment(image: Any, text: str, name: str, threshold: float) -> tuple[Any, Any, str]:
        from nemo_hf.modeling.pipeline import pipeline
        from nemo_hf.modeling.registry import architecture_of_class
        from nemo_hf.viz import overlay_mask

        if image is None or not (text or "").strip():
            return None, None, "Give a picture and an expression."
        name = (name or DEFAULT_SEGMENTER).strip()
        try:
            if name not in pipelines:
                pipelines[name] = pipeline(model=name, device="cpu")
            result = pipelines[name](image, text, threshold=float(threshold))
        except Exception as error:  # shown on the page
            return None, None, f"**{name}: {error}**"
        segmenter = pipelines[name].model
        arch = architecture_of_class(type(getattr(segmenter, "model", segmenter)).__name__)
        meaning = f" — for {arch.display_name}, the score is {arch.score}" if arch is not None else ""
        pixels = int((np.asarray(result["mask"]) > 0).sum())
        return (overlay_mask(image.convert("RGB"), result["mask"]), result["mask"],
                f"**score {result['score']:.4f}**, {pixels} pixels marked{meaning}.")

    with gr.Blocks(title="nemo_hf explorer", analytics_enabled=False) as app:
        gr.Markdown("# nemo_hf explorer\nWhat NeMo's miner chose for an expression, where τ and K cut, the mosaics "
                    "they draw; and any referring segmenter's mask.")
        with gr.Tab("Mining and mosaics"):
            with gr.Row():
                data_box = gr.Textbox(source, label="dataset (Parquet folder, save_to_disk folder or Hub id)",
                                      elem_id="data-source", scale=3)
                config_box = gr.Textbox(config or "", label="config", elem_id="data-config")
                split_box = gr.Textbox(split, label="split", elem_id="data-split")
                clip_box = gr.Textbox(clip, label="CLIP", elem_id="data-clip")
                load_button = gr.Button("Load", elem_id="data-load")
            status = gr.Markdown(_status(source, split, len(explorer.sentences)) if explorer else "No dataset loaded.",
                                 elem_id="data-status")
            with gr.Row():
                search = gr.Textbox(label="find an expression (press Enter)", elem_id="search", scale=3)
                index = gr.Number(0, label="sentence #", precision=0, minimum=0, elem_id="sentence-index",
                                  maximum=(len(explorer.sentences) - 1) if explorer else None)
            matches = gr.Markdown(elem_id="matches")
            with gr.Row():
                top_k = gr.Slider(1, 200, value=NeMoSettings().top_k, step=1, label="K (top K kept)", elem_id="top-k")
                grid = gr.Radio([2, 3], value=2, label="grid", elem_id="grid")
                seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
            with gr.Row():
                tau_text_on = gr.Checkbox(False, label="τ_text on", elem_id="tau-text-on")
                tau_text = gr.Slider(-1, 1, value=0.3, step=0.005, label="τ_text (text→image)", elem_id="tau-text")
                tau_image_on = gr.Checkbox(True, label="τ_image on", elem_id="tau-image-on")
                tau_image = gr.Slider(-1, 1, value=0.9, step=0.005, label="τ_image (image→image)",
                                      elem_id="tau-image")
                tau_own_on = gr.Checkbox(False, label="τ_own on", elem_id="tau-own-on")
                tau_own = gr.Slider(-0.5, 0.5, value=0.0, step=0.005, label="τ_own (over the own image's score)",
                                    elem_id="tau-own")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                query = gr.Image(label="the expression's picture (target outlined)", type="pil", elem_id="query",
                                 interactive=False, height=260)
                mosaics = gr.Gallery(label=f"{MOSAICS} mosaics (epochs 0-{MOSAICS - 1}): target cell green, wrong "
                                     "label red", elem_id="mosaics", columns=MOSAICS, height=300, format="png")
            ranking = gr.Dataframe(headers=_HEADERS, label="ranked candidates", elem_id="ranking", interactive=False,
                                   wrap=True)
            candidates = gr.Gallery(label="the candidates listed", elem_id="candidates", columns=8, height=420)
        with gr.Tab("Segment a picture"):
            with gr.Row():
                upload = gr.Image(label="picture", type="pil", elem_id="segment-image", height=300)
                overlay = gr.Image(label="mask over the picture", type="pil", elem_id="segment-overlay",
                                   interactive=False, height=300, format="png")
                # PNG: lossless, the mask arrives as the pipeline made it
                mask = gr.Image(label="mask", type="pil", elem_id="segment-mask", interactive=False, height=300,
                                format="png")
            with gr.Row():
                text = gr.Textbox(label="expression", elem_id="segment-text", scale=3)
                model_box = gr.Textbox(model or DEFAULT_SEGMENTER, label="model (Hub id or folder)",
                                       elem_id="segment-model", scale=2)
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="threshold (logit models)",
                                      elem_id="segment-threshold")
                run = gr.Button("Segment", elem_id="segment-run")
            score = gr.Markdown(elem_id="segment-score")

        controls = [index, top_k, tau_text_on, tau_text, tau_image_on, tau_image, tau_own_on, tau_own, grid, seed]
        outputs = [summary, query, ranking, candidates, mosaics]
        for control in controls:
            control.change(show, controls, outputs, trigger_mode="always_last")
        app.load(show, controls, outputs)
        search.submit(find, [search], [index, matches])
        load_button.click(load, [data_box, config_box, split_box, clip_box], [status, index]).then(
            show, controls, outputs)
        run.click(segment, [upload, text, model_box, threshold], [overlay, mask, score])
    return app


def _status(source: str, split: str, count: int) -> str:
    return f"Loaded **{source}** ({split}): {count} expressions."


def launch(source: str, *, config: str | None = None, split: str = "train", clip: str = DEFAULT_CLIP,
           cache_dir: str | None = None, model: str | None = None, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True) -> Any:
    """Load ``source`` (embedding what the cache lacks), build the page and serve it on ``host:port``.

    Returns the running ``gradio.Blocks`` when ``block`` is False; otherwise serves until
    interrupted.
    """
    explorer = MiningExplorer(open_split(source, config, split, cache_dir), clip=clip, cache_dir=cache_dir,
                              progress=True)
    app = build_app(explorer, source=str(source), config=config, split=split, clip=clip, cache_dir=cache_dir,
                    model=model)
    if not _is_loopback(host):
        print(f"nemo-hf explore: serving on {host}, reachable from the network, with no login")
    print(f"nemo-hf explore: {len(explorer.sentences)} expressions of {source} ({split}); http://{host}:{port}/")
    app.queue().launch(server_name=host, server_port=port, prevent_thread_lock=not block, inbrowser=False,
                       quiet=True, show_error=True)
    return app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
