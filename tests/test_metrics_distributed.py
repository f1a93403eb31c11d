"""Two processes give exactly the metrics of one process on the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState, debug_launcher
from accelerate.state import AcceleratorState
from torch.utils.data import DataLoader

from nemo_hf.metrics import GRESMetrics, RISMetrics, pixel_counts

torch.set_num_threads(1)


def make_samples(count: int, seed: int, same_size: bool = False) -> tuple[list, list, list]:
    """Random masks of random sizes with empty predictions, empty targets and both empty among them."""
    rng = np.random.default_rng(seed)
    preds, gts, groups = [], [], []
    for i in range(count):
        shape = (6, 6) if same_size else tuple(rng.integers(1, 12, size=2))
        pred, gt = rng.random(shape) < rng.random(), rng.random(shape) < rng.random()
        if i % 7 == 0:
            pred[:] = False
        if i % 5 == 0:
            gt[:] = False
        preds.append(pred)
        gts.append(gt)
        groups.append([f"distractors={i % 4}"] + (["size=small"] if i % 3 == 0 else []))
    return preds, gts, groups


def one_process_results(preds, gts, groups) -> tuple[dict, dict]:
    ris, gres = RISMetrics(), GRESMetrics()
    ris.update(preds, gts, groups)
    gres.update(preds, gts)
    return ris.compute(), gres.compute()


def _each_process_updates_its_share(preds, gts, groups, expected_ris, expected_gres, marker_dir):
    AcceleratorState._reset_state(reset_partial_state=True)  # forked children inherit the parent's singleton
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    rank = accelerator.process_index
    # interleaved shares: the gathered order differs from the one-process order
    mine = range(rank, len(preds), 2)
    ris, gres = RISMetrics(), GRESMetrics()
    ris.update([preds[i] for i in mine], [gts[i] for i in mine], [groups[i] for i in mine])
    gres.update([preds[i] for i in mine], [gts[i] for i in mine])
    assert ris.compute()["count"] == len(preds)  # through torch.distributed
    assert ris.compute() == expected_ris
    assert ris.compute(accelerator) == expected_ris
    assert ris.compute(PartialState()) == expected_ris
    assert gres.compute(accelerator) == expected_gres
    local = RISMetrics(sync_processes=False)
    local.update([preds[i] for i in mine], [gts[i] for i in mine])
    assert local.compute()["count"] == len(mine)
    Path(marker_dir, f"shares-{rank}").touch()


def _gather_for_metrics_drops_padding(preds, gts, expected_ris, marker_dir):
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    pred_batch, gt_batch = torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts))
    # 5 samples, 2 processes, batches of 2: the last step pads with a repeated sample
    loader = accelerator.prepare(DataLoader(list(range(len(preds))), batch_size=2))
    gathered, per_process = RISMetrics(sync_processes=False), RISMetrics()
    for indices in loader:
        counts = pixel_counts(pred_batch[indices], gt_batch[indices])
        per_process.update_counts(counts.intersection, counts.union)
        counts = accelerator.gather_for_metrics(counts)
        gathered.update_counts(counts.intersection, counts.union)
    assert per_process.compute()["count"] > len(preds)  # the duplicates the route below avoids
    expected = {**expected_ris, "groups": {}}
    assert gathered.compute() == expected
    Path(marker_dir, f"gather-{accelerator.process_index}").touch()


def test_two_processes_equal_one_process(tmp_path):
    preds, gts, groups = make_samples(23, seed=0)
    expected_ris, expected_gres = one_process_results(preds, gts, groups)
    assert expected_ris["groups"] and expected_gres["no_target_count"] > 0
    debug_launcher(
        _each_process_updates_its_share,
        args=(preds, gts, groups, expected_ris, expected_gres, str(tmp_path)),
        num_processes=2,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shares-0", "shares-1"]


def test_gather_for_metrics_route_drops_padding_duplicates(tmp_path):
    preds, gts, _ = make_samples(5, seed=1, same_size=True)
    expected_ris, _ = one_process_results(preds, gts, [[] for _ in preds])
    debug_launcher(_gather_for_metrics_drops_padding, args=(preds, gts, expected_ris, str(tmp_path)), num_processes=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gather-0", "gather-1"]
