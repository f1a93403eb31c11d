"""The `evaluate` module wrapping RISMetrics: loads offline from its folder, gives RISMetrics' numbers."""

from __future__ import annotations

import socket

import evaluate
import numpy as np
import pytest

from nemo_hf.metrics import RISMetrics, evaluate_module_path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during an offline test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def random_samples(count: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(count):
        shape = tuple(rng.integers(1, 10, size=2))
        preds.append(rng.random(shape) < 0.5 if i % 4 else np.zeros(shape, dtype=bool))
        gts.append(rng.random(shape) < 0.5 if i % 3 else np.zeros(shape, dtype=bool))
    return preds, gts


def test_evaluate_load_round_trip_equals_ris_metrics(no_network):
    preds, gts = random_samples(12, seed=0)
    expected = RISMetrics()
    expected.update(preds, gts)
    metric = evaluate.load(str(evaluate_module_path()))
    metric.add_batch(predictions=preds[:5], references=gts[:5])
    for pred, gt in zip(preds[5:], gts[5:]):
        metric.add(prediction=pred, reference=gt)
    assert metric.compute() == expected.compute()


def test_grouped_configuration_and_thresholds(no_network):
    preds, gts = random_samples(9, seed=1)
    groups = [[f"distractors={i % 3}"] + (["size=small"] if i % 2 else []) for i in range(9)]
    expected = RISMetrics(thresholds=(0.25, 0.75))
    expected.update(preds, gts, groups)
    metric = evaluate.load(str(evaluate_module_path()), "grouped")
    result = metric.compute(predictions=preds, references=gts, groups=groups, thresholds=[0.25, 0.75])
    assert result == expected.compute()
    assert set(result["groups"]) == {"distractors=0", "distractors=1", "distractors=2", "size=small"}


def test_unknown_configuration_is_refused(no_network):
    with pytest.raises(ValueError, match="'default' or 'grouped'"):
        evaluate.load(str(evaluate_module_path()), "per_pixel")
