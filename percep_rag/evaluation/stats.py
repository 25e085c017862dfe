"""Confidence intervals: over seeds (Student's t, as the paper's error bars) and over a
sample of queries (Wilson's score interval for a share).

:class:`Interval` is the one confidence-interval type of the package: reports print it,
:mod:`percep_rag.viz` draws it. Each interval says what varied (``over``): "3 seeds" means
the seed-to-seed variation of whatever the seeds change, not the sampling of test data.

>>> interval = mean_ci95([0.5, 0.6, 0.7])
>>> round(interval.mean, 3), round(interval.half_width, 3)
(0.6, 0.248)
>>> print(mean_ci95([0.5]))
0.5000 (1 value: no interval)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from percep_rag.evaluation.errors import EvaluationError

#: The standard normal's 97.5% quantile (the two-sided 95% z).
Z975 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    """A 95% interval around ``mean`` from ``n`` values; ``over`` says what varied.

    Symmetric (``mean ± half_width``) unless ``bounds`` gives its ends (Wilson's interval
    is not symmetric). ``half_width`` is NaN when there is no interval (a single seed): the
    spread of one value is unknown, not zero. A known value is :meth:`exact` (width 0).

    >>> interval = Interval(0.5, 0.1, 3)
    >>> str(interval), round(interval.low, 3), round(interval.high, 3)
    ('0.5000 ± 0.1000', 0.4, 0.6)
    >>> str(Interval(0.5, 0.1, 40, bounds=(0.38, 0.58)))
    '0.5000 (0.3800 to 0.5800)'
    """

    mean: float
    half_width: float
    n: int
    bounds: tuple[float, float] | None = None
    over: str = ""

    @property
    def has_interval(self) -> bool:
        """False for one value with no known spread (then ``low``/``high`` are NaN)."""
        return not math.isnan(self.half_width)

    @property
    def low(self) -> float:
        """The lower end (``mean - half_width`` when symmetric)."""
        return self.bounds[0] if self.bounds is not None else self.mean - self.half_width

    @property
    def high(self) -> float:
        """The upper end (``mean + half_width`` when symmetric)."""
        return self.bounds[1] if self.bounds is not None else self.mean + self.half_width

    @classmethod
    def exact(cls, value: float) -> Interval:
        """A single known value: a zero-width interval.

        >>> Interval.exact(2).high
        2.0
        """
        return cls(float(value), 0.0, 1)

    def __str__(self) -> str:
        if not self.has_interval:
            return f"{self.mean:.4f} ({self.n} value: no interval)"
        if self.bounds is not None:
            return f"{self.mean:.4f} ({self.low:.4f} to {self.high:.4f})"
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def mean_ci95(values: Sequence[float] | np.ndarray, *, over: str = "") -> Interval:
    """Mean and the half width of its two-sided 95% Student-t interval (the paper's
    "95% CI over 5 seeds"), with the exact t quantile for every ``n``; one value gives no
    interval (NaN half width, printed as such).

    The interval is over whatever varies between the values (``over`` names it, e.g.
    ``"3 seeds (world, base and fits)"``). An empty input or a NaN / infinite value is an
    :class:`~percep_rag.evaluation.errors.EvaluationError`.

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
        return Interval(mean, math.nan, 1, over=over)
    sd = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (n - 1))
    return Interval(mean, t_quantile(0.975, n - 1) * sd / math.sqrt(n), n, over=over)


def wilson_ci95(share: float, n: float, *, over: str = "queries") -> Interval:
    """Wilson's 95% score interval for a share (an accuracy) of ``n`` independent trials.

    ``n`` may be an effective sample size (not an integer), see :func:`sampled_share_ci95`.
    Unlike ``share ± 1.96 * sqrt(share * (1 - share) / n)`` it stays inside [0, 1] and
    keeps its coverage near 0 and 1.

    >>> interval = wilson_ci95(0.6125, 80)
    >>> round(interval.low, 4), round(interval.high, 4)
    (0.5029, 0.7118)
    """
    if not (n > 0 and math.isfinite(n)) or not 0.0 <= share <= 1.0:
        raise EvaluationError(f"a Wilson interval needs a share in [0, 1] and n > 0, got {share} and {n}")
    z2 = Z975 * Z975
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    spread = Z975 * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At share 0 (1) the lower (upper) end is 0 (1) exactly; rounding would leave 1e-17.
    low = 0.0 if share == 0.0 else max(0.0, centre - spread)
    high = 1.0 if share == 1.0 else min(1.0, centre + spread)
    return Interval(float(share), (high - low) / 2, int(round(n)), bounds=(low, high), over=over)


