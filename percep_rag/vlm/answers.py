"""Class-name answers as one right-padded batch: what both backends' cached scoring feeds the LM."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["answer_batch"]


def answer_batch(
    classes: Sequence[Sequence[int]], pad_id: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(feed, targets, mask)``, each ``(len(classes), width)`` on ``device``, for answers of >= 2 tokens.

    Row i feeds ``tokens[:-1]`` (the last token's prediction is not needed) and targets
    ``tokens[1:]``, right-padded with ``pad_id``: with causal attention, padding after a row's
    real tokens cannot change them; ``mask`` marks the real ones. Built on the CPU and moved
    once: one small copy instead of one per class.

    >>> feed, targets, mask = answer_batch([[5, 6, 7], [8, 9]], pad_id=0)
    >>> feed.tolist(), targets.tolist(), mask.tolist()
    ([[5, 6], [8, 0]], [[6, 7], [9, 0]], [[1, 1], [1, 0]])
    """
    n, width = len(classes), max(len(tokens) for tokens in classes) - 1
    feed = torch.full((n, width), pad_id, dtype=torch.long)
    targets = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, tokens in enumerate(classes):
        length = len(tokens) - 1
        feed[row, :length] = torch.tensor(tokens[:-1])
        targets[row, :length] = torch.tensor(tokens[1:])
        mask[row, :length] = 1
    return feed.to(device), targets.to(device), mask.to(device)
