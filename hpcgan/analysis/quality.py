"""Final quality of runs, compared on one metric per dataset, with its spread over seeds.

Every run of a dataset is compared on the same metric: the one asked for (``hpcgan report --metric``)
where the dataset's runs have it, else the dataset's headline metric (:func:`hpcgan.metrics.names.headline`: fid, else proxy_fid,
else modes_covered, the first its runs have). Each run contributes its final quality
(:meth:`~hpcgan.results.reader.RunResult.quality`: ``hpcgan eval`` of its final model when there is
one, else its last evaluation during training). Runs of one configuration (dataset, and the
:func:`~hpcgan.analysis.runs.label`: algorithm, compressor, topology, ranks; and the scaling mode of
a sweep) are its repeats (seeds): mean ± 95% Student-t CI over them. A finished run that lacks the
metric is listed with the reason and the command that would add it.

Saturation: a metric cannot rank configurations that all sit at its best possible value (sync and
DQGAN both covering 8 of 8 modes on every seed). It is saturated on a dataset when every run sits
there, or when two or more configurations do on every seed (the best ones tie, whatever the
others reach). The dataset is then compared on the next finer metric of the same evaluation
(:data:`hpcgan.metrics.names.FINER`: hq_fraction, then mode_kl; FID after IS); the table's
``notes`` say so and ``saturated`` keeps the coarse metric's name, so the report still shows it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from ..metrics.names import BEST, FINER, METRICS, Metric, base_name, headline
from ..results.reader import RunResult
from .runs import MARK, label, oversubscription
from .scaling import Estimate, repeat_of


@dataclass(frozen=True)
class QualityRow:
    dataset: str
    algo: str
    scaling: str
    ranks: int
    metric: str
    runs: list[RunResult]
    estimate: Estimate      # over the runs (seeds)
    label: str = ""         # algorithm, compressor, topology, ranks (runs.label)

    @property
    def oversubscribed(self) -> str | None:
        """Why the runs' ranks shared cores or GPUs (None if they did not)."""
        return next(filter(None, map(oversubscription, self.runs)), None)

    @property
    def name(self) -> str:
        """The label, with the scaling mode of a sweep and ⚠ when oversubscribed."""
        return _configuration(self.runs[0]) + (f" {MARK}" if self.oversubscribed else "")

    @property
    def evaluations(self) -> str:
        """How the values were obtained, e.g. "50000 samples (hpcgan eval)", with the IS splits for IS."""
        is_metric = base_name(self.metric) in ("is", "proxy_is")
        kinds = sorted({(q.samples, q.source, q.is_splits) for q in (r.quality() for r in self.runs)})
        return "; ".join(f"{n} samples ({source}" + (f", {splits} IS splits)" if is_metric else ")")
                         for n, source, splits in kinds)


@dataclass(frozen=True)
class QualityTable:
    metrics: dict[str, Metric]                    # dataset -> its metric
    rows: list[QualityRow]
    missing: list[tuple[RunResult, str]]          # finished runs left out, and why
    notes: dict[str, str] = field(default_factory=dict)   # dataset -> why its metric is not the usual one
    saturated: dict[str, str] = field(default_factory=dict)   # dataset -> the saturated metric it replaced


def choose_metrics(runs: list[RunResult], requested: str | None = None
                   ) -> tuple[dict[str, Metric], dict[str, str], dict[str, str]]:
    """(dataset -> the metric its runs are compared on, dataset -> note, dataset -> the saturated
    metric replaced): ``requested`` where a run of the dataset has it, else the dataset's headline
    metric (datasets with no metric at all are left out); a saturated choice gives way to the next
    finer metric, and the note says so."""
    if requested:
        METRICS.get(base_name(requested))  # a UsageError listing the valid names
    by_data: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        by_data[r.dataset].append(r)
    out, notes, replaced = {}, {}, {}
    for data, mine in by_data.items():
        have = set().union(*(r.quality().values for r in mine))
        name = requested if requested in have else headline(have)  # no run of the dataset has it: its headline
        if name is None:
            continue
        best, at_best = saturation(name, mine)
        if at_best:
            finer = next((f for f in FINER.get(name, ()) if f in have and not saturation(f, mine)[1]), None)
            value = f"{best:g}" + (f" of {best:g}" if base_name(name) == "modes_covered" else "")
            notes[data] = (f"{name} is saturated: {', '.join(at_best)} sit at its best value ({value}) on every "
                           "seed, so it cannot rank them; " + (
                               f"ranked on the next finer metric, {finer} ({name} is shown next to it)." if finer
                               else "no finer metric was recorded (`hpcgan eval` adds them)."))
            if finer:
                replaced[data], name = name, finer
        out[data] = Metric(name, *_info(name))
    return out, notes, replaced


def saturation(metric: str, runs: list[RunResult]) -> tuple[float, list[str]]:
    """(the metric's best possible value on the runs' dataset, the configurations that sit at it on
    every seed when that saturates the metric: all runs do, or two or more configurations do; else
    []). modes_covered's best is the dataset's mode count."""
    best = BEST.get(base_name(metric))
    if base_name(metric) == "modes_covered":
        best = _mode_count(runs[0])
    if best is None:
        return math.nan, []
    at: dict[str, list[bool]] = defaultdict(list)
    for r in runs:
        if metric in r.quality().values:
            at[_configuration(r)].append(abs(r.quality().values[metric] - best) <= 1e-9)
    top = sorted(c for c, hits in at.items() if all(hits))
    return best, (top if top and (len(top) >= 2 or len(top) == len(at)) else [])


def _configuration(run: RunResult) -> str:
    scaling = str(run.attrs.get("scaling", "none"))
    return label(run) + (f" ({scaling})" if scaling not in ("none", "") else "")


def _mode_count(run: RunResult) -> float | None:
    from ..data import build_dataset
    from ..errors import UsageError

    data = run.config.get("data", {})
    try:
        return float(build_dataset(data["data"], labels=int(data.get("labels", 0))).spec.num_classes)
    except (UsageError, KeyError, TypeError, OSError):
        return None


def _info(name: str) -> tuple[bool, str, str]:
    m = METRICS.get(base_name(name))
    return m.higher_is_better, m.family, m.doc


def quality_table(runs: list[RunResult], requested: str | None = None) -> QualityTable:
    finished = [r for r in runs if r.finished]
    metrics, notes, replaced = choose_metrics(finished, requested)
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    missing = []
    for r in finished:
        metric = metrics.get(r.dataset)
        have = r.quality().values
        if metric is not None and metric.name in have:
            groups[(r.dataset, str(r.attrs["algorithm"]), str(r.attrs["scaling"]), r.world_size, label(r))].append(r)
        else:
            missing.append((r, _why_missing(r, metric.name if metric else None, have)))
    rows = [QualityRow(d, a, s, n, metrics[d].name, sorted(g, key=repeat_of),
                       Estimate.of([r.quality().values[metrics[d].name] for r in g]), lab)
            for (d, a, s, n, lab), g in sorted(groups.items())]
    return QualityTable(metrics, rows, missing, notes, replaced)


def _why_missing(run: RunResult, metric: str | None, have: dict[str, float]) -> str:
    family = METRICS.get(base_name(metric)).family if metric else None
    how = f"`hpcgan eval {run.path}" + (f" --metrics {family}`" if family else "`")
    if not have:
        return f"no quality recorded (no metric was available when it ran); add it with {how}"
    return f"has {', '.join(sorted(have))} but not {metric}; add it with {how}"
