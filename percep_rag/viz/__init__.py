"""Pictures of results, written as PNG.

* :func:`retrieval_grid` (:mod:`percep_rag.viz.grid`) - one row per query: the query,
  then its top-k neighbours under the base embedding, then under the aligned one;
  :func:`image_rows`: rows of any lengths (groups of duplicates).
* :func:`metric_bars` (:mod:`percep_rag.viz.bars`) - one panel per metric, a bar per
  method with 95% confidence intervals from per-seed values (needs matplotlib).

Intervals are :class:`percep_rag.evaluation.stats.Interval`; ``Estimate`` and
:func:`mean_ci` are its older names here.

>>> round(mean_ci([0.40, 0.42, 0.44, 0.41, 0.43]).half_width, 4)
0.0196
"""

from percep_rag.evaluation.stats import Interval
from percep_rag.evaluation.stats import Interval as Estimate
from percep_rag.evaluation.stats import mean_ci95 as mean_ci
from percep_rag.viz.bars import MetricTable, MetricValue, metric_bars
from percep_rag.viz.grid import GridLayout, image_rows, retrieval_grid

__all__ = [
    "Estimate",
    "GridLayout",
    "Interval",
    "MetricTable",
    "MetricValue",
    "image_rows",
    "mean_ci",
    "metric_bars",
    "retrieval_grid",
]
