"""Fitting a gLocal transform on human triplets: :func:`fit_glocal` and its training loop."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from percep_rag.alignment.glocal.config import FitReport, GlocalFitConfig
from percep_rag.alignment.glocal.features import DeviceTriplets, TripletFeatures, device_features, standardize
from percep_rag.alignment.glocal.losses import Objective, prepare_local
from percep_rag.alignment.glocal.search import SEARCHED, GlocalSearch, best_row, grid_configs, grid_row
from percep_rag.alignment.glocal.transform import ArrayLike, GlocalDimensionError, GlocalTransform, utc_timestamp
from percep_rag.alignment.metrics import odd_one_out_accuracy, two_afc_from_embeddings
from percep_rag.devices import resolve_device
from percep_rag.errors import AlignmentError
from percep_rag.precision import autocast, resolve_precision


def fit_glocal(
    train: TripletFeatures | tuple[Any, ...],
    *,
    local_features: ArrayLike | None = None,
    config: GlocalFitConfig | None = None,
    val: TripletFeatures | tuple[Any, ...] | None = None,
    backbone: str | None = None,
    pooling: str | None = None,
    progress: bool = True,
    search: GlocalSearch | bool = True,
) -> tuple[GlocalTransform, FitReport]:
    """Fit a gLocal transform on human triplets.

    Minimises ``(1 - alpha) L_global + alpha L_local + lam ||W - (tr W / p) I||_F^2``:

    - ``L_global``: cross-entropy of the odd-one-out softmax over dot products of the
      transformed standardised features (temperature ``config.temperature``, 1 in gLocal).
      A 2AFC triplet ``(anchor, left, right)`` with vote share ``t`` for RIGHT has the
      target distribution ``t`` on pair (anchor, right), ``1 - t`` on (anchor, left) and 0
      on (left, right); for THINGS (``t = 1``) that is gLocal's loss. With
      ``soft_targets="majority"`` the majority gets the label and ``|2t - 1|`` the weight.
    - ``L_local``: soft-label cross-entropy between the cosine softmax (temperature
      ``tau``, diagonal removed) of the raw ``local_features`` and of their transforms;
      it keeps the local structure of the base space. Default local features: the
      training images themselves.

    ``train`` / ``val`` are :class:`TripletFeatures`, ``(features, TripletSet[, refs])`` or
    ``(features, (N, 3) odd-one-out array)``. Features are standardised by the scalar
    mean/std of the training triplets' images (stored in the transform). With ``val``,
    training stops early on the validation loss (patience, ``min_epochs``) and the BEST
    epoch's weights are kept (gLocal's own code kept the last); epoch 0 (the start) counts,
    so with ``init="identity"`` the result is never worse on val than the base ranking.
    Without ``val`` all ``epochs`` run and the last weights are kept.

    ``search`` (default ``True``: :class:`~percep_rag.alignment.glocal.search.GlocalSearch`'s
    grid) chooses ``alpha``, ``lam``, ``temperature`` and ``lr`` on the validation split, as
    gLocal did: every grid point is fitted from the same start and random stream on the same
    device tensors, and the one with the best validation 2AFC (first of equals) is returned.
    Values the config sets explicitly are kept, not searched; without ``val`` or with
    ``search=False`` the config is fitted as it is. The grid's rows and the chosen values are
    in ``report.search`` / ``report.chosen`` and the transform's ``metadata["search"]``.

    >>> rng = np.random.default_rng(0)
    >>> features, triplets = rng.normal(size=(12, 4)), rng.permutation(12)[:9].reshape(3, 3)
    >>> config = GlocalFitConfig(epochs=2, device="cpu")
    >>> transform, report = fit_glocal((features, triplets), config=config, backbone="x", progress=False)
    >>> transform.in_dim, report.epochs_run, transform.metadata["backbone"]
    (4, 2, 'x')
    """
    config = config or GlocalFitConfig()
    started = time.perf_counter()
    train_data = TripletFeatures.coerce(train)
    val_data = None if val is None else TripletFeatures.coerce(val)
    device = resolve_device(config.device)
    grid = GlocalSearch() if search is True else (search or None)
    points = (
        [config]
        if grid is None or val_data is None or not len(val_data)
        else grid_configs(config, grid, dim=train_data.dim)
    )
    generator = torch.Generator().manual_seed(config.seed)  # our own: the global RNG is left alone
    # Built once for every grid point: the local term exists if any point uses it.
    build_config = config.model_copy(update={"alpha": max(point.alpha for point in points)})
    data = _FitData.build(train_data, val_data, local_features, build_config, device, generator)
    start_state = generator.get_state()
    best: tuple[GlocalTransform, FitReport] | None = None
    rows: list[dict[str, Any]] = []
    failure: AlignmentError | None = None
    for point in points:
        generator.set_state(start_state)  # every point starts from the same random stream
        try:
            transform, report = _fit_point(data, point, generator, train_data, val_data, progress)
        except AlignmentError as error:
            if len(points) == 1:
                raise
            failure = failure or error
            rows.append(grid_row(point, val_2afc=None, best_epoch=None, error=str(error)))
            continue
        rows.append(grid_row(point, val_2afc=report.val_2afc_after, best_epoch=report.best_epoch))
        if best is None or best_row(rows) == len(rows) - 1:
            best = transform, report
    if best is None:
        raise failure or AlignmentError("no grid point could be fitted")
    transform, report = best
    if len(points) > 1:
        report.search = rows
        report.chosen = {name: value for name, value in rows[best_row(rows)].items() if name in SEARCHED}
    chosen = points[best_row(rows)] if len(points) > 1 else config
    transform.metadata.update(_fit_metadata(chosen, report, backbone, pooling))
    report.seconds = time.perf_counter() - started
    return transform, report


def _fit_point(
    data: _FitData,
    config: GlocalFitConfig,
    generator: torch.Generator,
    train_data: TripletFeatures,
    val_data: TripletFeatures | None,
    progress: bool,
) -> tuple[GlocalTransform, FitReport]:
    """One setting fitted from the identity (or gLocal) start on the shared device tensors."""
    local = data.objective.local if config.alpha > 0 else None
    if local is not None:
        local.reset()
    data = replace(data, objective=Objective(config, data.objective.features, local))
    weights, bias = _initial_params(data.dim, float(data.mean), float(data.std), config, data.raw.device)
    report = FitReport(
        lr=config.learning_rate(data.dim),
        n_train=len(data.triplets),
        n_val=0 if data.val_triplets is None else len(data.val_triplets),
        n_local=0 if local is None else len(local.unit),
        device=str(data.raw.device),
    )
    best_weights, best_bias = _train(data, weights, bias, report.lr, config, report, generator, progress)
    bias_out = None if best_bias is None else best_bias.cpu()
    transform = GlocalTransform(best_weights.cpu(), bias_out, data.mean.numpy(), data.std.numpy(), {})
    _score(report, transform, data, train_data, val_data)
    return transform, report


@dataclass
class _FitData:
    """Everything a fit reads, on the device: standardised features, triplets, local term."""

    raw: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    triplets: DeviceTriplets
    objective: Objective
    val_raw: torch.Tensor | None
    val_features: torch.Tensor | None
    val_triplets: DeviceTriplets | None

    @property
    def dim(self) -> int:
        return int(self.raw.shape[1])

    @classmethod
    def build(
        cls,
        train: TripletFeatures,
        val: TripletFeatures | None,
        local_features: ArrayLike | None,
        config: GlocalFitConfig,
        device: torch.device,
        generator: torch.Generator,
    ) -> _FitData:
        if len(train) == 0:
            raise AlignmentError("no training triplets")
        if val is not None and val.dim != train.dim:
            raise GlocalDimensionError(f"val features are {val.dim}-d, train features {train.dim}-d")
        raw = device_features(train.features, device, "train features")
        rows = np.unique(np.concatenate([train.anchor, train.left, train.right]))
        train_rows = torch.as_tensor(rows, device=device)
        used = raw[train_rows].double()
        mean, std = used.mean().cpu(), used.std(correction=0).cpu()  # numpy's X.mean(), X.std() (ddof=0)
        if not float(std) > 0:
            raise AlignmentError("the training features are constant (std 0); cannot standardise")
        triplets = DeviceTriplets.build(train, config.soft_targets, device)
        if len(triplets) == 0:
            raise AlignmentError("every training triplet has weight 0 (50/50 votes with soft_targets='majority'?)")
        local = prepare_local(local_features, train_rows, raw, mean, std, config, device, generator)
        objective = Objective(config, standardize(raw, mean, std), local)
        val_raw = val_features = val_triplets = None
        if val is not None:
            val_raw = device_features(val.features, device, "val features")
            val_features = standardize(val_raw, mean, std)
            val_triplets = DeviceTriplets.build(val, config.soft_targets, device)
            val_triplets = val_triplets if len(val_triplets) else None
        return cls(raw, mean, std, triplets, objective, val_raw, val_features, val_triplets)

    def validation_loss(self, weights: torch.Tensor, bias: torch.Tensor | None) -> float | None:
        if self.val_triplets is None:
            return None
        assert self.val_features is not None
        return self.objective.validation_loss(self.val_features, self.val_triplets, weights, bias)


def _make_optimizer(params: list[torch.Tensor], lr: float, config: GlocalFitConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum)


def _train_epoch(
    data: _FitData,
    weights: torch.Tensor,
    bias: torch.Tensor | None,
    optimizer: torch.optim.Optimizer,
    config: GlocalFitConfig,
    generator: torch.Generator,
) -> np.ndarray:
    """One shuffled pass over the triplets; the mean ``[total, global, local, regulariser]``."""
    params = [weights] if bias is None else [weights, bias]
    count = len(data.triplets)
    batch_size = config.triplet_batch_size or count
    order = torch.randperm(count, generator=generator).to(data.raw.device)
    sums = torch.zeros(4, device=data.raw.device)
    dtype = resolve_precision(config.precision, data.raw.device)
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        with autocast(data.raw.device, dtype):
            total, parts = data.objective.step_loss(data.triplets.batch(index), weights, bias, generator)
        total, parts = total.float(), parts.float()
        total.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        sums += len(index) * parts
    return (sums / count).cpu().numpy()


def _train(
    data: _FitData,
    weights: torch.Tensor,
    bias: torch.Tensor | None,
    lr: float,
    config: GlocalFitConfig,
    report: FitReport,
    generator: torch.Generator,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the epochs with early stopping; return the best (with val) or last weights."""
    optimizer = _make_optimizer([weights] if bias is None else [weights, bias], lr, config)

    def snapshot() -> tuple[torch.Tensor, torch.Tensor | None]:
        return weights.detach().clone(), None if bias is None else bias.detach().clone()

    best = snapshot()
    best_loss = data.validation_loss(weights, bias)
    if best_loss is not None:
        report.val_loss.append(best_loss)
    bar = _progress(config.epochs, progress)
    try:
        for epoch in range(1, config.epochs + 1):
            means = _train_epoch(data, weights, bias, optimizer, config, generator)
            if not np.isfinite(means).all():
                raise AlignmentError(f"the loss diverged at epoch {epoch} (lower lr or enable grad_clip)")
            for values, value in zip(
                (report.train_loss, report.train_global_loss, report.train_local_loss, report.regularizer),
                means.tolist(),
                strict=True,
            ):
                values.append(value)
            report.epochs_run = epoch
            bar.update(1)
            val_loss = data.validation_loss(weights, bias)
            bar.set_postfix(loss=f"{means[0]:.4f}", val="-" if val_loss is None else f"{val_loss:.4f}")
            if val_loss is None or best_loss is None:
                best, report.best_epoch = snapshot(), epoch
                continue
            report.val_loss.append(val_loss)
            if val_loss < best_loss - config.min_delta:
                best_loss, best, report.best_epoch = val_loss, snapshot(), epoch
            elif epoch >= config.min_epochs and epoch - report.best_epoch >= config.patience:
                report.stopped_early = True
                break
    finally:
        bar.close()
    return best


