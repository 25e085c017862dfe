"""One router per resource: health, collections, search, classify, images (wired by ``create_app``)."""

__all__: list[str] = []
