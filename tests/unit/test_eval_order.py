"""Evaluation order and additive statistics (metrics/sampling.py, metrics/__init__.py) and the updates
each model got (/steps/{g,d}_updates, /labels): the pieces pcwgan's evaluation during training and the
equal-compute claims stand on."""
import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from hpcgan.analysis.summary import summarize
from hpcgan.comm.control import ControlChannel
from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.data.base import ArrayDataset
from hpcgan.metrics import MixtureEvaluator, add_stats
from hpcgan.metrics.sampling import LabelSampler, eval_labels, label_proportions
from hpcgan.results.reader import UnreadableResults, load_run
from hpcgan.train import train
from hpcgan.world import init_world

ALONE = ControlChannel.alone()


@pytest.mark.parametrize("p", [np.full(8, 1 / 8), np.array([0.5, 0.3, 0.15, 0.05])])
def test_labels_come_interleaved_in_the_data_proportions_over_every_prefix(p):
    labels = eval_labels(np.arange(3000), p)
    counts = np.stack([np.cumsum(labels == c) for c in range(len(p))], axis=1)  # prefix counts
    expected = np.arange(1, 3001)[:, None] * p[None, :]
    assert np.abs(counts - expected).max() <= 3, "every prefix holds each label in its proportion"
    assert eval_labels(np.arange(1000, 1010), p).tolist() == labels[1000:1010].tolist(), "a label per index"


def test_label_proportions_follow_the_class_index_and_the_label_restriction():
    ds = ArrayDataset(torch.zeros(10, 1, 4, 4), torch.tensor([0] * 6 + [1] * 3 + [2]), num_classes=3)
    assert label_proportions(ds).tolist() == pytest.approx([0.6, 0.3, 0.1])
    assert label_proportions(ds.restrict_labels(2)).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert label_proportions(build_dataset("mog8")).tolist() == pytest.approx([1 / 8] * 8)


def test_own_label_samplers_partition_the_evaluation():
    p = np.full(5, 0.2)
    parts = [LabelSampler(lambda y: y.float()[:, None], p, own).indices(101, r, 2)
             for r, own in enumerate(({0, 2, 4}, {1, 3}))]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(101))
    assert set(eval_labels(parts[1], p).tolist()) == {1, 3}


def test_mixture_per_label_quality_and_statistics_add_up_over_disjoint_parts():
    mog = build_dataset("mog8:0.1")
    ev = MixtureEvaluator(mog)
    p = label_proportions(mog)

    def generate(labels):  # even labels at their own mode, odd labels at the next mode
        return mog.centers[torch.where(labels % 2 == 0, labels, (labels + 1) % 8)].clone()

    sampler = LabelSampler(generate, p)
    whole = ev.metrics(ev.statistics(sampler, np.arange(800), 800, ALONE), ALONE)
    assert [whole[f"hq_fraction_label{c}"] for c in range(8)] == [1, 0] * 4
    assert whole["labels_covered"] == 4 and whole["modes_covered"] == 4 and whole["hq_fraction"] == 1
    halves = [ev.statistics(sampler, idx, 800, ALONE) for idx in (np.arange(0, 800, 2), np.arange(1, 800, 2))]
    assert ev.metrics(add_stats(*halves), ALONE) == whole, "sums of disjoint parts = the whole evaluation"
    plain = ev.evaluate(lambda n: (generate(torch.arange(n) % 8), None), 800, MPI.COMM_SELF)
    assert "labels_covered" not in plain, "unconditional samples have no per-label quality"


@pytest.mark.parametrize("algo, steps, per_step", [("sync", 4, (1, 1)), ("cwgan", 3, (1, 5)), ("pcwgan", 16, (1, 5))])
def test_updates_per_model_are_recorded_for_every_algorithm(tmp_path, algo, steps, per_step):
    out = tmp_path / f"{algo}.h5"
    cfg = RunConfig().replace(algo={"algo": algo}, data={"data": "mog8", "batch_size": 8}, model={"width": 8},
                              run={"steps": steps, "out": str(out), "eval_samples": 200})
    if algo != "sync":
        cfg = cfg.replace(optim={"optimizer": "adam", "n_critic": 5, "lr": 1e-4})
    train(cfg, init_world(MPI.COMM_SELF, set_threads=False))
    run = load_run(out)
    assert run.steps["g_updates"][:, 0].tolist() == [per_step[0]] * steps
    assert run.steps["d_updates"][:, 0].tolist() == [per_step[1]] * steps
    g, d = run.updates()
    if algo == "pcwgan":  # 16 steps round-robin over 8 labels: 2 generator updates each
        assert g.tolist() == [2] * 8 and d.tolist() == [10] * 8 and run.updates_text() == "G 2 D 10 /label"
        assert run.updates_at(8) == 1.0 and "G 2 D 10 /label" in summarize([out]), "shown next to quality"
    else:
        assert (g.tolist(), d.tolist()) == ([steps * per_step[0]], [steps * per_step[1]])
    assert 0 < run.rank_seconds() < 60 and run.cpu_step_time() > 0


def test_a_damaged_labels_group_is_one_line_not_a_traceback(tmp_path):
    out = tmp_path / "pc.h5"
    cfg = RunConfig().replace(algo={"algo": "pcwgan"}, data={"data": "mog8", "batch_size": 8}, model={"width": 8},
                              optim={"optimizer": "adam"}, run={"steps": 8, "out": str(out), "eval_samples": 100})
    train(cfg, init_world(MPI.COMM_SELF, set_threads=False))
    with h5py.File(out, "a") as f:
        f["labels"].create_dataset("note", data="text")
    with pytest.raises(UnreadableResults, match="^/labels should hold number arrays$"):
        load_run(out)


def test_evaluations_during_training_leave_the_budget_clock(tmp_path, monkeypatch):
    """An evaluation that takes 1000 s (a fake clock) moves neither /steps/elapsed nor --budget."""
    import types

    import hpcgan.train as train_module

    offset = [0.0]
    real = train_module.time.perf_counter
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: real() + offset[0]))
    evaluate = train_module.Trainer.evaluate

    def slow(self, step):
        offset[0] += 1000.0
        return evaluate(self, step)
    monkeypatch.setattr(train_module.Trainer, "evaluate", slow)
    out = tmp_path / "sync.h5"
    cfg = RunConfig().replace(algo={"algo": "sync"}, data={"data": "mog8", "batch_size": 8}, model={"width": 8},
                              run={"steps": 6, "eval_every": 2, "eval_samples": 100, "out": str(out)})
    train(cfg, init_world(MPI.COMM_SELF, set_threads=False))
    run = load_run(out)
    assert run.eval["step"].tolist() == [2, 4, 6] and run.steps["elapsed"].max() < 1000
