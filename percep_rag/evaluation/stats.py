"""Means with 95% confidence intervals over seeds (Student's t, as the paper's error bars).

:class:`Interval` is the one confidence-interval type of the package: reports print it,
:mod:`percep_rag.viz` draws it.

>>> interval = mean_ci95([0.5, 0.6, 0.7])
>>> round(interval.mean, 3), round(interval.half_width, 3)
(0.6, 0.248)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from percep_rag.evaluation.errors import EvaluationError

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (no scipy needed).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """``mean ± half_width`` over ``n`` values (``half_width`` is 0 for a single value).

    >>> interval = Interval(0.5, 0.1, 3)
    >>> str(interval), round(interval.low, 3), round(interval.high, 3)
    ('0.5000 ± 0.1000', 0.4, 0.6)
    """

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        """The lower end, ``mean - half_width``."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """The upper end, ``mean + half_width``."""
        return self.mean + self.half_width

    @classmethod
    def exact(cls, value: float) -> Interval:
        """A single known value: a zero-width interval.

        >>> Interval.exact(2).high
        2.0
        """
        return cls(float(value), 0.0, 1)

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def mean_ci95(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean and the half width of its two-sided 95% Student-t interval (the paper's
    "95% CI over 5 seeds"); one value gives a zero-width interval.

    An empty input or a NaN / infinite value is an :class:`~percep_rag.evaluation.errors.EvaluationError`.

    >>> interval = mean_ci95([0.40, 0.42, 0.44, 0.41, 0.43])
    >>> round(interval.mean, 3), round(interval.half_width, 4)
    (0.42, 0.0196)
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise EvaluationError(f"need at least one finite value for a confidence interval, got {array.tolist()}")
    numbers = array.tolist()
    n = len(numbers)
    mean = sum(numbers) / n
    if n == 1:
        return Interval(mean, 0.0, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return Interval(mean, t * sd / math.sqrt(n), n)
