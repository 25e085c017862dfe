"""What a gLocal fit takes (:class:`GlocalFitConfig`) and what it reports (:class:`FitReport`).

>>> GlocalFitConfig(device="CPU").device
'cpu'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from percep_rag.config import Precision
from percep_rag.devices import DeviceName


class GlocalFitConfig(BaseModel):
    """Hyper-parameters of :func:`fit_glocal` (gLocal's objective, §2.2 of glocal.md).

    ``init="identity"`` starts at ``W = g I``, ``b = g * mean/std`` (``g = init_gain``,
    default ``1/sqrt(p)``, which puts the first dot products near 1) so the starting map is
    ``x -> g x / std``: the base embedding's cosine ranking, exactly (up to float rounding;
    with ``use_bias=False`` the scalar centring is not undone). ``init="glocal"`` is the
    original ``W = sigma_init I``, ``b = sigma_init`` (tiny scaled identity, constant bias).

    ``lr=None`` picks ``0.1 / p`` for Adam (Adam moves every one of the ``p^2`` entries by
    about ``lr`` per step, so the relative change of ``W`` grows with ``p``; measured on
    synthetic data: 1e-4 beats 1e-3 at ``p = 768``, 1e-2 works at ``p = 32``) and gLocal's
    ``1e-3`` for SGD with momentum (whose steps the gradient clipping bounds).

    >>> GlocalFitConfig(alpha=0.1).optimizer
    'adam'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float | None = Field(None, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    alpha: float = Field(0.25, ge=0, le=1)
    tau: float = Field(0.1, gt=0)
    temperature: float = Field(1.0, gt=0)
    lam: float = Field(0.1, ge=0)
    epochs: int = Field(100, ge=0)
    min_epochs: int = Field(5, ge=0)
    patience: int = Field(15, ge=1)
    min_delta: float = Field(1e-4, ge=0)
    triplet_batch_size: int | None = Field(256, gt=0)
    local_batch_size: int | None = Field(1024, gt=2)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = 42
    device: DeviceName = "auto"
    use_bias: bool = True
    init: Literal["identity", "glocal"] = "identity"
    init_gain: float | None = Field(None, gt=0)
    sigma_init: float = Field(1e-3, gt=0)
    soft_targets: Literal["expected", "majority"] = "expected"
    standardize_local: bool = True
    #: The loss under bf16 autocast (``auto``: on CUDA and AMX/AVX-512 BF16 CPUs). fp32 by default:
    #: the map is a few small matmuls, and bf16 rounds away the small moves from the identity start.
    precision: Precision = "fp32"

    def learning_rate(self, dim: int) -> float:
        """``lr``, or the automatic choice for ``dim``-d features.

        >>> GlocalFitConfig().learning_rate(768), GlocalFitConfig(optimizer="sgd").learning_rate(768)
        (0.00013020833333333333, 0.001)
        """
        if self.lr is not None:
            return self.lr
        return 0.1 / dim if self.optimizer == "adam" else 1e-3


@dataclass
class FitReport:
    """What happened during :func:`fit_glocal`.

    Per-epoch lists are indexed by epoch - 1; ``val_loss[0]`` is measured before training
    (epoch 0). Accuracies are odd-one-out (majority vote, ties wrong) and 2AFC agreement
    (soft votes), both with cosine similarity: "before" on the raw features (the base
    embedding), "after" on the fitted transform's output.
    """

    train_loss: list[float] = field(default_factory=list)
    train_global_loss: list[float] = field(default_factory=list)
    train_local_loss: list[float] = field(default_factory=list)
    regularizer: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    lr: float = 0.0
    stopped_early: bool = False
    train_accuracy_before: float | None = None
    train_accuracy_after: float | None = None
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    train_2afc_before: float | None = None
    train_2afc_after: float | None = None
    val_2afc_before: float | None = None
    val_2afc_after: float | None = None
    n_train: int = 0
    n_val: int = 0
    n_local: int = 0
    device: str = "cpu"
    seconds: float = 0.0
    #: With a hyper-parameter search: one row per grid point (its values, validation 2AFC,
    #: best epoch), and the chosen values; empty / ``None`` for a single setting.
    search: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line per split: accuracy and 2AFC before -> after."""

        def pair(before: float | None, after: float | None) -> str:
            return "n/a" if before is None else f"{before:.4f} -> {after:.4f}"

        stop = " (early stop)" if self.stopped_early else ""
        grid = [
            f"grid: alpha {row['alpha']:g}, lam {row['lam']:g}, temperature {row['temperature']:g}, lr {row['lr']:g}"
            f" -> val 2AFC " + ("failed" if row["val_2afc"] is None else f"{row['val_2afc']:.4f}")
            for row in self.search
        ]
        if self.chosen is not None:
            grid.append("chosen on val: " + ", ".join(f"{name} {value:g}" for name, value in self.chosen.items()))
        return "\n".join(
            grid
            + [
                f"best epoch {self.best_epoch} of {self.epochs_run}{stop}, lr {self.lr:g}, "
                f"{self.seconds:.1f}s on {self.device}",
                f"train: odd-one-out {pair(self.train_accuracy_before, self.train_accuracy_after)}, "
                f"2AFC {pair(self.train_2afc_before, self.train_2afc_after)}",
                f"val:   odd-one-out {pair(self.val_accuracy_before, self.val_accuracy_after)}, "
                f"2AFC {pair(self.val_2afc_before, self.val_2afc_after)}",
            ]
        )
