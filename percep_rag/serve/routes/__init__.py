"""One router per resource: health, collections, search, classify, images (wired by :func:`~percep_rag.serve.create_app`)."""

__all__: list[str] = []
