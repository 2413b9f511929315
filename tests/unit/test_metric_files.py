"""Checksummed weights: the Inception loader (on a generated random-weights file) and the proxy file."""
import hashlib

import pytest
import torch

from hpcgan.errors import UsageError
from hpcgan.metrics import inception
from hpcgan.metrics.files import sha256_file, verify_sha256
from hpcgan.metrics.inception import INCEPTION_SHA256, InceptionExtractor


def test_sha256_check_rejects_a_modified_file_and_a_missing_one(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    assert sha256_file(f) == good and verify_sha256(f, good, "w", "how") == f
    f.write_bytes(b"weightS" + f.read_bytes()[7:])
    with pytest.raises(UsageError, match=f"expected {good}.*how"):
        verify_sha256(f, good, "w", "how")
    with pytest.raises(UsageError, match="not found.*how"):
        verify_sha256(tmp_path / "nope", good, "w", "how")


def test_published_inception_digest_matches_its_file_name():
    # torch.hub names files <name>-<first 8 hex digits of the SHA-256>.pth
    assert len(INCEPTION_SHA256) == 64 and inception.INCEPTION_FILE.endswith(f"-{INCEPTION_SHA256[:8]}.pth")


def test_inception_without_weights_says_how_to_stage_them(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    with pytest.raises(UsageError, match=f"{inception.WEIGHTS_ENV}.*sha256sum"):
        InceptionExtractor(inception.weights_path(None))
    with pytest.raises(UsageError, match="not found"):
        InceptionExtractor(tmp_path / inception.INCEPTION_FILE)
    monkeypatch.setenv(inception.WEIGHTS_ENV, "/from/env.pth")
    assert inception.weights_path(None) == "/from/env.pth" and inception.weights_path("/flag") == "/flag"


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A randomly initialised torch-fidelity Inception-v3 saved as a weights file, and its SHA-256."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})           # no download, ever
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("x", ["2048"])
    mp.undo()
    path = tmp_path_factory.mktemp("inception") / inception.INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path, sha256_file(path)


def test_inception_loads_a_checksummed_file_and_gives_pool3_features(random_inception):
    path, digest = random_inception
    ex = InceptionExtractor(path, expected_sha256=digest)
    x = torch.rand(1, 1, 32, 32) * 2 - 1                      # grayscale is expanded to RGB
    feats, logits = ex.embed(x)
    assert feats.shape == (1, 2048) and logits.shape == (1, 1008) and feats.dtype == torch.float64
    assert torch.isfinite(feats).all() and feats.abs().sum() > 0


def test_inception_rejects_a_file_that_is_not_the_published_one(random_inception):
    path, _ = random_inception
    with pytest.raises(UsageError, match=f"expected {INCEPTION_SHA256}"):
        InceptionExtractor(path)
