"""One router per resource: health, collections, search, classify, images."""