def _fit_metadata(config: GlocalFitConfig, report: FitReport, backbone: str | None, pooling: str | None) -> dict:
    metadata: dict[str, Any] = {
        "method": "glocal",
        "source": "fit_glocal",
        "created": utc_timestamp(),
        "hyperparameters": config.model_dump(),
        "fit": {
            "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run,
            "lr": report.lr,
            "n_train": report.n_train,
            "n_val": report.n_val,
        },
    }
    if report.search:
        metadata["search"] = {"chosen": report.chosen, "grid": report.search}
    metadata.update({key: value for key, value in (("backbone", backbone), ("pooling", pooling)) if value is not None})
    return metadata


@torch.no_grad()
def _score(
    report: FitReport, transform: GlocalTransform, data: _FitData, train: TripletFeatures, val: TripletFeatures | None
) -> None:
    """Fill the before/after accuracies of the report."""
    scores = _split_scores(data.raw, transform.transform(data.raw), train)
    report.train_accuracy_before, report.train_accuracy_after, report.train_2afc_before, report.train_2afc_after = (
        scores
    )
    if val is not None and len(val) and data.val_raw is not None:
        scores = _split_scores(data.val_raw, transform.transform(data.val_raw), val)
        report.val_accuracy_before, report.val_accuracy_after, report.val_2afc_before, report.val_2afc_after = scores


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="gLocal", unit="epoch", disable=not enabled, leave=False)


