"""The referring-image-segmentation pipeline and `nemo-hf predict`, on the random tiny CLIPSeg saved to a folder.

(Loading by Hub id, revisions and private repositories: tests/test_hub_publish.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from nemo_hf.modeling import load_referring_segmenter, predict_masks
from nemo_hf.modeling.pipeline import pipeline
from tests.training_runs import REPO

torch.set_num_threads(1)


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((30, 50), (64, 64), (41, 17))]


@pytest.fixture(scope="module")
def segmenter(tiny_clipseg_dir):
    return pipeline(model=tiny_clipseg_dir, device="cpu")


def test_masks_are_those_of_predict_masks_and_scores_the_mean_marked_probability(segmenter, tiny_clipseg_dir) -> None:
    images, sentences = _pictures(), ["the red circle", "a blue square on the left", "the small one"]
    results = segmenter(images, sentences)
    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    expected = predict_masks(model, processor, images, sentences)
    assert len(results) == 3
    for image, sentence, result, mask in zip(images, sentences, results, expected):
        assert result["mask"].mode == "L" and result["mask"].size == image.size
        np.testing.assert_array_equal(np.asarray(result["mask"]) > 0, mask)
        assert set(np.unique(np.asarray(result["mask"]))) <= {0, 255}
        batch = processor(text=[sentence], images=[image], return_tensors="pt", padding=True)
        with torch.no_grad():
            probabilities = torch.sigmoid(model(**batch).logits)
        marked = probabilities[probabilities > 0.5]
        assert result["score"] == pytest.approx(float(marked.mean()) if marked.numel() else 0.0)
    assert any(mask.any() for mask in expected) and not all(mask.all() for mask in expected)  # masks that can differ


def test_a_cris_checkpoint_segments_through_the_same_pipeline(tiny_cris_dir) -> None:
    """CRIS predicts at a quarter of its input: the pipeline still returns masks at each image's size."""
    images, sentences = _pictures(), ["the red circle", "a blue square on the left", "the small one"]
    results = pipeline(model=tiny_cris_dir, device="cpu")(images, sentences)
    model, processor = load_referring_segmenter(tiny_cris_dir)
    assert type(model.model).__name__ == "CRISForReferringSegmentation"
    for image, result, mask in zip(images, results, predict_masks(model, processor, images, sentences)):
        assert result["mask"].size == image.size
        np.testing.assert_array_equal(np.asarray(result["mask"]) > 0, mask)


def test_one_image_pairs_with_every_sentence_and_paths_read_like_pictures(segmenter, tmp_path) -> None:
    image = _pictures()[0]
    path = tmp_path / "photo.png"
    image.save(path)
    single = segmenter(image, "the red circle")
    assert isinstance(single, dict) and set(single) == {"mask", "score"}
    for source in (str(path), path):
        assert np.array_equal(np.asarray(segmenter(source, "the red circle")["mask"]), np.asarray(single["mask"]))
    several = segmenter(image, ["the red circle", "the blue square"])
    assert len(several) == 2 and np.array_equal(np.asarray(several[0]["mask"]), np.asarray(single["mask"]))
    assert len(segmenter([image, image], "the red circle")) == 2
    batched = segmenter([image] * 3, ["the red circle", "the blue square", "a"], batch_size=2)
    assert [np.asarray(r["mask"]).tolist() for r in batched] == [
        np.asarray(r["mask"]).tolist() for r in segmenter([image] * 3, ["the red circle", "the blue square", "a"])]


def test_the_threshold_decides_what_is_marked(segmenter) -> None:
    image = _pictures()[1]
    low, high = (np.asarray(segmenter(image, "the red circle", threshold=t)["mask"]) > 0 for t in (0.05, 0.95))
    assert high.sum() <= low.sum() and (high <= low).all()
    with pytest.raises(ValueError, match=r"threshold is a probability in \(0, 1\), got 1.5"):
        segmenter(image, "x", threshold=1.5)


def test_mismatched_inputs_are_named(segmenter) -> None:
    images = _pictures()
    with pytest.raises(ValueError, match="got 3 images but 2 sentences"):
        segmenter(images, ["a", "b"])
    with pytest.raises(TypeError, match="give the expression too"):
        segmenter(images[0])


def test_a_model_object_with_its_processor_makes_a_pipeline(tiny_clipseg_dir) -> None:
    import transformers
    from transformers import CLIPSegForImageSegmentation

    from nemo_hf.modeling.pipeline import ReferringSegmentationPipeline

    _, processor = load_referring_segmenter(tiny_clipseg_dir)
    model = CLIPSegForImageSegmentation.from_pretrained(tiny_clipseg_dir)
    made = transformers.pipeline("referring-image-segmentation", model=model, processor=processor, device="cpu")
    assert isinstance(made, ReferringSegmentationPipeline)
    assert made(_pictures()[2], "the small one")["mask"].size == (17, 41)
    with pytest.raises(ValueError, match="needs the model's processor"):
        ReferringSegmentationPipeline(model=model)


