"""Torch device names as users write them."""

from __future__ import annotations

from ..errors import ActclustError


def resolve_device(device: str) -> str:
    """The torch device for ``device``: ``"auto"`` is ``"cuda"`` when torch sees a GPU and
    ``"cpu"`` otherwise; asking for CUDA without one, or a name torch does not know, is an
    error. Indexed devices (``"cuda:1"``) are accepted.

    Example:
        >>> resolve_device("cpu")
        'cpu'
        >>> resolve_device("bogus")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: unknown device 'bogus': use auto, cpu, cuda, cuda:N or mps
    """
    import torch

    if not isinstance(device, str):
        raise ActclustError(f"device must be a string such as 'cpu' or 'cuda:0', got "
                            f"{type(device).__name__}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ActclustError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps"
                            ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ActclustError(f"device {device!r} asked for, but torch sees no CUDA "
                                "device; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ActclustError(f"device {device!r} asked for, but torch sees "
                                f"{torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ActclustError(f"device {device!r} asked for, but torch sees no MPS device")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ActclustError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device
