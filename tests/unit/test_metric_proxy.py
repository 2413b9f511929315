"""Proxy classifier (train, save, load, checks), cached reference statistics and the image evaluator."""
import logging

import numpy as np
import pytest
import torch
from mpi4py import MPI

from hpcgan.data import ArrayDataset, build_dataset
from hpcgan.errors import UsageError
from hpcgan.data.writer import write_arrays
from hpcgan.metrics import MixtureEvaluator, build_evaluator
from hpcgan.metrics.image import ImageEvaluator
from hpcgan.metrics.proxy import Classifier, ProxyExtractor, accuracy, default_path, load_proxy, save_proxy, \
    split, train_proxy
from hpcgan.metrics.reference import reference_file, reference_stats
from hpcgan.metrics.stats import FeatureStats, fid

SELF = MPI.COMM_SELF


def toy(n=240, seed=0, size=16):
    """Two classes: the bright half of the image is the left one (0) or the right one (1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.full((n, 1, size, size), -1.0)
    x[y == 0, :, :, : size // 2] = 1.0
    x[y == 1, :, :, size // 2:] = 1.0
    x = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return ArrayDataset(x, y, num_classes=2)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HPCGAN_INCEPTION_WEIGHTS", raising=False)
    return tmp_path / "cache"


def random_proxy(ds, seed=0):
    torch.manual_seed(seed)
    return ProxyExtractor(Classifier(ds.spec.shape[0], ds.spec.num_classes, width=8), f"random{seed}")


def test_held_out_split_is_fixed_and_disjoint():
    tr, te = split(100)
    assert len(te) == 20 and not set(tr) & set(te) and np.array_equal(split(100)[1], te)


def test_proxy_learns_the_toy_task_and_round_trips_with_its_checksum(cache):
    ds = toy()
    net, acc = train_proxy(ds, epochs=10, batch_size=32, width=8)
    assert acc >= 0.95
    path = default_path(ds)
    digest = save_proxy(net, ds, acc, path)
    assert path.parent == cache and (cache / (path.name + ".sha256")).read_text().startswith(digest)
    ex = load_proxy(ds, data="toy")
    assert ex.meta["test_accuracy"] == acc and ex.digest == digest and ex.prefix == "proxy_"
    assert accuracy(ex.net, ds, split(len(ds.labels))[1]) == acc
    with pytest.raises(UsageError, match="another dataset"):
        load_proxy(toy(seed=1), path, data="toy")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UsageError, match="expected"):
        load_proxy(ds, data="toy")


def test_missing_proxy_says_how_to_train_one():
    with pytest.raises(UsageError, match="hpcgan eval --train-proxy --data toy ") as e:
        load_proxy(toy(), data="toy")
    assert "<" not in str(e.value)  # names the dataset, no placeholder


def test_reference_statistics_are_cached_per_extractor_and_dataset():
    ds, ex = toy(), random_proxy(toy())
    first = reference_stats(ds, ex, SELF)
    path = reference_file(ds, ex)
    assert path.is_file()
    feats = ex.embed(ds.images)[0]
    np.testing.assert_allclose(first.q, FeatureStats.of(feats).q, rtol=1e-10)
    mtime = path.stat().st_mtime_ns
    again = reference_stats(ds, ex, SELF)
    assert path.stat().st_mtime_ns == mtime and np.array_equal(again.q, first.q)
    assert reference_file(toy(seed=2), ex) != path and reference_file(ds, random_proxy(ds, 1)) != path


def test_reference_statistics_of_an_h5_dataset_cover_only_the_labels_it_trains_on(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (60, 1, 16, 16), dtype=np.uint8)
    write_arrays(tmp_path / "d.h5", False, images, np.arange(60) % 3, ["a", "b", "c"], {"source": "test", "split": "x"})
    full, first2 = build_dataset(f"h5:{tmp_path / 'd.h5'}"), build_dataset(f"h5:{tmp_path / 'd.h5'}", labels=2)
    ex = random_proxy(toy())
    assert reference_file(first2, ex) != reference_file(full, ex)
    ref2, ref = reference_stats(first2, ex, SELF), reference_stats(full, ex, SELF)
    assert (ref2.n, ref.n) == (40, 60)
    idx = torch.nonzero(full.labels < 2).flatten()
    want = FeatureStats.of(ex.embed(full.fetch(idx)[0])[0])
    np.testing.assert_allclose(ref2.q, want.q, rtol=1e-10)


def test_evaluator_on_the_real_images_themselves():
    ds = toy()
    ex = random_proxy(ds)
    order = iter(range(0, 240, 40))

    def sample(n):  # the whole dataset, in chunks, with its labels as the conditions
        i = next(order)
        return ds.images[i:i + n], ds.labels[i:i + n]

    ev = ImageEvaluator(ds, [ex], chunk=40)
    m = ev.evaluate(sample, 240, SELF)
    C = ds.spec.num_classes
    per_label = {f"proxy_{m}_label{c}" for m in ("fid", "class_consistency") for c in range(C)}
    assert set(m) == {"proxy_fid", "proxy_is", "proxy_is_std", "proxy_class_consistency", "proxy_labels_covered",
                      *per_label}
    assert abs(m["proxy_fid"]) < 1e-6
    assert all(abs(m[f"proxy_fid_label{c}"]) < 1e-6 for c in range(C)), "class c's images against class c's"
    logits = ex.embed(ds.images)[1]
    pred = logits.argmax(1)
    assert m["proxy_class_consistency"] == pytest.approx(float((pred == ds.labels).double().mean()))
    right = [float((pred[ds.labels == c] == c).double().mean()) for c in range(C)]
    assert [m[f"proxy_class_consistency_label{c}"] for c in range(C)] == pytest.approx(right)
    assert m["proxy_labels_covered"] == sum(r >= 0.5 for r in right)
    # IS as papers compute it, over 10 splits (sample i in split i mod 10): mean and std of exp(E KL)
    p = torch.softmax(logits, dim=1).numpy()
    scores = [np.exp(np.mean(np.sum(q * (np.log(q) - np.log(q.mean(axis=0, keepdims=True))), axis=1)))
              for q in (p[s::10] for s in range(10))]
    assert (m["proxy_is"], m["proxy_is_std"]) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-9)
    assert ImageEvaluator(ds, [ex], chunk=40, is_splits=1).evaluate(
        lambda n: (ds.images[:n], None), 240, SELF)["proxy_is_std"] == 0  # one split: the IS of all samples


def test_unconditional_samples_have_no_class_consistency_and_noise_scores_worse():
    ds = toy()
    ev = ImageEvaluator(ds, [random_proxy(ds)])
    g = torch.Generator().manual_seed(0)
    noise = ev.evaluate(lambda n: (torch.rand(n, 1, 16, 16, generator=g) * 2 - 1, None), 200, SELF)
    real = ev.evaluate(lambda n: (ds.images[:n], None), 200, SELF)
    assert "proxy_class_consistency" not in noise and real["proxy_fid"] < noise["proxy_fid"]


def test_build_evaluator_picks_what_is_available(caplog):
    assert isinstance(build_evaluator(build_dataset("mog8"), data="toy"), MixtureEvaluator)
    ds = toy()
    with caplog.at_level(logging.INFO, logger="hpcgan"):
        assert build_evaluator(ds, data="toy") is None
    assert "no proxy metrics" in caplog.text
    with pytest.raises(UsageError, match="--train-proxy"):
        build_evaluator(ds, ["proxy"], data="toy")
    with pytest.raises(UsageError, match="HPCGAN_INCEPTION_WEIGHTS"):
        build_evaluator(ds, ["inception"], data="toy")
    with pytest.raises(UsageError, match="valid: mog, proxy, inception"):
        build_evaluator(ds, ["kid"], data="toy")
    net = Classifier(1, 2, width=8)
    save_proxy(net, ds, 0.5, default_path(ds))
    ev = build_evaluator(ds, data="toy")
    assert isinstance(ev, ImageEvaluator) and [e.prefix for e in ev.extractors] == ["proxy_"]