@pytest.mark.parametrize(
    ("removed", "lacks"),
    [
        (["processor_config.json", "tokenizer.json", "tokenizer_config.json"],
         "it has no processor_config.json or preprocessor_config.json and no tokenizer.json or vocab.json + merges.txt"),
        (["tokenizer.json"], "it has no tokenizer.json or vocab.json + merges.txt"),
    ],
    ids=["no-processor", "no-tokenizer"],
)
def test_a_model_folder_without_its_processor_names_the_missing_files(tiny_clipseg_dir, tmp_path, removed,
                                                                      lacks) -> None:
    """Given by name, it said "pass processor=…, or a model name": the model name had been given."""
    import shutil

    import transformers

    from nemo_hf.cli import main

    folder = tmp_path / "model"
    shutil.copytree(tiny_clipseg_dir, folder)
    for name in removed:
        (folder / name).unlink()
    message = (rf"{re.escape(str(folder))} holds a clipseg model but not its processor: {re.escape(lacks)}\. To use "
               rf"it, save the processor beside the model \(processor.save_pretrained")
    for load in (lambda: load_referring_segmenter(folder), lambda: pipeline(model=folder, device="cpu"),
                 lambda: transformers.pipeline("referring-image-segmentation", model=str(folder), device="cpu")):
        with pytest.raises(FileNotFoundError, match=message):
            load()
    _pictures()[0].save(tmp_path / "photo.png")
    assert main(["predict", "--model", str(folder), "--image", str(tmp_path / "photo.png"), "--text", "a"]) == 1


@pytest.mark.parametrize("first", ["nemo_hf", "transformers.pipelines"])
def test_importing_nemo_hf_modeling_registers_the_task_with_transformers_in_either_order(first, tiny_clipseg_dir) -> None:
    """In a fresh interpreter: ``import nemo_hf`` is cheap and touches no import machinery; importing
    ``nemo_hf.modeling`` (before or after transformers' pipelines) registers the task by an ordinary call."""
    code = f"""
import sys
finders = list(sys.meta_path)
import {first}
if "{first}" == "nemo_hf":
    assert "transformers" not in sys.modules and "torch" not in sys.modules, "eager import"
    assert sys.meta_path == finders, "import hook installed"
import nemo_hf.modeling, transformers
from PIL import Image
segmenter = transformers.pipeline("referring-image-segmentation", model=sys.argv[1], device="cpu")
print(type(segmenter).__name__, segmenter(Image.new("RGB", (20, 10)), "a")["mask"].size)
"""
    run = subprocess.run([sys.executable, "-c", code, str(tiny_clipseg_dir)], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "ReferringSegmentationPipeline (20, 10)"
    assert "already registered" not in run.stderr


def test_nemo_hf_predict_writes_the_mask_and_an_overlay(tmp_path, tiny_clipseg_dir, segmenter, capsys) -> None:
    from nemo_hf.cli import main

    image = _pictures()[0]
    image.save(tmp_path / "photo.jpg", quality=100)
    output = tmp_path / "out" / "mask.png"
    assert main(["predict", "--model", str(tiny_clipseg_dir), "--image", str(tmp_path / "photo.jpg"),
                 "--text", "the red circle", "--output", str(output)]) == 0
    mask, overlay = Image.open(output), Image.open(tmp_path / "out" / "mask_overlay.png")
    assert mask.size == overlay.size == image.size and overlay.mode == "RGB"
    expected = segmenter(str(tmp_path / "photo.jpg"), "the red circle")
    assert np.array_equal(np.asarray(mask), np.asarray(expected["mask"]))
    assert f"score {expected['score']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image", "README.md"], r"--image README.md is not a picture PIL can read \(cannot identify image file "
                                   r"'README.md'\): give a JPEG, PNG, WebP … file"),
        (["--image", "nope.jpg"], r"--image nope.jpg is not there: give the path of a picture"),
        (["--image", "."], r"--image \. is a folder: give the path of a picture"),
        (["--text", ""], r"--text is empty \(''\): give the expression that refers to the object, e.g. "
                         r'--text "the man on the left"'),
        (["--text", " \u200b"], r"--text is empty"),
        (["--output", "out"], r"--output out is a folder: name the mask's file, e.g. --output out/mask.png"),
        (["--output", "out/"], r"--output out is a folder"),
        (["--output", "mask.txt"], r"--output mask.txt: no picture format is saved under the extension '.txt'; "
                                   r"end the name with .png"),
        (["--threshold", "1.5"], r"--threshold 1.5 is not a probability in \(0, 1\)"),
        (["--model", "./missing"], r"'./missing' is a local path"),
    ],
    ids=["not-a-picture", "no-image", "image-folder", "empty-text", "invisible-text", "output-folder",
         "output-slash", "output-extension", "threshold", "missing-model"],
)
def test_nemo_hf_predict_names_a_bad_input_before_loading_a_model(flags, message, tmp_path, monkeypatch,
                                                                   capsys) -> None:
    """``--image README.md`` ended in a 47-line traceback, a folder as ``--output`` in "unknown file extension",
    an empty ``--text`` in a mask and status 0."""
    import nemo_hf.modeling.pipeline as pipelines
    from nemo_hf.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("# not a picture\n")
    (tmp_path / "out").mkdir()
    _pictures()[0].save(tmp_path / "photo.png")
    monkeypatch.setattr(pipelines, "pipeline", lambda **_: pytest.fail("a model was loaded"))
    given = {"--model": "nemo-hf/synthetic-clip", "--image": "photo.png", "--text": "the red circle",
             **dict(zip(flags[::2], flags[1::2]))}
    assert main(["predict", *[part for pair in given.items() for part in pair]]) == 1
    shown = capsys.readouterr().err.splitlines()
    assert shown[0].startswith("nemo-hf: error: ") and re.search(message, shown[0]), shown
    assert shown[1] == "(the traceback: run again with NEMO_HF_DEBUG=1)"
    assert not (tmp_path / "mask.png").exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("text", ["", "   ", "\u200b\t\n"])
