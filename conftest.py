"""Repository-level pytest configuration: doctests of optional parts need their extras."""

import importlib.util

# percep_rag.fewshot needs open-flamingo, installed separately with --no-deps (see README);
# without it, its modules cannot even be imported for doctest collection.
collect_ignore_glob = [] if importlib.util.find_spec("open_flamingo") else ["percep_rag/fewshot/*"]
