"""The final model (results/model.py): parts joined from the ranks, sampled on any number of
ranks without communication, labels balanced and routed, written and read back safely."""
import h5py
import numpy as np
import pytest
import torch
from mpi4py import MPI

from hpcgan.config import RunConfig
from hpcgan.data import build_dataset
from hpcgan.errors import UsageError
from hpcgan.evaluate import _check_results_file
from hpcgan.gan.models import build_models
from hpcgan.metrics.sampling import eval_labels
from hpcgan.results.model import FinalModel, Generators, merge, read_final_model, results_of, save_final_model

CFG = RunConfig().replace(model={"width": 8, "z_dim": 2}, algo={"algo": "pcwgan"})
SPEC = build_dataset("mog8").spec


def constant_generator(value: float, conditional: bool = False) -> torch.nn.Module:
    """A generator whose every sample is (value, value): all weights zero, the last bias = value."""
    G = build_models(SPEC, CFG.model, conditional)[0]
    with torch.no_grad():
        for p in G.parameters():
            p.zero_()
        list(G.parameters())[-1].fill_(value)
    return G


def test_per_label_parts_join_and_labels_follow_the_evaluation_order_on_any_rank_count():
    parts = [{"": Generators.per_label({c: constant_generator(c) for c in range(8) if c % 2 == r})} for r in (0, 1)]
    model = FinalModel(CFG, 5, merge(parts), "digest", "test")
    p = np.full(8, 1 / 8)
    for size in (1, 3):
        samplers = [model.sampler("", SPEC, rank, proportions=p) for rank in range(size)]
        xs, ys = zip(*(s.draw(s.indices(100, rank, size)) for rank, s in enumerate(samplers)))
        x, y = torch.cat(xs), torch.cat(ys)
        assert torch.equal(x[:, 0], y.float()), "label c drawn from G_c"
        assert y.tolist() == eval_labels(np.arange(100), p).tolist(), "the same labels as every evaluation"


def test_single_and_conditional_models():
    single = FinalModel(CFG, 5, merge([{"": Generators.of(constant_generator(3.0), False)}]), "d", "test")
    x, y = single.sampler("", SPEC).draw(np.arange(10))
    assert y is None and torch.all(x == 3.0)
    cond = FinalModel(CFG, 5, merge([{"": Generators.of(constant_generator(1.0, True), True)}]), "d", "test")
    x, y = cond.sampler("", SPEC, 1).draw(np.arange(8, 16))
    assert y.tolist() == list(range(8)) and x.shape == (8, 2), "without proportions: label i mod C (grids)"


def test_parts_that_do_not_make_one_model_are_refused():
    g = {"": Generators.of(constant_generator(0.0), False)}
    with pytest.raises(UsageError, match="more than one rank"):
        merge([g, g])
    with pytest.raises(UsageError, match="no part holds the run's model"):
        merge([{"rank0": g[""]}])
    half = FinalModel(CFG, 5, merge([{"": Generators.per_label({0: constant_generator(0.0)})}]), "d", "folder")
    with pytest.raises(UsageError, match=r"lacks the generators of labels \[1, 2, 3, 4, 5, 6, 7\]"):
        half.sampler("", SPEC)


def test_written_folder_reads_back_with_weights_only_and_is_checked_against_its_results_file(tmp_path):
    results = tmp_path / "run.h5"
    parts = {"": Generators.per_label({c: constant_generator(c) for c in range(8)})}
    folder = save_final_model(results, parts, CFG, 7, MPI.COMM_SELF)
    assert folder == tmp_path / "run.h5.model" and [p.name for p in folder.iterdir()] == ["rank0.pt"]
    for target in (results, folder):
        model = read_final_model(target)
        assert model.step == 7 and model.cfg == CFG and set(model.models[""].weights) == set(range(8))
    assert results_of(folder) == results and results_of(tmp_path / "run.h5.ckpt" / "rank1.pt") == results
    save_final_model(results, {}, CFG, 9, MPI.COMM_SELF)  # a later run with nothing to keep replaces it whole
    with pytest.raises(UsageError, match="no final model"):
        read_final_model(results)

    save_final_model(results, parts, CFG, 7, MPI.COMM_SELF)
    finished_run(results, "pcwgan", 9)
    assert "stale model folder" in _check_results_file(results, read_final_model(results))
    finished_run(results, "pcwgan", 7)
    assert _check_results_file(results, read_final_model(results)) is None
    with h5py.File(results, "a") as f:
        f.attrs["world_size"] = "one"
    assert "root attribute 'world_size' should be int" in _check_results_file(results, read_final_model(results))


def finished_run(path, algo: str, rows: int) -> None:
    from helpers import schema_attrs
    from hpcgan.results.recorder import Recorder
    from hpcgan.results.schema import StepStats

    rec = Recorder(path, MPI.COMM_SELF, {**schema_attrs(), "algorithm": algo}, mode="force")
    for i in range(rows):
        rec.record(StepStats(step=i, d_loss=0.0, g_loss=0.0))
    rec.close(finished=True)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("content", ["crafted", "garbage", "a list", "no models", "bad kind"])
def test_a_crafted_or_damaged_final_model_is_one_line_and_runs_no_code(tmp_path, content):
    folder = tmp_path / "run.h5.model"
    folder.mkdir()
    good = {"format": 1, "config_json": RunConfig().to_json(), "step": 1, "world_size": 1, "rank": 0}
    if content == "garbage":
        (folder / "rank0.pt").write_bytes(b"PK\x03\x04 not a zip")
    else:
        torch.save({"crafted": {**good, "models": Payload(tmp_path / "ran")}, "a list": [1, 2],
                    "no models": good, "bad kind": {**good, "models": {"": {"kind": "x", "weights": {}}}}}[content],
                   folder / "rank0.pt")
    with pytest.raises(UsageError) as e:
        read_final_model(tmp_path / "run.h5")
    assert len(str(e.value).splitlines()) == 1 and "run.h5.model" in str(e.value)
    assert not (tmp_path / "ran").exists()
