"""Final quality of runs, compared on one metric per dataset, with its spread over seeds.

Every run of a dataset is compared on the same metric: the one asked for (``hpcgan report --metric``)
where the dataset's runs have it, else the dataset's headline metric (:func:`hpcgan.metrics.names.headline`: fid, else proxy_fid,
else modes_covered, the first its runs have). Each run contributes its final quality
(:meth:`~hpcgan.results.reader.RunResult.quality`: ``hpcgan eval`` of its final model when there is
one, else its last evaluation during training). Runs of one (dataset, algorithm, scaling, ranks)
configuration are its repeats (seeds): mean ± 95% Student-t CI over them. A finished run that
lacks the metric is listed with the reason and the command that would add it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..metrics.names import METRICS, Metric, base_name, headline
from ..results.reader import RunResult
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


def choose_metrics(runs: list[RunResult], requested: str | None = None) -> dict[str, Metric]:
    """dataset -> the metric its runs are compared on: ``requested`` where a run of the dataset has
    it, else the dataset's headline metric (datasets with no metric at all are left out)."""
    if requested:
        METRICS.get(base_name(requested))  # a UsageError listing the valid names
    by_data: dict[str, set[str]] = defaultdict(set)
    for r in runs:
        by_data[r.dataset] |= set(r.quality().values)
    out = {}
    for data, have in by_data.items():
        name = requested if requested in have else headline(have)  # no run of the dataset has it: its headline
        if name is not None:
            out[data] = Metric(name, *_info(name))
    return out


def _info(name: str) -> tuple[bool, str, str]:
    m = METRICS.get(base_name(name))
    return m.higher_is_better, m.family, m.doc


def quality_table(runs: list[RunResult], requested: str | None = None) -> QualityTable:
    finished = [r for r in runs if r.finished]
    metrics = choose_metrics(finished, requested)
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    missing = []
    for r in finished:
        metric = metrics.get(r.dataset)
        have = r.quality().values
        if metric is not None and metric.name in have:
            groups[(r.dataset, str(r.attrs["algorithm"]), str(r.attrs["scaling"]), r.world_size)].append(r)
        else:
            missing.append((r, _why_missing(r, metric.name if metric else None, have)))
    rows = [QualityRow(d, a, s, n, metrics[d].name, sorted(g, key=repeat_of),
                       Estimate.of([r.quality().values[metrics[d].name] for r in g]))
            for (d, a, s, n), g in sorted(groups.items())]
    return QualityTable(metrics, rows, missing)


def _why_missing(run: RunResult, metric: str | None, have: dict[str, float]) -> str:
    family = METRICS.get(base_name(metric)).family if metric else None
    how = f"`hpcgan eval {run.path}" + (f" --metrics {family}`" if family else "`")
    if not have:
        return f"no quality recorded (no metric was available when it ran); add it with {how}"
    return f"has {', '.join(sorted(have))} but not {metric}; add it with {how}"
