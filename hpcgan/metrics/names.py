"""Every quality metric hpcgan records, by name: what it means and which way is better.

A registry (``METRICS``) so that reports can check a metric asked for by name (``hpcgan report
--metric NAME``) and say which way it improves. Metric names in results files are these names,
with a suffix for models other than the run's own (DPOSG's ``_rank0``) and, for per-label values,
``_label{c}`` (``hq_fraction_label3``). No torch or MPI here: the
analysis layer reads it on any machine.

Per dataset, reports compare every run on one metric: the first of :data:`HEADLINE` that the runs
of that dataset have (images: FID with the standard Inception-v3 when evaluated with it, else the
proxy classifier's FID; mixtures: modes covered).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    family: str          # "mog", "proxy" or "inception" (``hpcgan eval --metrics``)
    doc: str

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: Registry[Metric] = Registry("metric")


def _add(name: str, higher: bool, family: str, doc: str) -> None:
    METRICS.register(name)(Metric(name, higher, family, doc))


_add("modes_covered", True, "mog", "mixture modes holding >= 1% of the samples within 3 sigma")
_add("hq_fraction", True, "mog", "fraction of samples within 3 sigma of a mode")
_add("mode_kl", False, "mog", "KL(mode histogram || uniform) of the high-quality samples")
_add("labels_covered", True, "mog", "labels c with at least half of their conditional samples within 3 sigma "
     "of mode c (per-label metrics carry the suffix _label{c})")
_add("proxy_labels_covered", True, "proxy", "classes c whose conditional samples the proxy classifier calls c "
     "at least half of the time (per-class metrics carry the suffix _label{c})")
for _prefix, _family, _what in (("", "inception", "Inception-v3 (comparable with papers)"),
                                ("proxy_", "proxy", "hpcgan's proxy classifier (not comparable with papers)")):
    _add(f"{_prefix}fid", False, _family, f"Frechet distance to the real data's features, {_what}")
    _add(f"{_prefix}is", True, _family, f"Inception score, mean over splits, {_what}")
    _add(f"{_prefix}is_std", False, _family, f"standard deviation of the Inception score over splits, {_what}")
    _add(f"{_prefix}class_consistency", True, _family,
         f"fraction of conditional samples G(z, c) classified as c, {_what}")

#: The metric reports compare runs on, per dataset: the first of these the runs have.
HEADLINE = ("fid", "proxy_fid", "modes_covered")

#: Where a metric cannot improve any more: every run at this value leaves nothing to rank on
#: (modes_covered's ceiling is the dataset's mode count, known only with the dataset).
BEST = {"hq_fraction": 1.0, "mode_kl": 0.0, "fid": 0.0, "proxy_fid": 0.0}

#: The next finer metrics of the same evaluation, in order: a report ranks on them when every run
#: sits at the coarser one's best value (8 of 8 modes covered by every arm ranks nothing).
FINER = {"modes_covered": ("hq_fraction", "mode_kl"), "hq_fraction": ("mode_kl",),
         "is": ("fid",), "proxy_is": ("proxy_fid",), "class_consistency": ("fid",),
         "proxy_class_consistency": ("proxy_fid",)}


def base_name(name: str) -> str:
    """The registered metric behind a recorded name (``fid_rank0`` -> ``fid``; unknown: ``name``)."""
    head = name
    while head and head not in METRICS:
        head = head.rpartition("_")[0]
    return head or name


def headline(available: set[str]) -> str | None:
    """The metric to compare runs with: the first of :data:`HEADLINE` in ``available``, else the
    first registered metric in it (alphabetically), else None."""
    return next((m for m in HEADLINE if m in available), min((m for m in available if m in METRICS), default=None))
