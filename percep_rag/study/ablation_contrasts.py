"""The ablation's contrasts between triplet kinds, and a verdict per claim of the paper's Figure 8.

A contrast is one kind's gain minus another's, per seed (paired by seed: the two arms share
the seed's base, test scenes, jitter and test triplets, so the base cancels), with a 95%
t-interval over seeds (:func:`~percep_rag.evaluation.stats.mean_ci95`). The paper's claims:

* mid-level (NIGHTS-like) judgments help counting, instance retrieval and 2AFC most: every
  ``mid-level - k`` contrast on that task is above 0;
* semantic (THINGS-like) judgments help least or hurt: on counting, instance retrieval and
  2AFC, every ``k - semantic`` contrast is above 0, or the semantic gain itself is below 0;
* low-level (BAPPS-like) and class-based judgments change little: the gain stays inside
  ``±`` :data:`LITTLE` of the task.

Each is judged per method: **holds** when the intervals say so, **contradicted** when an
interval says the opposite (excludes the claim), **unresolved** otherwise, with the number
that decides it.

>>> from percep_rag.study.ablation import AblationConfig, AblationResult, AblationSeed
>>> config = AblationConfig.small().model_copy(update={"kinds": ("mid-level", "semantic"), "methods": ("lora",)})
>>> seeds = [AblationSeed(s, {"recall@1": {"base": 0.4, "lora/mid-level": 0.5 + d, "lora/semantic": 0.4}})
...          for s, d in enumerate((0.0, 0.01, 0.02))]
>>> str(contrast(AblationResult(config, seeds), "instance retrieval", "lora", "mid-level", "semantic"))
'0.1100 ± 0.0248'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from percep_rag.evaluation.stats import Interval, mean_ci95
from percep_rag.study.ablation import TASKS, TWO_AFC, AblationResult

#: The tasks the claims are about (Figure 8's perceptual tasks and 2AFC).
CLAIM_TASKS = ("counting", "instance retrieval", TWO_AFC)
#: What "changes little" means per task: a gain inside ± this. Rates: 0.02 (2 points, the
#: sizing target of the contrasts); counting: 0.05 in MAE (3% of the default base's 1.69).
LITTLE = {"counting": 0.05, "instance retrieval": 0.02, "semantic kNN": 0.02, "few-shot": 0.02, TWO_AFC: 0.02}
Verdict = Literal["holds", "contradicted", "unresolved"]


def contrast_values(result: AblationResult, task: str, method: str, kind: str, other: str) -> list[float]:
    """Per seed, ``method/kind``'s gain minus ``method/other``'s on ``task`` (positive: ``kind`` helps more)."""
    gains, others = result.gains(task, f"{method}/{kind}"), result.gains(task, f"{method}/{other}")
    return [a - b for a, b in zip(gains, others, strict=True)]


def contrast(result: AblationResult, task: str, method: str, kind: str, other: str) -> Interval:
    """Mean paired contrast ``kind - other`` and its 95% t-interval over seeds."""
    values = contrast_values(result, task, method, kind, other)
    return mean_ci95(values, over=f"{len(values)} seeds ({result.varies})")


def contrast_pairs(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    """The pairs the contrast table shows: mid-level minus each other kind, then each other
    kind minus semantic (the two claims' contrasts), in ``kinds`` order, each pair once.

    >>> contrast_pairs(("mid-level", "low-level", "class", "semantic"))  # doctest: +NORMALIZE_WHITESPACE
    [('mid-level', 'low-level'), ('mid-level', 'class'), ('mid-level', 'semantic'),
     ('low-level', 'semantic'), ('class', 'semantic')]
    """
    pairs = [("mid-level", k) for k in kinds if "mid-level" in kinds and k != "mid-level"]
    pairs += [(k, "semantic") for k in kinds if "semantic" in kinds and k not in ("semantic", "mid-level")]
    return pairs


@dataclass(frozen=True)
class ClaimVerdict:
    """One claim for one method: the verdict, and the interval (with what it is of) deciding it."""

    claim: str
    method: str
    verdict: Verdict
    deciding: str
    interval: Interval | None

    def line(self, method_name: str) -> str:
        number = "" if self.interval is None else f": {self.deciding} {_signed(self.interval)}"
        return f"{self.claim} ({method_name}): **{self.verdict}**{number}"


def _signed(interval: Interval) -> str:
    if not interval.has_interval:
        return f"{interval.mean:+.4f} (1 seed: no interval)"
    return f"{interval.mean:+.4f} ± {interval.half_width:.4f}"


def _above_zero(result: AblationResult, task: str, method: str, pairs: list[tuple[str, str]]):
    """A claim that every pair's contrast is > 0 on ``task``: (verdict, deciding label, interval).

    Contradicted when one pair is surely < 0 (that one decides); holds when every lower end is
    > 0 (the smallest lower end decides); else unresolved (the least resolved pair decides)."""
    found = [(f"{a} - {b} on {task}", contrast(result, task, method, a, b)) for a, b in pairs]
    if not found or not all(i.has_interval for _, i in found):
        return "unresolved", "one seed: no interval", None
    against = [(label, i) for label, i in found if i.high < 0]
    if against:
        return ("contradicted", *min(against, key=lambda item: item[1].high))
    return ("holds" if all(i.low > 0 for _, i in found) else "unresolved", *min(found, key=lambda item: item[1].low))


def _combine(parts: list[tuple[str, str, Interval | None]]) -> tuple[str, str, Interval | None]:
    """A claim over several tasks: contradicted if one task contradicts it, holds if every task holds."""
    for verdict in ("contradicted", "unresolved"):
        chosen = [part for part in parts if part[0] == verdict]
        if chosen:
            return chosen[0]
    return min(parts, key=lambda part: part[2].low if part[2] is not None else 0.0)


def mid_level_most(result: AblationResult, task: str, method: str) -> ClaimVerdict:
    """ "Mid-level judgments help ``task`` most": every ``mid-level - k`` contrast > 0."""
    others = [k for k in result.config.kinds if k != "mid-level"]
    verdict, label, interval = _above_zero(result, task, method, [("mid-level", k) for k in others])
    return ClaimVerdict(f"mid-level helps {task} most", method, verdict, label, interval)


def semantic_least(result: AblationResult, method: str, tasks: tuple[str, ...] = CLAIM_TASKS) -> ClaimVerdict:
    """ "Semantic judgments help least or hurt" on every one of ``tasks``: per task, holds when
    every ``k - semantic`` contrast is > 0 or the semantic gain itself is surely < 0;
    contradicted when some other kind is surely below semantic and semantic does not surely hurt."""
    parts = []
    for task in tasks:
        others = [(k, "semantic") for k in result.config.kinds if k != "semantic"]
        verdict, label, interval = _above_zero(result, task, method, others)
        gain = result.gain(task, f"{method}/semantic")
        if verdict != "holds" and gain.has_interval and gain.high < 0:
            verdict, label, interval = "holds", f"semantic gain on {task}", gain
        parts.append((verdict, label, interval))
    verdict, label, interval = _combine(parts)
    return ClaimVerdict("semantic helps least or hurts", method, verdict, label, interval)


def changes_little(
    result: AblationResult, kind: str, method: str, tasks: tuple[str, ...] = CLAIM_TASKS
) -> ClaimVerdict:
    """ "``kind`` judgments change little": per task the gain's interval inside ``± LITTLE[task]``
    holds, outside it (``low > LITTLE`` or ``high < -LITTLE``) contradicts, else unresolved."""
    parts = []
    for task in tasks:
        gain, margin = result.gain(task, f"{method}/{kind}"), LITTLE[task]
        label = f"{kind} gain on {task} (little: ±{margin:g})"
        if not gain.has_interval:
            parts.append(("unresolved", label, None))
        elif gain.low > margin or gain.high < -margin:
            parts.append(("contradicted", label, gain))
        elif -margin < gain.low and gain.high < margin:
            parts.append(("holds", label, gain))
        else:
            parts.append(("unresolved", label, gain))
    # "holds" parts tie-break on the lower end; for this claim the widest decides instead.
    for verdict in ("contradicted", "unresolved"):
        chosen = [part for part in parts if part[0] == verdict]
        if chosen:
            verdict, label, interval = chosen[0]
            break
    else:
        verdict, label, interval = max(parts, key=lambda part: abs(part[2].mean) + part[2].half_width)
    name = {"low-level": "low-level", "class": "class-based"}.get(kind, kind)
    return ClaimVerdict(f"{name} changes little", method, verdict, label, interval)


def claim_verdicts(result: AblationResult) -> list[ClaimVerdict]:
    """Every claim the run's kinds allow, per method, in the paper's order."""
    kinds, verdicts = result.config.kinds, []
    for method in result.config.methods:
        if "mid-level" in kinds and len(kinds) > 1:
            verdicts += [mid_level_most(result, task, method) for task in CLAIM_TASKS]
        if "semantic" in kinds and len(kinds) > 1:
            verdicts.append(semantic_least(result, method))
        verdicts += [changes_little(result, kind, method) for kind in ("low-level", "class") if kind in kinds]
    return verdicts


#: The cells the default run is sized on: mid-level minus semantic, per method, on these tasks.
SIZED_TASKS = ("instance retrieval", TWO_AFC)
SIZED_PAIR = ("mid-level", "semantic")


def sized_cells(result: AblationResult) -> dict[tuple[str, str], Interval]:
    """``(task, method)`` -> the mid-level minus semantic contrast the run is sized on."""
    return {
        (task, method): contrast(result, task, method, *SIZED_PAIR)
        for task in SIZED_TASKS
        for method in result.config.methods
    }


__all__ = [
    "CLAIM_TASKS",
    "LITTLE",
    "SIZED_PAIR",
    "SIZED_TASKS",
    "TASKS",
    "ClaimVerdict",
    "changes_little",
    "claim_verdicts",
    "contrast",
    "contrast_pairs",
    "contrast_values",
    "mid_level_most",
    "semantic_least",
    "sized_cells",
]
