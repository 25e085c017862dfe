"""The one device resolver: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (and ``"mps"``).

>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("gpu")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: unknown device 'gpu'; use auto, cpu, cuda or cuda:N
"""

from __future__ import annotations

import torch

from percep_rag.errors import ConfigError

#: The device names accepted everywhere (``cuda:N`` too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a device that is not here is a :class:`ConfigError`."""
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICE_CHOICES[1:] or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise ConfigError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for, but MPS is not available on this machine")
    return resolved
