"""Batched forward passes on the best available device: fp32 / fp16 / bf16, torch.compile, CPU int8."""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import numpy as np
import torch
from torch import nn

from acousticsense.errors import ConfigError

__all__ = ["Precision", "select_device", "resolve_precision", "WindowPredictor", "predict_many", "logits_per_file"]

Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is visible; use --device auto or cpu")
    return device


def resolve_precision(precision: Precision, device: torch.device) -> str:
    """``auto`` is fp16 on CUDA/MPS and fp32 on CPU; int8 (dynamic quantization) is CPU only."""
    if precision == "auto":
        return "fp16" if device.type in ("cuda", "mps") else "fp32"
    if precision == "int8" and device.type != "cpu":
        raise ConfigError("int8 dynamic quantization runs on CPU only; use fp16 or bf16 on an accelerator")
    if precision not in ("fp32", "fp16", "bf16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}; use auto, fp32, fp16, bf16 or int8")
    return precision


class WindowPredictor:
    """Runs a classifier over any number of windows in fixed-size batches.

    Args:
        model: a window classifier, ``(batch, n_mels, frames) -> (batch, n_classes)``.
        device: where to run (see :func:`select_device`).
        precision: ``auto``, ``fp32``, ``fp16``, ``bf16`` or (CPU) ``int8``.
        compile: wrap the model in ``torch.compile`` (worth it on GPUs for long jobs).
        max_batch_windows: windows per forward; larger batches keep an accelerator busy.
        copy_model: run a copy, leaving ``model`` exactly as it was (device, dtype, training flag). Pass False
            only for a model built for this predictor: it is then put in eval mode, moved and cast in place,
            which saves holding the weights twice while a large model converts.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str = "auto",
        precision: Precision = "auto",
        compile: bool = False,
        max_batch_windows: int = 256,
        *,
        copy_model: bool = True,
    ) -> None:
        if max_batch_windows < 1:
            raise ConfigError("max_batch_windows must be >= 1")
        self.device = select_device(device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.max_batch_windows = max_batch_windows
        # nn.Module.eval() and .to() change a module in place: a caller's fp32 reference once came back bf16.
        model = (copy.deepcopy(model) if copy_model else model).eval()
        if self.precision == "int8":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao is deprecated in favour of torchao
                model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
            self.dtype = torch.float32
        else:
            self.dtype = _DTYPES[self.precision]
            model = model.to(self.device, self.dtype)
        self.model = torch.compile(model) if compile else model

    @torch.inference_mode()
    def predict_logits(self, windows: np.ndarray | torch.Tensor) -> np.ndarray:
        """Args: windows: ``(n, n_mels, frames)``, any float dtype.

        Returns:
            float32 ``(n, n_classes)`` logits, in input order.
        """
        tensor = torch.as_tensor(windows)
        outputs = []
        for start in range(0, tensor.shape[0], self.max_batch_windows):
            chunk = tensor[start : start + self.max_batch_windows]
            chunk = chunk.to(self.device, non_blocking=True).to(self.dtype)
            outputs.append(self.model(chunk).float().cpu())
        if not outputs:
            return np.zeros((0, 0), np.float32)
        return torch.cat(outputs).numpy()


def logits_per_file(predictor: WindowPredictor, windows_per_file: list[np.ndarray]) -> list[np.ndarray | Exception]:
    """:func:`predict_many`, isolating failures: if the shared batch fails, each file runs alone and a
    file that still fails gets its exception in place of logits, so one bad file never fails the others.
    """
    try:
        return list(predict_many(predictor, windows_per_file))
    except Exception:  # noqa: BLE001 - find the file that breaks the batch
        results: list[np.ndarray | Exception] = []
        for windows in windows_per_file:
            try:
                results.append(predictor.predict_logits(windows))
            except Exception as e:  # noqa: BLE001
                results.append(e)
        return results


def predict_many(predictor: WindowPredictor, windows_per_file: list[np.ndarray]) -> list[np.ndarray]:
    """Run the windows of many files in shared batches and split the logits back per file.

    Args:
        windows_per_file: one ``(n_windows_i, n_mels, frames)`` array per file.

    Returns:
        one float32 ``(n_windows_i, n_classes)`` logits array per file, in input order.
    """
    if not windows_per_file:
        return []
    logits = predictor.predict_logits(np.concatenate(windows_per_file))
    bounds = np.cumsum([w.shape[0] for w in windows_per_file])[:-1]
    return np.split(logits, bounds)
