"""The gLocal objective: global odd-one-out cross-entropy, local structure term, identity regulariser.

``(1 - alpha) L_global + alpha L_local + lam ||W - (tr W / p) I||_F^2``; see
:func:`~percep_rag.alignment.glocal.fit.fit_glocal` for each term.

>>> float(_eye_regularizer(2 * torch.eye(3)))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from percep_rag.alignment.glocal.config import GlocalFitConfig
from percep_rag.alignment.glocal.features import DeviceTriplets, device_features, standardize
from percep_rag.alignment.glocal.transform import ArrayLike, GlocalDimensionError
from percep_rag.errors import AlignmentError


def _embed(features: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = features @ weights
    return out if bias is None else out + bias


def _global_loss(
    features: torch.Tensor,
    triplets: DeviceTriplets,
    weights: torch.Tensor,
    bias: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """Weighted soft-label cross-entropy of the odd-one-out softmax over dot products."""
    n = len(triplets)
    if 3 * n < len(features):
        rows = torch.cat([triplets.anchor, triplets.left, triplets.right])
        za, zl, zr = _embed(features[rows], weights, bias).split(n)
    else:  # many triplets over few objects: embed every object once
        z = _embed(features, weights, bias)
        za, zl, zr = z[triplets.anchor], z[triplets.left], z[triplets.right]
    logits = torch.stack([(za * zr).sum(-1), (za * zl).sum(-1), (zl * zr).sum(-1)], dim=1) / temperature
    loss = -(triplets.labels * logits.log_softmax(dim=1)).sum(dim=1)
    return (triplets.weight * loss).sum() / triplets.weight.sum()


def _masked_log_softmax(similarities: torch.Tensor, tau: float) -> torch.Tensor:
    eye = torch.eye(len(similarities), dtype=torch.bool, device=similarities.device)
    return (similarities / tau).masked_fill(eye, float("-inf")).log_softmax(dim=1).masked_fill(eye, 0.0)


def _teacher(unit: torch.Tensor, tau: float) -> torch.Tensor:
    return (
        _masked_log_softmax(unit @ unit.T, tau)
        .exp()
        .masked_fill(torch.eye(len(unit), dtype=torch.bool, device=unit.device), 0.0)
    )


def _local_loss(
    student_in: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None, tau: float
) -> torch.Tensor:
    """Soft-label CE between the teacher's and the student's cosine softmax (diagonal out)."""
    student = F.normalize(_embed(student_in, weights, bias), dim=1)
    return -(teacher * _masked_log_softmax(student @ student.T, tau)).sum(dim=1).mean()


def _eye_regularizer(weights: torch.Tensor) -> torch.Tensor:
    """``||W - (tr W / p) I||_F^2``: distance to the nearest scaled identity."""
    p = weights.shape[0]
    scale = torch.trace(weights) / p
    return (weights - scale * torch.eye(p, dtype=weights.dtype, device=weights.device)).pow(2).sum()


@dataclass
class _Local:
    """Features for the local term: unit-length raw (teacher) and standardised (student input)."""

    unit: torch.Tensor
    student: torch.Tensor
    eval_teacher: torch.Tensor | None = None
    eval_rows: torch.Tensor | None = None
    full_teacher: torch.Tensor | None = None
    _order: torch.Tensor | None = None
    _cursor: int = 0

    def reset(self) -> None:
        """Start a new shuffled pass (a new fit on the same features)."""
        self._order, self._cursor = None, 0

    def next_rows(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """The next ``size`` rows of a shuffled pass over the local features (no repeats in a batch)."""
        if self._order is None or self._cursor + size > len(self._order):
            self._order = torch.randperm(len(self.unit), generator=generator).to(self.unit.device)
            self._cursor = 0
        rows = self._order[self._cursor : self._cursor + size]
        self._cursor += size
        return rows


class Objective:
    """The gLocal loss pieces over fixed device tensors, for training and validation."""

    def __init__(self, config: GlocalFitConfig, features: torch.Tensor, local: _Local | None):
        self.config = config
        self.features = features
        self.local = local

    def local_term(self, weights: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        local, size = self.local, self.config.local_batch_size
        assert local is not None
        if local.full_teacher is not None:
            return _local_loss(local.student, local.full_teacher, weights, bias, self.config.tau)
        rows = local.next_rows(size, generator)
        teacher = _teacher(local.unit[rows], self.config.tau)
        return _local_loss(local.student[rows], teacher, weights, bias, self.config.tau)

    def step_loss(
        self, batch: DeviceTriplets, weights: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise and the detached ``[total, global, local, regulariser]``."""
        alpha = self.config.alpha
        global_loss = _global_loss(self.features, batch, weights, bias, self.config.temperature)
        local_loss = self.local_term(weights, bias, generator) if alpha > 0 else torch.zeros((), device=weights.device)
        reg = _eye_regularizer(weights)
        total = (1 - alpha) * global_loss + alpha * local_loss + self.config.lam * reg
        # Kept on the device: one host sync per epoch instead of four per step.
        return total, torch.stack([total, global_loss, local_loss, reg]).detach()

    @torch.no_grad()
    def validation_loss(
        self, features: torch.Tensor, triplets: DeviceTriplets, weights: torch.Tensor, bias: torch.Tensor | None
    ) -> float:
        """``(1 - alpha) L_global(val) + alpha L_local(fixed local batch)``, no regulariser."""
        chunk = max(1, (1 << 22) // max(1, features.shape[1]))
        total, weight_sum = 0.0, float(triplets.weight.sum())
        for start in range(0, len(triplets), chunk):
            part = triplets.batch(torch.arange(start, min(start + chunk, len(triplets)), device=features.device))
            total += float(_global_loss(features, part, weights, bias, self.config.temperature)) * float(
                part.weight.sum()
            )
        loss = (1 - self.config.alpha) * total / weight_sum
        if self.config.alpha > 0 and self.local is not None:
            local = self.local
            assert local.eval_rows is not None and local.eval_teacher is not None
            loss += self.config.alpha * float(
                _local_loss(local.student[local.eval_rows], local.eval_teacher, weights, bias, self.config.tau)
            )
        return loss


def prepare_local(
    local_features: ArrayLike | None,
    train_rows: torch.Tensor,
    raw: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    config: GlocalFitConfig,
    device: torch.device,
    generator: torch.Generator,
) -> _Local | None:
    if config.alpha == 0:
        return None
    local_raw = raw[train_rows] if local_features is None else device_features(local_features, device, "local_features")
    if local_raw.ndim != 2 or local_raw.shape[1] != raw.shape[1]:
        raise GlocalDimensionError(f"local_features must be (m, {raw.shape[1]}), got shape {tuple(local_raw.shape)}")
    if len(local_raw) < 3:
        raise AlignmentError(f"the local term needs at least 3 local features, got {len(local_raw)}")
    unit = F.normalize(local_raw, dim=1)
    # gLocal fed raw ImageNet features to the student; we standardise them like every
    # input at inference so that training and use see the same map.
    student = standardize(local_raw, mean, std) if config.standardize_local else local_raw
    local = _Local(unit=unit, student=student)
    size = config.local_batch_size
    if size is None or size >= len(unit):
        local.full_teacher = _teacher(unit, config.tau)
        local.eval_rows = torch.arange(len(unit), device=device)
        local.eval_teacher = local.full_teacher
    else:
        local.eval_rows = torch.randperm(len(unit), generator=generator)[:size].to(device)
        local.eval_teacher = _teacher(unit[local.eval_rows], config.tau)
    return local
