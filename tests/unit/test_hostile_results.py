"""Results files that are damaged or crafted never make a reader (validate, summary, report, eval)
print a traceback or allocate what the file declares: each is one line, and skipped where a reader
reads several. The layout is checked against the schema before any data is read."""
from __future__ import annotations

import shutil
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpi4py import MPI

from hpcgan.algorithms import resolve_config
from hpcgan.analysis.report import load_runs
from hpcgan.analysis.summary import summarize
from hpcgan.errors import UsageError
from hpcgan.results.reader import UnreadableResults, load_run, unreadable
from hpcgan.results.schema import SCHEMA, validate
from hpcgan.train import Trainer
from hpcgan.world import init_world

#: Peak Python/numpy allocation any reader may make on these small files, whatever they declare.
MEMORY_BOUND = 64 << 20


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A real finished run: 6 steps (/steps) and 2 evaluations (/eval)."""
    out = tmp_path_factory.mktemp("good") / "good.h5"
    Trainer(resolve_config({"algo": "sync", "out": str(out), "steps": 6, "eval_every": 3, "eval_samples": 64,
                            "batch_size": 8, "width": 8, "flush_every": 2}),
            init_world(MPI.COMM_SELF, set_threads=False)).run()
    assert validate(str(out)) == []
    return out


def copy(good: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(good, folder / name))


def bounded(fn, *args):
    """``fn(*args)`` and its peak traced allocation in bytes."""
    tracemalloc.start()
    try:
        result = fn(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_steps_resized_to_ten_billion_rows_are_one_line_for_every_reader(good, tmp_path, capsys):
    bad = copy(good, tmp_path / "runs", "huge.h5")
    copy(good, tmp_path / "runs", "fine.h5")
    with h5py.File(bad, "a") as f:
        for ds in f["steps"].values():
            ds.resize(10**10, axis=0)
    problems, peak = bounded(validate, str(bad))
    assert peak < MEMORY_BOUND and problems and all("declares shape (10000000000, 1)" in p for p in problems)
    text, peak = bounded(summarize, [str(tmp_path / "runs")])
    assert peak < MEMORY_BOUND
    assert "fine" in text and f"skipped (unreadable): {bad}: /steps/" in text and "declares shape" in text
    runs, skipped, _ = load_runs([tmp_path / "runs"])
    assert [r.path.name for r in runs] == ["fine.h5"] and [p.name for p, _ in skipped] == ["huge.h5"]
    assert "declares shape" in unreadable(bad)


def test_attributes_of_the_wrong_type_are_skipped_by_summary_and_report(good, tmp_path):
    bad = copy(good, tmp_path / "runs", "typed.h5")
    copy(good, tmp_path / "runs", "fine.h5")
    with h5py.File(bad, "a") as f:
        f.attrs["world_size"] = "two"
    text = summarize([str(tmp_path / "runs")])
    assert f"skipped (unreadable): {bad}: root attribute 'world_size' should be int, is str" in text
    runs, skipped, _ = load_runs([tmp_path / "runs"])
    assert [r.path.name for r in runs] == ["fine.h5"] and "world_size" in skipped[0][1]
    assert "root attribute 'world_size' should be int, is str" in validate(str(bad))


def test_a_file_without_rows_is_one_line_in_summary_without_warnings(good, tmp_path):
    empty = copy(good, tmp_path / "runs", "empty.h5")
    with h5py.File(empty, "a") as f:
        for ds in f["steps"].values():
            ds.resize(0, axis=0)
    assert validate(str(empty)) == []  # a valid record of a run that took no step
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nanmedian of nothing was a RuntimeWarning and a nan row
        with pytest.raises(UsageError, match=f"no readable results files .*{empty}: no steps recorded"):
            summarize([str(empty)])
    with pytest.raises(UnreadableResults, match="^no steps recorded"):
        load_run(empty)


# -- property: any corruption of a valid file ----------------------------------------------------
NAMES = [*SCHEMA.root_attrs, "finished_at", "unknown"]
VALUES = st.one_of(st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=20),
                   st.binary(max_size=20), st.sampled_from(["{}", "[]", '{"data": {"labels": "x"}}', "null", "[{}]"]),
                   st.lists(st.integers(-5, 5), min_size=0, max_size=3).map(np.array))
DATASETS = ["steps/step", "steps/wall", "steps/bytes_sent", "steps/d_loss", "eval/step", "eval/mog_hq"]
MUTATIONS = st.one_of(
    st.tuples(st.just("attr"), st.sampled_from(NAMES), VALUES),
    st.tuples(st.just("delete attr"), st.sampled_from(NAMES)),
    st.tuples(st.just("resize"), st.sampled_from(DATASETS), st.sampled_from([0, 1, 7, 10**6, 10**9, 10**12])),
    st.tuples(st.just("replace"), st.sampled_from(DATASETS),
              st.sampled_from([(), (3,), (6, 2), (6, 1, 1), (0, 1)]), st.sampled_from(["f8", "i8", "S3", "u1"])),
    st.tuples(st.just("delete"), st.sampled_from([*DATASETS, "steps", "eval"])),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.99)),
)


def corrupt(path: Path, mutations: list) -> None:
    for m in mutations:
        if m[0] == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[:int(len(data) * m[1])])
            return
        try:
            f = h5py.File(path, "a")
        except OSError:
            return
        with f:
            kind, name = m[0], m[1]
            if kind == "attr":
                f.attrs[name] = m[2]
            elif kind == "delete attr":
                f.attrs.pop(name, None)
            elif name not in f:
                continue
            elif kind == "resize" and f[name].maxshape[0] is None:
                f[name].resize(m[2], axis=0)
            elif kind == "replace":
                del f[name]
                f.create_dataset(name, shape=m[2], dtype=m[3])
            elif kind == "delete":
                del f[name]


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(MUTATIONS, min_size=1, max_size=3))
def test_any_corruption_is_reported_in_lines_with_bounded_memory(good, mutations):
    with tempfile.TemporaryDirectory() as d:
        path = copy(good, Path(d), "run.h5")
        corrupt(path, mutations)

        def read_all():
            problems = validate(str(path))
            assert all(isinstance(p, str) and "\n" not in p for p in problems)
            why = unreadable(path)
            assert why is None or "\n" not in why
            try:
                text = summarize([str(path)])
                assert why is None and "run" in text
            except UsageError as e:
                assert why is not None and "\n" not in str(e)
            runs, skipped, _ = load_runs([path])
            assert len(runs) + len(skipped) <= 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of a run that is readable
            _, peak = bounded(read_all)
        assert peak < MEMORY_BOUND
