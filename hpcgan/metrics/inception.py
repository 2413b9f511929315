"""The standard Inception-v3 for IS and FID, through torch-fidelity, from a local checksummed file.

Network and preprocessing are torch-fidelity's ``FeatureExtractorInceptionV3``: 2015-12-05
TensorFlow weights, uint8 RGB input resized to 299x299 as TF 1.x does, pool3 features (2048-d) for
FID and the unbiased 1008-way logits for IS. Weights are read only from ``--inception-weights PATH``
or $HPCGAN_INCEPTION_WEIGHTS; the file's SHA-256 must be :data:`INCEPTION_SHA256`; nothing is ever
downloaded (compute nodes are offline).

:data:`INCEPTION_SHA256` is the published digest of ``weights-inception-2015-12-05-6726825d.pth``
(95,628,359 bytes); torch.hub's convention puts the first 8 hex digits of the SHA-256 in the file
name, which matches. The same bytes are distributed as pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import UsageError
from .features import Extractor
from .files import verify_sha256

INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
WEIGHTS_ENV = "HPCGAN_INCEPTION_WEIGHTS"

HOW_TO_STAGE = (f"Download {INCEPTION_URL} on a machine with internet access (compute nodes are offline), "
                f"copy it to the cluster and pass --inception-weights PATH or set {WEIGHTS_ENV}=PATH. "
                f"Check it with: sha256sum {INCEPTION_FILE}  (expected {INCEPTION_SHA256}).")


def weights_path(explicit: str | None = None) -> str | None:
    """The weights file named by the flag, else by $HPCGAN_INCEPTION_WEIGHTS, else None."""
    return explicit or os.environ.get(WEIGHTS_ENV) or None


class InceptionExtractor(Extractor):
    """IS / FID features of the TF Inception-v3; ``expected_sha256`` is overridable only for tests."""

    prefix = ""
    dim = 2048
    num_classes = 1008

    def __init__(self, path: str | Path | None, device: torch.device = torch.device("cpu"),
                 expected_sha256: str = INCEPTION_SHA256):
        if not path:
            raise UsageError(f"IS/FID need the Inception-v3 weights file. {HOW_TO_STAGE}")
        verify_sha256(path, expected_sha256, "Inception-v3 weights", HOW_TO_STAGE)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise UsageError(f"IS/FID need torch-fidelity (pip install torch-fidelity): {e}") from None
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(path)).to(device)
        self.digest, self.device = expected_sha256, device

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] == 1:  # grayscale -> RGB
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise UsageError(f"Inception-v3 needs 1- or 3-channel images, got {x.shape[1]} channels")
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1,1] -> {0..255}
        feats, logits = self.net(u8)
        return feats, logits