def _initial_params(
    p: int, mean: float, std: float, config: GlocalFitConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if config.init == "identity":
        gain = config.init_gain if config.init_gain is not None else 1.0 / math.sqrt(p)
        weights = gain * torch.eye(p, device=device)
        # Adding back g*mean/std undoes the scalar centring: the start is x -> g x / std.
        bias = torch.full((p,), gain * mean / std, device=device)
    else:
        weights = config.sigma_init * torch.eye(p, device=device)
        bias = torch.full((p,), config.sigma_init, device=device)
    weights.requires_grad_(True)
    if not config.use_bias:
        return weights, None
    return weights, bias.requires_grad_(True)


def _split_scores(raw: torch.Tensor, aligned: torch.Tensor, data: TripletFeatures) -> tuple[float, float, float, float]:
    """(odd-one-out before, after, 2AFC before, after) with cosine similarity."""
    hard = data.hard_odd_one_out()
    rows = [torch.as_tensor(values, device=raw.device) for values in (data.anchor, data.left, data.right)]
    scores = []
    for matrix in (raw, aligned):
        accuracy = odd_one_out_accuracy(matrix, hard) if len(hard) else float("nan")
        two_afc = two_afc_from_embeddings(
            matrix[rows[0]], matrix[rows[1]], matrix[rows[2]], torch.as_tensor(data.target, device=raw.device)
        )
        scores.append((accuracy, two_afc))
    return scores[0][0], scores[1][0], scores[0][1], scores[1][1]
