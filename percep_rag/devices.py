"""The one device resolver: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (and ``"mps"``).

>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("gpu")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: unknown device 'gpu'; use auto, cpu, cuda or cuda:N
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import AfterValidator

from percep_rag.errors import ConfigError

#: The device names accepted everywhere (``cuda:N`` too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(device: str | torch.device) -> str:
    """The device name, lower-cased, if it is one of the accepted ones; else a :class:`ConfigError`.

    Only the spelling is checked, not whether the device is on this machine, so configs
    naming ``cuda`` can be written on a CPU-only machine.

    >>> check_device_name(" CUDA:1 ")
    'cuda:1'
    """
    name = str(device) if isinstance(device, torch.device) else str(device).strip().lower()
    kind, _, index = name.partition(":")
    if name != "auto" and (
        kind not in DEVICE_CHOICES[1:] or (index and not index.isdigit()) or (index and kind != "cuda")
    ):
        raise ConfigError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    return name


#: A config field holding a device name, checked by :func:`check_device_name` (pydantic reports it).
DeviceName = Annotated[str, AfterValidator(check_device_name)]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a device that is not here is a :class:`ConfigError`."""
    name = check_device_name(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for, but MPS is not available on this machine")
    return resolved