def sampled_share_ci95(
    shares: Sequence[float] | np.ndarray, *, sample: int, population: int, with_replacement: bool
) -> Interval:
    """The mean of per-seed shares (accuracies), each over ``sample`` queries drawn from the
    same ``population`` queries, with a 95% Wilson interval over queries.

    The seeds re-draw the queries from one fixed set, so their spread says how much the
    resamples differ, not how far the set's accuracy is from the task's: a t-interval over
    them shrinks with the number of seeds. Here the variance of the mean is that of a share
    of the ``population`` queries plus the resampling noise the seeds average::

        p(1-p) * (1/population + c / (sample * seeds)),  c = 1 (bootstrap) or (population - sample) / (population - 1)

    and Wilson's interval is taken with that effective ``n``. Every query once (one seed,
    ``sample == population``) is the plain Wilson interval of ``population`` trials.

    >>> one = sampled_share_ci95([0.6125], sample=80, population=80, with_replacement=False)
    >>> one.low == wilson_ci95(0.6125, 80).low
    True
    >>> sampled_share_ci95([0.6, 0.62, 0.64], sample=80, population=80, with_replacement=True).n  # 80 * 3 / 4
    60
    """
    array = np.asarray(shares, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise EvaluationError(f"need at least one finite share for a confidence interval, got {array.tolist()}")
    if not 0 < sample <= population:
        raise EvaluationError(f"need 0 < sample <= population, got {sample} and {population}")
    seeds = len(array)
    if with_replacement:
        resampling = 1.0
    else:
        resampling = (population - sample) / (population - 1) if population > 1 else 0.0
    n_effective = 1.0 / (1.0 / population + resampling / (sample * seeds))
    seed_count = "1 seed" if seeds == 1 else f"{seeds} seeds"
    over = f"{population} queries ({seed_count} of {sample}{' with replacement' if with_replacement else ''})"
    return wilson_ci95(float(np.clip(array.mean(), 0.0, 1.0)), n_effective, over=over)


def t_quantile(probability: float, dof: int) -> float:
    """Student's t quantile with ``dof`` degrees of freedom (``0.5 < probability < 1``), exact to
    about 1e-12 for every ``dof``: up to 500 the root of the t distribution's upper tail (the
    regularized incomplete beta function), beyond that the Cornish-Fisher series in 1/dof
    (Abramowitz & Stegun 26.7.5, its next term below 1e-13 there), where the beta function's
    log-gammas would lose digits. No table, no fall-back to the normal quantile.

    >>> round(t_quantile(0.975, 4), 4), round(t_quantile(0.975, 31), 4), round(t_quantile(0.975, 10**6), 4)
    (2.7764, 2.0395, 1.96)
    """
    if dof < 1:
        raise EvaluationError(f"a t quantile needs dof >= 1, got {dof}")
    if not 0.5 < probability < 1.0:
        raise EvaluationError(f"probability must be in (0.5, 1), got {probability}")
    if dof > _SERIES_DOF:
        return _cornish_fisher(_normal_quantile(probability), dof)
    tail = 1.0 - probability
    return _bisect(lambda t: _t_upper_tail(t, dof) > tail)


#: Beyond this many degrees of freedom :func:`t_quantile` uses the series.
_SERIES_DOF = 500


def _bisect(below: Callable[[float], bool]) -> float:
    """The point where ``below(x)`` turns false, for x >= 0 (to the last float)."""
    low, high = 0.0, 1.0
    while below(high):
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if below(middle):
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _normal_quantile(probability: float) -> float:
    tail = 1.0 - probability
    return _bisect(lambda z: 0.5 * math.erfc(z / math.sqrt(2.0)) > tail)


def _cornish_fisher(z: float, dof: int) -> float:
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


def _t_upper_tail(t: float, dof: int) -> float:
    """P(T > t) for t >= 0: half the regularized incomplete beta I_{dof/(dof+t^2)}(dof/2, 1/2)."""
    # 1 - x is passed as computed, not by subtraction: for a large dof x is within 1e-9 of 1.
    return 0.5 * _regularized_beta(dof / (dof + t * t), t * t / (dof + t * t), dof / 2.0, 0.5)


def _regularized_beta(x: float, one_minus_x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (Lentz), on the side of x where it converges fast."""
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(one_minus_x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(one_minus_x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return result
