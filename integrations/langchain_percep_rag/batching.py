"""Batched retrieval that still traces one run per query, as ``BaseRetriever.invoke`` does.

LangChain's default ``batch`` calls ``invoke`` once per input, so an image retriever would
run one forward pass per query image. :func:`batch_runs` starts every query's run the way
``invoke`` starts it (same callbacks, tags, metadata and tracing parameters), searches all
the queries with one call, and ends each run with its own documents or error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list

__all__ = ["batch_runs"]

Search = Callable[[list[Any]], list[list[Document]]]


def batch_runs(
    retriever: BaseRetriever,
    inputs: Sequence[Any],
    config: RunnableConfig | Sequence[RunnableConfig] | None,
    search: Search,
    *,
    return_exceptions: bool = False,
) -> list[Any]:
    """``search(inputs)`` traced as one retriever run per input; a list like ``Runnable.batch``'s.

    ``search`` takes all the queries and returns their documents in order. When it fails
    for a batch of several, each query is searched alone so that the error ends the run of
    the query that caused it (and, with ``return_exceptions``, stands in its place).

    >>> from langchain_core.retrievers import BaseRetriever
    >>> class Echo(BaseRetriever):
    ...     def _get_relevant_documents(self, query, *, run_manager):
    ...         return [Document(page_content=query)]
    >>> shout = lambda queries: [[Document(page_content=query.upper())] for query in queries]
    >>> [found[0].page_content for found in batch_runs(Echo(), ["a", "b"], None, shout)]
    ['A', 'B']
    """
    queries = list(inputs)
    if not queries:
        return []
    runs = [
        _start_run(retriever, query, run_config)
        for query, run_config in zip(queries, get_config_list(config, len(queries)), strict=True)
    ]
    results: list[Any]
    try:
        results = list(search(queries))
    except Exception as error:
        results = [error] if len(queries) == 1 else [_search_one(search, query) for query in queries]
    for run, result in zip(runs, results, strict=True):
        if isinstance(result, Exception):
            run.on_retriever_error(result)
        else:
            run.on_retriever_end(result)
    if not return_exceptions:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


def _search_one(search: Search, query: Any) -> list[Document] | Exception:
    try:
        return search([query])[0]
    except Exception as error:
        return error


def _start_run(retriever: BaseRetriever, query: Any, config: RunnableConfig) -> CallbackManagerForRetrieverRun:
    # The same configuration BaseRetriever.invoke gives its run.
    config = ensure_config(config)
    manager = CallbackManager.configure(
        config.get("callbacks"),
        None,
        inheritable_tags=config.get("tags"),
        local_tags=retriever.tags,
        inheritable_metadata={**(config.get("metadata") or {}), **retriever._get_ls_params()},
        local_metadata=retriever.metadata,
    )
    return manager.on_retriever_start(
        None, query, name=config.get("run_name") or retriever.get_name(), run_id=config.pop("run_id", None)
    )