def test_an_empty_expression_is_refused_as_the_builder_and_mining_refuse_it(segmenter, text) -> None:
    """It gave a mask (score 0.52) for no words at all."""
    with pytest.raises(ValueError, match=r"expression 1 is empty \(.*\): a mask needs words that refer to an "
                                         r"object, e.g. segmenter\(image, 'the man on the left'\)"):
        segmenter(_pictures()[0], ["the red circle", text])
    with pytest.raises(TypeError, match=r"expression 0 is a int, not text"):
        segmenter(_pictures()[0], [3])


def test_a_misspelled_keyword_is_refused_naming_the_valid_ones(segmenter, tiny_clipseg_dir) -> None:
    """``thresold=0.9`` was silently ignored: the masks came out at the default threshold."""
    import transformers

    message = (r"unknown keyword argument\(s\) 'thresold' for the referring-image-segmentation pipeline \(did you "
               r"mean 'threshold'\?\); valid ones: allow_urls, batch_size, num_workers, threshold")
    with pytest.raises(TypeError, match=message):
        segmenter(_pictures()[0], "the red circle", thresold=0.9)
    with pytest.raises(TypeError, match=message):
        transformers.pipeline("referring-image-segmentation", model=str(tiny_clipseg_dir), device="cpu", thresold=0.9)


def test_no_pairs_give_no_results(segmenter) -> None:
    """``seg([], [])`` raised IndexError from inside transformers."""
    image = _pictures()[0]
    assert segmenter([], []) == [] and segmenter(image, []) == [] and segmenter([], "the red circle") == []
    with pytest.raises(ValueError, match="got 0 images but 2 sentences"):
        segmenter([], ["a", "b"])


@pytest.fixture
def image_server(tmp_path):
    """A PNG served on 127.0.0.1: ``(url, requests)``, the list of paths requested so far."""
    import http.server
    import threading

    picture = tmp_path / "served.png"
    _pictures()[0].save(picture)
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = picture.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/served.png", requests
    finally:
        server.shutdown()
        server.server_close()


def test_urls_are_fetched_only_when_the_caller_allows_it(segmenter, tiny_clipseg_dir, image_server, monkeypatch) -> None:
    """An ``http://`` string was fetched: the project reaches no network unless asked."""
    import transformers

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url, requests = image_server
    with pytest.raises(ValueError, match=r"image 1 is a URL \('http://127.0.0.1:\d+/served.png'\): this pipeline "
                                         r"fetches nothing unless asked; pass allow_urls=True to fetch it"):
        segmenter([_pictures()[0], url], "the red circle")
    assert requests == []
    assert segmenter(url, "the red circle", allow_urls=True)["mask"].size == (50, 30)
    allowing = transformers.pipeline("referring-image-segmentation", model=str(tiny_clipseg_dir), device="cpu",
                                     allow_urls=True)
    assert allowing(url, "the red circle")["mask"].size == (50, 30)
    assert requests == ["/served.png"] * 2
