"""Evaluation protocols of the paper, on percep-rag's vectors and collections.

>>> from percep_rag.evaluation import recall_at_k
>>> import numpy as np
>>> recall_at_k(np.eye(2), np.eye(2), [{"a"}, {"b"}], [{"a"}, {"b"}], ks=(1,)).recall
{1: 1.0}
"""

from percep_rag.evaluation.retrieval import (
    DEFAULT_KS,
    EvalFailure,
    EvaluationError,
    RecallAtK,
    RetrievalReport,
    RetrievalTask,
    evaluate_collection,
    evaluate_records,
    parse_instances,
    recall_at_k,
    recall_in_collection,
    retrieval_task,
)

__all__ = [
    "DEFAULT_KS",
    "EvalFailure",
    "EvaluationError",
    "RecallAtK",
    "RetrievalReport",
    "RetrievalTask",
    "evaluate_collection",
    "evaluate_records",
    "parse_instances",
    "recall_at_k",
    "recall_in_collection",
    "retrieval_task",
]
