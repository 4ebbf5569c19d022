"""Read and write CenterPoint checkpoints in the mmdet3d layout ``{"state_dict": ..., "meta": ...}``.

Files are read with ``torch.load(weights_only=True)``. Checkpoints written by mmengine
training also pickle objects of classes that only mmengine has (the message hub's history
buffers, numpy scalars); for those the file is read again by an unpickler that builds
tensors and plain containers and turns every other class into an inert
:class:`UnreadableObject`, so no code from the file runs either way.
"""

from __future__ import annotations

import collections
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from centerpoint_deploy.errors import CheckpointError

#: How many keys of each kind a mismatch report lists.
REPORT_KEYS = 10

_DDP_PREFIX = "module."
#: (module, name) of the globals a checkpoint pickle may build: tensors, storages' dtypes,
#: ordered dicts, bytes and numpy arrays/scalars.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles store bytes (numpy scalars) as encoded strings
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class UnreadableObject:
    """Stands in for an object of a class that the checkpoint reader does not build."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<unreadable {type(self).__qualname__}>"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        # a fresh subclass per global keeps the original name visible in reprs
        return type(f"{module}.{name}", (UnreadableObject,), {})


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` that uses :class:`_RestrictedUnpickler`."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())
    __name__ = "centerpoint_deploy_restricted_pickle"


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a class beyond the weights-only allowlist (e.g. mmengine's); read it inertly below
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except Exception as exc:  # any failure of a corrupt pickle stream
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc


def read_checkpoint(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint file or an in-memory checkpoint dict.

    Args:
        source: a file path, an mmdet3d-style ``{"state_dict": ..., "meta": ...}`` or a bare
            state dict.

    Returns:
        (state dict with any ``module.`` prefix removed and half/bfloat16 tensors cast to
        float32, meta dict; ``{}`` when the checkpoint has none).

    Raises:
        CheckpointError: the file is missing, truncated or not a checkpoint.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        raw, where = _torch_load(path), str(path)
    else:
        raw, where = source, "the given checkpoint"
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        state, meta = raw["state_dict"], raw.get("meta") or {}
    elif isinstance(raw, Mapping) and raw and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in raw.items()):
        state, meta = raw, {}
    else:
        raise CheckpointError(f"{where} is not a checkpoint: expected {{'state_dict': {{name: tensor}}, 'meta': {{...}}}} "
                              f"or a state dict, got {_describe(raw)}")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{where}: state_dict entries must be tensors; {len(bad)} are not, e.g. {bad[0]!r}")
    if not isinstance(meta, Mapping):
        meta = {"meta": meta}
    if state and all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX):]: v for k, v in state.items()}
    state = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}
    return state, dict(meta)


def load_checkpoint(model: nn.Module, source: str | Path | Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """Load weights into ``model``.

    Args:
        model: e.g. a :class:`~centerpoint_deploy.model.CenterPoint`.
        source: see :func:`read_checkpoint`.
        strict: refuse missing and unexpected keys (mis-shaped keys are always refused).

    Returns:
        The checkpoint's meta dict.

    Raises:
        CheckpointError: unreadable, or the keys do not fit: one message with the counts and
            the first keys (with shapes) of every kind of mismatch.
    """
    state, meta = read_checkpoint(source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    problems = []
    if strict and missing:
        problems.append(_report("missing", missing, lambda k: f"model {list(expected[k].shape)}"))
    if strict and unexpected:
        problems.append(_report("unexpected", unexpected, lambda k: f"checkpoint {list(state[k].shape)}"))
    if misshaped:
        problems.append(_report("mis-shaped", misshaped,
                                lambda k: f"checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"))
    where = str(source) if isinstance(source, (str, Path)) else "the given checkpoint"
    if problems:
        raise CheckpointError(f"{where} does not fit the model ({len(expected)} keys): " + "; ".join(problems))
    _check_values(state, expected, where)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return meta


def _check_values(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str) -> None:
    """Refuse weights that would load but give a broken model: a floating-point parameter or
    buffer stored as an integer/bool tensor (its fractional part would be lost), or one
    holding NaN/Inf."""
    for key, value in state.items():
        if key not in expected or not expected[key].is_floating_point():
            continue
        if not value.is_floating_point():
            raise CheckpointError(f"{where}: tensor '{key}' has dtype {value.dtype}; the model's {key} is "
                                  f"{expected[key].dtype}: allowed: a floating-point tensor (float32/16, bfloat16)")
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise CheckpointError(f"{where}: tensor '{key}' {list(value.shape)} holds {bad} NaN/Inf value(s) "
                                  f"of {value.numel()}; allowed: finite weights only")


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any], half: bool = False) -> Path:
    """Write ``{"state_dict": ..., "meta": meta}`` as mmdet3d does; returns the path.

    Args:
        model: the model whose ``state_dict()`` is saved (moved to CPU).
        path: the file to write (atomically: a temporary file is renamed over it).
        meta: plain data (str, numbers, lists, dicts) so that weights-only loading reads it.
        half: store floating-point tensors as float16 (loading casts them back to float32).
    """
    path = Path(path)
    state = collections.OrderedDict(
        (k, v.detach().to("cpu", torch.float16 if half and v.is_floating_point() else v.dtype).clone())
        for k, v in model.state_dict().items()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state_dict": state, "meta": dict(meta)}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _report(kind: str, keys: list[str], shape_of: Any) -> str:
    shown = ", ".join(f"{k} {shape_of(k)}" for k in keys[:REPORT_KEYS])
    more = f", ... ({len(keys) - REPORT_KEYS} more)" if len(keys) > REPORT_KEYS else ""
    return f"{len(keys)} {kind} key(s): {shown}{more}"


def _describe(value: Any) -> str:
    if isinstance(value, UnreadableObject):
        return f"an object of class {type(value).__name__}, which is not read"
    if isinstance(value, Mapping):
        keys = list(value)[:5]
        return f"a dict with keys {keys}{' ...' if len(value) > 5 else ''}"
    return f"a {type(value).__qualname__}"
