"""Evaluation protocols of the paper, on percep-rag's vectors and collections.

``recall`` is the metric, ``neighbours`` the ranking and vote rules it shares with the
few-shot baselines and the study, ``retrieval`` runs the metric through an embedder or a
store, ``stats`` gives the confidence intervals and ``tables`` the markdown reports.

>>> from percep_rag.evaluation import recall_at_k
>>> import numpy as np
>>> recall_at_k(np.eye(2), np.eye(2), [{"a"}, {"b"}], [{"a"}, {"b"}], ks=(1,)).recall
{1: 1.0}
"""

from percep_rag.evaluation.errors import EvaluationError
from percep_rag.evaluation.neighbours import majority_vote, nearest
from percep_rag.evaluation.recall import DEFAULT_KS, RecallAtK, parse_instances, recall_at_k, recall_from_rankings
from percep_rag.evaluation.retrieval import (
    EvalFailure,
    RetrievalReport,
    RetrievalTask,
    evaluate_collection,
    evaluate_records,
    evaluate_records_in_collection,
    recall_in_collection,
    record_points,
    retrieval_task,
)
from percep_rag.evaluation.stats import Interval, mean_ci95, sampled_share_ci95, t_quantile, wilson_ci95

__all__ = [
    "DEFAULT_KS",
    "EvalFailure",
    "EvaluationError",
    "Interval",
    "RecallAtK",
    "RetrievalReport",
    "RetrievalTask",
    "evaluate_collection",
    "evaluate_records",
    "evaluate_records_in_collection",
    "majority_vote",
    "mean_ci95",
    "nearest",
    "parse_instances",
    "recall_at_k",
    "recall_from_rankings",
    "recall_in_collection",
    "record_points",
    "retrieval_task",
    "sampled_share_ci95",
    "t_quantile",
    "wilson_ci95",
]
