"""Accelerator-stage benchmark: one window classifier alone, as plain PyTorch through the core library.

Models (``--model``): the ViT presets (``vit``, ``--preset``), the real musicnn bundles (``musicnn`` =
the shipped ``musicnn-msd`` weights, ``musicnn-mtt``, and ``musicnn-msd-mtt``, both networks on the same
patches: the default bundle) and ``ast`` (the AST geometry, ``ASTConfig()`` defaults: 128 x 1024 input,
1212 patches + 2 special tokens = 1214 tokens, ViT-B sizes; random weights).

For every (precision, compile, channels-last, batch size) it times the forward pass of
``WindowPredictor.model`` on device-resident inputs (no host transfers, no decoding, no features) and
reports windows/s (a window is the model's input: a 3 s patch for musicnn), the model's cost per 30 s
excerpt, and the p50 / p90 batch latency. It also times a large matrix product as the machine's ceiling
and gives each row's model FLOP/s (analytic count, :func:`flops_per_window`) as a share of it, and
checks that every variant (fp16, bf16, torch.compile, int8, channels-last) predicts what fp32 predicts on
the same fixed inputs (max |dp| of the model's own scores: softmax for the ViT, sigmoid for musicnn and
AST; top-1 and top-5 agreement).

Only torch, numpy and ``acousticsense`` are imported (never Ray)::

    python -m benchmarks.inference                                  # auto device, its defaults
    python -m benchmarks.inference --device cpu --preset tiny       # the short CPU run (< 1 min on 2 cores)
    python -m benchmarks.inference --device cpu --model musicnn     # the real model on CPU (~2 min on 2 cores)
    python -m benchmarks.inference --device cuda --model ast --json bench.json

The last line printed is one JSON object with every result (also written to ``--json PATH``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo
from torch import nn

from acousticsense import (
    GENRES,
    MODEL_PRESETS,
    ASTClassifier,
    ASTConfig,
    FeatureConfig,
    MusicnnConfig,
    ViTConfig,
    WindowClassifier,
    WindowPredictor,
    frame_windows,
    front_end,
    load_bundle,
    model_config_for,
    n_frames,
    select_device,
)
from acousticsense.convert.ast import ast_features

__all__ = [
    "MODELS",
    "vit_flops_per_window",
    "musicnn_flops_per_window",
    "ast_flops_per_window",
    "flops_per_window",
    "windows_per_excerpt",
    "matmul_ceiling",
    "machine_info",
    "run_benchmark",
    "main",
]

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
_CPU_DEFAULTS = dict(
    preset="tiny",
    batch_sizes=[1, 8, 32, 128],
    precisions=["fp32", "bf16", "int8"],
    compile="off",  # inductor on 2 cores spends ~20 s per graph; ask for it with --compile both
    warmup=2,
    iters=10,
    min_time_s=0.25,
    parity_windows=128,
    ceiling_size=4096,
)
_CUDA_DEFAULTS = dict(
    preset="base",
    batch_sizes=[2**i for i in range(11)],
    precisions=["fp32", "fp16", "bf16"],
    compile="both",
    warmup=5,
    iters=20,
    min_time_s=0.5,
    parity_windows=512,
    ceiling_size=8192,
)
# Per family, what differs from the device's defaults above: a musicnn patch costs ~2.8 GFLOP (~100x the
# tiny ViT's window) and an AST window ~261 GFLOP, so the CPU runs use fewer and smaller batches.
_FAMILY_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("cpu", "musicnn"): dict(batch_sizes=[1, 8, 32], warmup=1, iters=3, min_time_s=0.0, parity_windows=32),
    ("cpu", "ast"): dict(batch_sizes=[1, 4], warmup=0, iters=2, min_time_s=0.0, parity_windows=4),
    ("cuda", "ast"): dict(batch_sizes=[2**i for i in range(9)], parity_windows=64),
}
_FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: ``--model`` choices: what each benchmarks.
MODELS: dict[str, str] = {
    "vit": "the ViT window classifier at --preset (tiny: the synthetic-tiny bundle's trained weights; others random)",
    "musicnn": "musicnn with the shipped musicnn-msd weights (one network, 50 tags), as musicnn-msd",
    "musicnn-msd": "musicnn, Million Song Dataset weights (one network, 50 tags)",
    "musicnn-mtt": "musicnn, MagnaTagATune weights (one network, 50 tags)",
    "musicnn-msd-mtt": "both musicnn networks on the same patches (92 outputs): the default bundle",
    "ast": "AST geometry (ASTConfig() defaults: 1212 patches + 2 tokens, ViT-B), random weights",
}
_CLIP_S = 10.0  # demo-corpus clips are rendered at this length (4 windows each), as the demo model was trained


# ----------------------------------------------------------------------------------------------------
# FLOPs and the machine's ceiling
# ----------------------------------------------------------------------------------------------------


def vit_flops_per_window(config: ViTConfig) -> int:
    """Analytic FLOPs (2 per multiply-add) of one :class:`WindowClassifier` forward pass on one window.

    Counts what dominates and what ``torch.utils.flop_counter`` counts: the patch-embedding convolution,
    per block the qkv / output projections (``4 d^2`` MACs per token) and the MLP (``2 * hidden * d``), the
    attention products ``Q K^T`` and ``A V`` (``2 * tokens^2 * d`` MACs), and the head. Layer norms,
    GELU, softmax, residual adds and biases are left out (well under 1 % for every preset).
    """
    tokens, d, p = config.n_patches, config.dim, config.patch_size
    hidden = int(d * config.mlp_ratio)
    patch_embed = 2 * tokens * d * p * p  # one input channel
    linears = 2 * tokens * (4 * d * d + 2 * hidden * d)
    attention = 4 * tokens * tokens * d
    head = 2 * d * config.n_classes
    return patch_embed + config.depth * (linears + attention) + head


def musicnn_flops_per_window(config: MusicnnConfig) -> int:
    """Analytic FLOPs (2 per multiply-add) of one :class:`acousticsense.models.Musicnn` forward on one patch.

    Per network, with ``T`` frames and ``M`` mel bands (187 x 96): each timbral conv (time ``kt`` x mel
    ``km``, ``filters`` outputs, time padded to keep ``T``, valid over mel) costs ``filters * T * (M - km + 1)
    * kt * km`` MACs; each temporal conv (``kt`` x 1, "same") ``filters * T * M * kt``; the mid-end's three
    1-D convs (kernel ``k``) ``midend_filters * T * k * c_in`` with ``c_in`` = the front end's 561 channels,
    then 64, 64; the back-end's dense layers ``1506 * 200 + 200 * tags``. Times ``networks``. Batch norms,
    ReLU, the max/mean poolings, biases and the output merge are left out (< 0.1 %), as
    ``torch.utils.flop_counter`` leaves them out. The defaults: 1.3986 GMAC, 2.797 GFLOP per network.
    """
    t, m = config.window_frames, config.n_mels
    timbral = sum(config.timbral_filters * t * (m - km + 1) * kt * km for kt, km in config.timbral_kernels)
    temporal = sum(config.temporal_filters * t * m * kt for kt in config.temporal_kernels)
    front = config.frontend_channels
    midend = config.midend_filters * t * config.midend_kernel * (front + 2 * config.midend_filters)
    dense_in = 2 * (front + 3 * config.midend_filters)
    dense = dense_in * config.backend_units + config.backend_units * config.tags
    return 2 * config.networks * (timbral + temporal + midend + dense)


def ast_flops_per_window(config: ASTConfig) -> int:
    """Analytic FLOPs (2 per multiply-add) of one :class:`acousticsense.models.ASTClassifier` forward on one window.

    The patch embedding (``n_patches`` overlapping ``patch_size``-square patches, one input channel), per
    block the q / k / v / output projections (``4 d^2`` MACs per token) and the MLP (``2 * mlp_dim * d``)
    over ``n_patches + 2`` tokens (cls and distillation), the attention products ``Q K^T`` and ``A V``
    (``2 * tokens^2 * d`` MACs), and the head. LayerNorms, GELU, softmax, residuals and biases are left
    out. ``ASTConfig()`` (1214 tokens, ViT-B): 261.0 GFLOP per window.
    """
    patches, d = config.n_patches, config.dim
    tokens = patches + 2
    patch_embed = 2 * patches * d * config.patch_size * config.patch_size
    linears = 2 * tokens * (4 * d * d + 2 * config.mlp_dim * d)
    attention = 4 * tokens * tokens * d
    head = 2 * d * config.n_classes
    return patch_embed + config.depth * (linears + attention) + head


_FLOPS = {"vit": vit_flops_per_window, "musicnn": musicnn_flops_per_window, "ast": ast_flops_per_window}


def flops_per_window(config: Any) -> int:
    """Analytic FLOPs of one window for any benchmarked family's config (``config.family``)."""
    family = getattr(config, "family", None)
    if family not in _FLOPS:
        raise ValueError(f"no FLOP count for model family {family!r}; known: {sorted(_FLOPS)}")
    return _FLOPS[family](config)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, precision: str, size: int, min_time_s: float = 1.0) -> dict[str, Any]:
    """Achieved TFLOP/s of a ``size``-square matrix product in ``precision`` (fp32/fp16/bf16, or int8 on CPU).

    int8 is the kernel the int8 model runs: a dynamically quantized ``nn.Linear`` (fbgemm / onednn) with
    ``size`` rows of fp32 input, so its FLOPs and the model's are counted the same way.
    """
    flops = 2 * size**3
    gen = torch.Generator(device="cpu").manual_seed(0)
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("the int8 ceiling is CPU only")
        linear = nn.Sequential(nn.Linear(size, size, bias=False)).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linear = torch.ao.quantization.quantize_dynamic(linear, {nn.Linear}, dtype=torch.qint8)
        x = torch.randn(size, size, generator=gen)

        def step() -> torch.Tensor:
            return linear(x)

        what = f"int8 dynamic-quantized Linear, {size}x{size} input x {size}x{size} weight"
    else:
        dtype = _FLOAT_DTYPES[precision]
        a = torch.randn(size, size, generator=gen).to(device, dtype)
        b = torch.randn(size, size, generator=gen).to(device, dtype)

        def step() -> torch.Tensor:
            return a @ b

        what = f"{precision} matmul {size}x{size}x{size}"
    with torch.inference_mode():
        step()  # warm-up (library init, kernel selection)
        _sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < min_time_s and len(times) < 200):
            if device.type == "cuda":
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                step()
                end.record()
                end.synchronize()
                times.append(begin.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {
        "precision": precision,
        "what": what,
        "size": size,
        "reps": len(times),
        "best_s": min(times),
        "median_s": median,
        "tflops": flops / min(times) / 1e12,  # the best rep: what the machine can do, even beside other load
        "median_tflops": flops / median / 1e12,
    }


# ----------------------------------------------------------------------------------------------------
# Machine description
# ----------------------------------------------------------------------------------------------------


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model, flags


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model and cores, Python and torch versions, and the GPU (name, memory, capability) on CUDA."""
    cpu_model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": usable,
        "cpu_bf16_isa": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "loadavg_start": _loadavg(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    return info


def _loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on a small CPU machine skews every figure."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_line(info: dict[str, Any]) -> str:
    cpu = f"{info['cpu_model']}, {info['cpu_usable_cores']} cores ({info['torch_threads']} torch threads)"
    if info.get("gpu_name"):
        gpu = (
            f"{info['gpu_name']} ({info['gpu_memory_gib']} GiB, sm {info['gpu_capability']}, "
            f"CUDA {info['cuda']}, TF32 matmul {'on' if info['tf32_matmul'] else 'off'})"
        )
    else:
        gpu = "no GPU"
    line = f"{cpu}; {gpu}; torch {info['torch']}; Python {info['python']}"
    if info.get("loadavg_start") is not None:
        line += f"; load average {info['loadavg_start'][0]:.2f} at start"
        if info.get("loadavg_end") is not None:
            line += f", {info['loadavg_end'][0]:.2f} at end"
    return line


# ----------------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Subject:
    """The model under test and what the report says about it."""

    name: str  # "vit-tiny", "musicnn-msd", "ast", ...
    model: nn.Module
    features: FeatureConfig  # its front end (parity inputs) and excerpt (windows per excerpt)
    weights: str
    trained: bool  # real weights: parity on them means what it means in production
    activation: str  # "softmax" (single-label) or "sigmoid" (tags): the scores parity compares
    corpus_labels: bool  # its outputs are the demo corpus's genres, so accuracy on its labels means something

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def family(self) -> str:
        return self.model.config.family


def _build_model(name: str, preset: str | None, seed: int) -> _Subject:
    """The model ``--model`` names: a shipped bundle's trained weights where there is one, else seeded random."""
    if name == "vit":
        bundle = load_bundle("synthetic-tiny")
        if preset == bundle.preset:
            weights = f"trained synthetic-tiny bundle {bundle.version} ({preset})"
            return _Subject(f"vit-{preset}", bundle.build_model(), bundle.features, weights, True, "softmax", True)
        features = FeatureConfig()
        torch.manual_seed(seed)
        model = WindowClassifier(model_config_for(preset, features, len(GENRES))).eval()
        weights = f"random init, seed {seed} ({preset}; no trained {preset} bundle: weaker parity)"
        return _Subject(f"vit-{preset}", model, features, weights, False, "softmax", True)
    if name == "ast":
        torch.manual_seed(seed)
        model = ASTClassifier(ASTConfig()).eval()
        weights = f"random init, seed {seed} (AST geometry; checkpoints cannot be fetched here: weaker parity)"
        return _Subject("ast", model, ast_features(), weights, False, "sigmoid", False)
    bundle_name = "musicnn-msd" if name == "musicnn" else name
    bundle = load_bundle(bundle_name)
    weights = f"shipped bundle {bundle.version} (real weights, {len(bundle.labels)} tags)"
    return _Subject(bundle_name, bundle.build_model(), bundle.features, weights, True, "sigmoid", False)


def windows_per_excerpt(features: FeatureConfig) -> int:
    """Model windows the batch job cuts from one file: ``segments`` excerpts of ``excerpt_s`` (11 for musicnn)."""
    frames = n_frames(int(round(features.excerpt_s * features.sample_rate_hz)), features)
    return features.segments * max(1, math.ceil(frames / features.window_frames))


def _music_windows(features: FeatureConfig, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``n`` windows (float16, as ``featurize`` hands them on) of synthetic music, through ``features``' front end.

    Uses the demo corpus (the music the demo bundle was trained on, labels known) when SciPy is there;
    otherwise seeded harmonic tones with drum-like noise bursts (no labels). Clips are 10 s (the demo
    model's training length) or, for longer windows (AST's 10.24 s), whole seconds just above one window.
    """
    extractor = front_end(features)
    window_s = features.window_frames * features.hop_length / features.sample_rate_hz
    clip_s = _CLIP_S if window_s < _CLIP_S else float(math.ceil(window_s + 0.5))
    clip_samples = int(clip_s * features.sample_rate_hz)
    try:
        from acousticsense.demo.corpus import synthesize_clip  # needs SciPy, which the core does not
    except ImportError:
        synthesize_clip = None
    windows: list[torch.Tensor] = []
    labels: list[int] = []
    clip = 0
    with torch.inference_mode():
        while sum(w.shape[0] for w in windows) < n:
            rng = np.random.default_rng([seed, clip])
            if synthesize_clip is not None:
                label = clip % len(GENRES)
                wave = synthesize_clip(GENRES[label], rng, clip_s, features.sample_rate_hz)
            else:
                label = -1
                wave = _tones_and_drums(rng, clip_samples, features.sample_rate_hz)
            clip_windows = frame_windows(extractor(torch.from_numpy(wave)), features.window_frames)
            windows.append(clip_windows)
            labels += [label] * clip_windows.shape[0]
            clip += 1
    out = torch.cat(windows)[:n].to(torch.float16).numpy()
    if synthesize_clip is None:
        return out, None, f"synthetic tones and noise bursts, {clip} clips of {clip_s:g} s (no SciPy: no corpus)"
    return out, np.asarray(labels[:n]), f"demo corpus music, {clip} clips of {clip_s:g} s over {len(GENRES)} genres"


def _tones_and_drums(rng: np.random.Generator, samples: int, sample_rate_hz: int) -> np.ndarray:
    t = np.arange(samples) / sample_rate_hz
    wave = np.zeros(samples)
    for _ in range(rng.integers(1, 4)):  # a few harmonic voices, each changing note every beat-ish
        note_s = rng.uniform(0.2, 1.0)
        f0 = 55.0 * 2 ** (rng.integers(0, 48, size=int(t[-1] / note_s) + 1) / 12)[(t / note_s).astype(int)]
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate_hz
        for k in range(1, rng.integers(2, 9)):
            wave += rng.uniform(0.2, 1.0) / k * np.sin(k * phase)
    beat = int(sample_rate_hz * 60 / rng.uniform(70, 170))
    decay = np.exp(-np.arange(beat) / (0.03 * sample_rate_hz))
    for start in range(0, samples, beat):
        stop = min(start + beat, samples)
        wave[start:stop] += rng.uniform(0.5, 3.0) * rng.standard_normal(stop - start) * decay[: stop - start]
    wave += rng.uniform(0.01, 0.1) * rng.standard_normal(samples)
    return (wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.1, 0.9)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------


def _time_forward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    device: torch.device,
    warmup: int,
    iters: int,
    min_time_s: float,
) -> dict[str, Any]:
    """First call (compile / autotune / library init), then ``warmup`` calls, then the timed loop.

    The loop runs at least ``iters`` batches and at least ``min_time_s``. On CUDA each batch is bracketed by
    CUDA events (no host sync between batches, one at the end), so latencies are device time and the
    windows/s is wall time from a synchronised start to a synchronised end.
    """
    t0 = time.perf_counter()
    forward(x)
    _sync(device)
    first_call_s = time.perf_counter() - t0
    for _ in range(warmup):
        forward(x)
    _sync(device)
    latencies: list[float] = []
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    cpu_start = time.process_time()
    start = time.perf_counter()
    count = 0
    while count < iters or (time.perf_counter() - start < min_time_s and count < 100_000):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            forward(x)
            end.record()
            events.append((begin, end))
        else:
            t = time.perf_counter()
            forward(x)
            latencies.append(time.perf_counter() - t)
        count += 1
    _sync(device)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if events:
        latencies = [b.elapsed_time(e) / 1e3 for b, e in events]
    lat = np.asarray(latencies)
    return {
        "first_call_s": first_call_s,
        "iters": count,
        "wall_s": wall,
        "windows_per_s": count * x.shape[0] / wall,
        # CPU seconds of this process (all its threads) in the loop: on a shared CPU machine, windows per
        # CPU-second move less with other load than windows per second do.
        "cpu_s": cpu,
        "windows_per_cpu_s": count * x.shape[0] / cpu if cpu > 0 else None,
        "windows_per_s_p50": x.shape[0] / float(np.percentile(lat, 50)),
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p90_ms": float(np.percentile(lat, 90) * 1e3),
        "mean_ms": float(lat.mean() * 1e3),
    }


def _op_breakdown(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device, top: int = 6
) -> list[dict[str, Any]]:
    """Self time per op of one forward pass (``torch.profiler``; device time on CUDA), largest first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), profile(activities=activities) as prof:
        forward(x)
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(((e.key, getattr(e, attr)) for e in prof.key_averages()), key=lambda kv: -kv[1])
    total = sum(t for _, t in events) or 1.0
    return [{"op": k, "self_ms": t / 1e3, "share_pct": 100.0 * t / total} for k, t in events[:top] if t > 0]


def _skip_reason(precision: str, device: torch.device) -> str | None:
    if precision == "int8" and device.type != "cpu":
        return "int8 dynamic quantization runs on CPU only"
    if precision == "bf16" and device.type == "cuda":
        try:
            supported = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation argument
            supported = torch.cuda.is_bf16_supported()
        if not supported:
            return "this GPU has no native bf16"
    return None


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, _OOM) or "out of memory" in str(exc).lower()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory torch allocated on ``device`` since the last reset; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _short(exc: BaseException, limit: int = 400) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _predictor(
    model: nn.Module, device: torch.device, precision: str, compiled: bool, chunk: int, channels_last: bool = False
) -> WindowPredictor:
    """A predictor on a copy of ``model``; ``channels_last`` stores its 4-D conv weights NHWC first.

    The windows stay ``(batch, n_mels, frames)``: a model's 4-D activations follow its conv weights' layout.
    """
    model = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.ao quantized-tensor deprecation notices
        return WindowPredictor(model, device, precision, compile=compiled, max_batch_windows=chunk, copy_model=False)


def _scores(logits: np.ndarray, activation: str) -> np.ndarray:
    z = logits.astype(np.float64)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _top5_agreement(reference: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """Percent of windows whose 5 best outputs are the same set, and the mean overlap of those sets in percent."""
    k = min(5, reference.shape[1])
    ref = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    got = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    overlap = np.array([len(set(a) & set(b)) for a, b in zip(ref.tolist(), got.tolist())]) / k
    return float((overlap == 1.0).mean() * 100), float(overlap.mean() * 100)


def _parity(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None, activation: str = "softmax"
) -> dict[str, Any]:
    """How far ``logits`` are from the fp32 ``reference`` on the same windows, in the model's own scores."""
    diff = np.abs(_scores(reference, activation) - _scores(logits, activation))
    top5_same, top5_overlap = _top5_agreement(reference, logits)
    out = {
        "windows": int(reference.shape[0]),
        "activation": activation,
        "top1_agreement_pct": float((reference.argmax(1) == logits.argmax(1)).mean() * 100),
        "top5_agreement_pct": top5_same,
        "top5_overlap_pct": top5_overlap,
        "max_abs_prob_diff": float(diff.max()),
        "mean_abs_prob_diff": float(diff.mean()),
        "max_abs_logit_diff": float(np.abs(reference.astype(np.float64) - logits).max()),
        "finite": bool(np.isfinite(logits).all()),
    }
    if labels is not None:
        out["accuracy_pct"] = float((logits.argmax(1) == labels).mean() * 100)
    return out


# ----------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------


def _ceiling_precision(family: str, precision: str) -> str:
    """The ceiling a row is compared with: its own precision's, except int8 musicnn (its convs stay fp32)."""
    return "fp32" if family == "musicnn" and precision == "int8" else precision


def _ceiling_note(family: str) -> str:
    if family == "musicnn":
        return (
            "conv/matmul ceiling: musicnn's FLOPs are convolutions (and two small dense layers), which oneDNN / "
            "cuDNN run as matrix products, so a large square matmul in the row's precision is their ceiling; "
            "int8 rows are compared with fp32: dynamic quantization covers the Linear layers only "
            "(0.02 % of the FLOPs), the convs stay fp32"
        )
    return "large square matmul in the row's precision (int8: a dynamically quantized Linear, as the int8 model runs)"


def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement of one invocation, as a JSON-serialisable dict (see :func:`main` for the options)."""
    started = time.perf_counter()
    device = args.device
    subject = _build_model(args.model, args.preset, args.seed)
    model, features, family = subject.model, subject.features, subject.family
    flops = flops_per_window(subject.config)
    per_excerpt = windows_per_excerpt(features)
    info = machine_info(device)
    log(f"machine: {machine_line(info)}")
    log(
        f"model: {subject.name} ({family}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{flops / 1e9:.3f} GFLOP per window, {per_excerpt} windows per {features.excerpt_s:g} s excerpt), "
        f"weights: {subject.weights}"
    )

    # The machine's ceiling, per precision the rows are compared with.
    ceilings: dict[str, dict[str, Any]] = {}
    for precision in dict.fromkeys(_ceiling_precision(family, p) for p in args.precisions):
        if _skip_reason(precision, device) is not None:
            continue
        try:
            ceilings[precision] = matmul_ceiling(device, precision, args.ceiling_size, args.ceiling_time_s)
        except Exception as exc:  # a missing kernel must not stop the benchmark
            ceilings[precision] = {"precision": precision, "error": _short(exc)}
        _free(device)
        log(f"ceiling {precision}: {ceilings[precision].get('tflops', float('nan')):.3f} TFLOP/s")

    # Parity inputs and the fp32 eager reference.
    parity_sets: dict[str, tuple[np.ndarray, np.ndarray | None, str]] = {}
    if args.parity_windows > 0:
        parity_sets["music"] = _music_windows(features, args.parity_windows, args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        shape = (args.parity_windows, features.n_mels, features.window_frames)
        parity_sets["normal"] = (torch.randn(shape, generator=gen).numpy(), None, "standard normal noise")
    chunk = min(args.parity_windows, 128) if args.parity_windows > 0 else 1
    reference_logits: dict[str, np.ndarray] = {}
    parity_error: str | None = None
    if parity_sets:
        try:
            reference = _predictor(model, device, "fp32", False, chunk)
            reference_logits = {name: reference.predict_logits(x) for name, (x, _, _) in parity_sets.items()}
            del reference
        except Exception as exc:  # the timings are still worth having
            parity_error = f"fp32 reference failed: {_short(exc)}"
            log(parity_error)
        _free(device)
        log(f"parity inputs and fp32 reference ready at {time.perf_counter() - started:.1f} s")

    rows: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    parity: list[dict[str, Any]] = []
    compile_modes = {"both": [False, True], "on": [True], "off": [False]}[args.compile]
    layouts = {"both": [False, True], "on": [True], "off": [False]}[args.channels_last]
    for precision in args.precisions:
        for compiled in compile_modes:
            for channels_last in layouts:
                key = {"precision": precision, "compile": compiled, "channels_last": channels_last}
                variant = {**key, "status": "ok"}
                variants.append(variant)
                reason = _skip_reason(precision, device)
                if reason is not None:
                    variant.update(status="skipped", error=reason)
                    log(f"skip {_variant_name(variant)}: {reason}")
                    continue
                if compiled:
                    torch._dynamo.reset()
                try:
                    predictor = _predictor(model, device, precision, compiled, chunk, channels_last)
                except Exception as exc:
                    variant.update(status="error", error=_short(exc))
                    log(f"cannot build {_variant_name(variant)}: {variant['error']}")
                    continue
                stop: str | None = None
                for batch in args.batch_sizes:
                    row: dict[str, Any] = {**key, "batch_size": batch}
                    rows.append(row)
                    if stop is not None:
                        row.update(status="skipped", error=stop)
                        continue
                    try:
                        torch.manual_seed(args.seed)
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        x = torch.randn(batch, features.n_mels, features.window_frames, device=device)
                        x = x.to(predictor.dtype)
                        with torch.inference_mode():
                            row.update(
                                _time_forward(predictor.model, x, device, args.warmup, args.iters, args.min_time_s)
                            )
                        row["status"] = "ok"
                        # Weights + this batch's input and activations (+ compile workspaces): what one batch costs.
                        row["peak_gpu_mib"] = _peak_memory_mib(device)
                    except Exception as exc:  # OOM, compile failures, missing kernels
                        if _is_oom(exc):
                            row.update(status="oom", error=_short(exc, 200))
                            stop = f"skipped: batch {batch} ran out of memory"
                        else:
                            row.update(status="error", error=_short(exc))
                            stop = f"skipped after an error at batch {batch}"
                            variant.update(status="error", error=row["error"])
                    x = None
                    _free(device)
                    if row["status"] == "ok":
                        row["model_tflops"] = flops * row["windows_per_s"] / 1e12
                        row["excerpts_per_s"] = row["windows_per_s"] / per_excerpt
                        row["ms_per_excerpt"] = 1e3 * per_excerpt / row["windows_per_s"]
                        row["loadavg_1m"] = (_loadavg() or [None])[0]
                        if compiled:
                            row["compile_s"] = row["first_call_s"]
                    log(_row_line(row))
                ok_rows = [r for r in rows if all(r[k] == v for k, v in key.items())]
                variant["first_calls_s"] = sum(r.get("first_call_s", 0.0) for r in ok_rows)
                timed = [r["batch_size"] for r in ok_rows if r["status"] == "ok"]
                if args.op_breakdown and timed:
                    try:
                        torch.manual_seed(args.seed)
                        x = torch.randn(max(timed), features.n_mels, features.window_frames, device=device)
                        ops = _op_breakdown(predictor.model, x.to(predictor.dtype), device)
                        variant["op_breakdown"] = {"batch_size": max(timed), "ops": ops}
                    except Exception as exc:
                        variant["op_breakdown"] = {"error": _short(exc)}
                    x = None
                    _free(device)
                if compiled:
                    variant["compile_s"] = variant["first_calls_s"]
                # Parity with fp32 eager on the same inputs, through WindowPredictor.predict_logits.
                if (
                    reference_logits
                    and variant["status"] == "ok"
                    and (precision != "fp32" or compiled or channels_last)
                ):
                    for name, (x_np, labels, _) in parity_sets.items():
                        entry: dict[str, Any] = {**key, "inputs": name}
                        try:
                            logits = predictor.predict_logits(x_np)
                            # Accuracy on the corpus labels only means something for weights trained on them.
                            known = labels if subject.trained and subject.corpus_labels else None
                            entry.update(_parity(reference_logits[name], logits, known, subject.activation))
                        except Exception as exc:
                            entry["error"] = _short(exc)
                        parity.append(entry)
                del predictor
                if compiled:
                    torch._dynamo.reset()
                _free(device)

    # The ceiling again after the rows: other work on the machine during either measurement shows as a gap,
    # and the better of the two is the denominator of every share.
    for precision, first in ceilings.items():
        if "error" in first:
            continue
        try:
            again = matmul_ceiling(device, precision, args.ceiling_size, args.ceiling_time_s)
        except Exception as exc:
            first["error_end"] = _short(exc)
            continue
        first.update(
            tflops_start=first["tflops"],
            tflops_end=again["tflops"],
            tflops=max(first["tflops"], again["tflops"]),
            median_tflops=max(first["median_tflops"], again["median_tflops"]),
            best_s=min(first["best_s"], again["best_s"]),
            reps=first["reps"] + again["reps"],
        )
        _free(device)
    for row in rows:
        ceiling = ceilings.get(_ceiling_precision(family, row["precision"])) or ceilings.get("fp32") or {}
        if row.get("status") == "ok" and "tflops" in ceiling:
            row["ceiling_precision"] = ceiling["precision"]
            row["share_of_ceiling"] = row["model_tflops"] / ceiling["tflops"]
    info["loadavg_end"] = _loadavg()
    log(f"done in {time.perf_counter() - started:.1f} s")
    result: dict[str, Any] = {
        "benchmark": "inference",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "machine_line": machine_line(info),
        "config": {
            "model_name": subject.name,
            "family": family,
            "preset": args.preset,
            "model": {"family": family, **dataclasses.asdict(subject.config)},
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights": subject.weights,
            "trained_weights": subject.trained,
            "activation": subject.activation,
            "features": dataclasses.asdict(features),
            "windows_per_excerpt": per_excerpt,
            "device": str(device),
            "batch_sizes": args.batch_sizes,
            "precisions": args.precisions,
            "compile": args.compile,
            "channels_last": args.channels_last,
            "op_breakdown": args.op_breakdown,
            "warmup": args.warmup,
            "iters": args.iters,
            "min_time_s": args.min_time_s,
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "timed_input": "device-resident standard normal windows in the variant's dtype; no host transfers",
        },
        "flops_per_window": flops,
        "windows_per_excerpt": per_excerpt,
        "ceiling_note": _ceiling_note(family),
        "ceilings": list(ceilings.values()),
        "variants": variants,
        "results": rows,
        "parity_inputs": {name: desc for name, (_, _, desc) in parity_sets.items()},
        "parity": parity,
        "parity_error": parity_error,
        "best_share": _best_shares(rows),
    }
    if subject.trained and subject.corpus_labels and "music" in parity_sets and parity_sets["music"][1] is not None:
        labels = parity_sets["music"][1]
        result["reference_accuracy_pct"] = float((reference_logits["music"].argmax(1) == labels).mean() * 100)
    return result


def _variant_name(v: dict[str, Any]) -> str:
    name = f"{v['precision']} compile={'on' if v['compile'] else 'off'}"
    return name + (" channels-last" if v.get("channels_last") else "")


def _best_shares(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    keys = ("compile", "channels_last", "batch_size", "windows_per_s", "ms_per_excerpt", "model_tflops")
    for row in rows:
        if "share_of_ceiling" not in row:
            continue
        current = best.get(row["precision"])
        if current is None or row["share_of_ceiling"] > current["share_of_ceiling"]:
            best[row["precision"]] = {**{k: row[k] for k in keys}, "share_of_ceiling": row["share_of_ceiling"]}
    return best


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------


def _row_line(row: dict[str, Any]) -> str:
    name = f"{row['precision']:<5} compile={'on ' if row['compile'] else 'off'}"
    name += f"{' channels-last' if row.get('channels_last') else ''} batch={row['batch_size']:<5}"
    if row["status"] != "ok":
        return f"  {name} {row['status']}: {row.get('error', '')}"
    memory = "" if row.get("peak_gpu_mib") is None else f"  peak {row['peak_gpu_mib']:.0f} MiB"
    return (
        f"  {name} {row['windows_per_s']:>10.1f} windows/s  p50 {row['p50_ms']:.2f} ms"
        f"  {row['ms_per_excerpt']:.1f} ms/excerpt{memory}"
    )


def _table(headers: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def format_report(result: dict[str, Any]) -> str:
    """The human-readable tables of a :func:`run_benchmark` result."""
    cfg = result["config"]
    parts = [
        "",
        f"AcousticSense inference benchmark, {result['date']}",
        f"machine: {result['machine_line']}",
        f"model: {cfg['model_name']} ({cfg['family']}), {result['flops_per_window'] / 1e9:.3f} GFLOP/window, "
        f"{result['windows_per_excerpt']} windows per {cfg['features']['excerpt_s']:g} s excerpt, "
        f"weights: {cfg['weights']}",
        f"device: {cfg['device']}; timed input: {cfg['timed_input']}",
        "",
        f"Ceiling ({result['ceiling_note']})",
    ]
    lines = []
    for c in result["ceilings"]:
        if "error" in c:
            lines.append([c["precision"], "-", "-", "-", "-", "-", c["error"][:60]])
        else:
            lines.append(
                [
                    c["precision"],
                    c["what"],
                    str(c["reps"]),
                    f"{c['best_s'] * 1e3:.1f}",
                    f"{c['tflops']:.3f}",
                    f"{c['median_tflops']:.3f}",
                    f"{c.get('tflops_start', c['tflops']):.3f} / {c.get('tflops_end', float('nan')):.3f}",
                ]
            )
    headers = ["precision", "what", "reps", "best ms", "TFLOP/s (best)", "TFLOP/s (median)", "start / end"]
    parts += [_table(headers, lines), "", "Throughput and latency"]
    lines = []
    for r in result["results"]:
        base = [r["precision"], "on" if r["compile"] else "off", _layout(r), str(r["batch_size"])]
        if r["status"] != "ok":
            lines.append(base + [r["status"], "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        share = f"{r['share_of_ceiling'] * 100:.1f}" if "share_of_ceiling" in r else "-"
        first = f"{r['first_call_s']:.2f}"
        lines.append(
            base
            + [
                f"{r['windows_per_s']:.1f}",
                f"{r['windows_per_s_p50']:.1f}",
                "-" if r.get("windows_per_cpu_s") is None else f"{r['windows_per_cpu_s']:.1f}",
                f"{r['ms_per_excerpt']:.1f}",
                f"{r['p50_ms']:.3f}",
                f"{r['p90_ms']:.3f}",
                f"{r['model_tflops']:.4f}",
                share,
                first,
                "-" if r.get("loadavg_1m") is None else f"{r['loadavg_1m']:.1f}",
                "-" if r.get("peak_gpu_mib") is None else f"{r['peak_gpu_mib']:.0f}",
            ]
        )
    parts.append(
        _table(
            [
                "precision",
                "compile",
                "layout",
                "batch",
                "windows/s",
                "w/s@p50",
                "w/cpu-s",
                "ms/excerpt",
                "p50 ms",
                "p90 ms",
                "TFLOP/s",
                "% ceiling",
                "1st s",
                "load",
                "GPU MiB",
            ],
            lines,
        )
    )
    problems = [r for r in result["results"] if r["status"] in ("oom", "error")]
    problems += [v for v in result["variants"] if v["status"] != "ok" and "error" in v]
    for p in problems:
        where = _variant_name(p)
        if "batch_size" in p:
            where += f" batch={p['batch_size']}"
        parts.append(f"  {p['status']}: {where}: {p['error']}")
    parts.append(
        "  (windows/s: batches x size / wall time; w/s@p50: size / median latency, robust to other load;"
        " w/cpu-s: windows per CPU-second of this process, all threads;"
        f" ms/excerpt: model time for the {result['windows_per_excerpt']} windows of one file's excerpt at that rate;"
        " layout: nchw, or nhwc with --channels-last; 1st s: the untimed first forward, with compile on the compile"
        " time; load: 1-min load average after it; GPU MiB: peak torch allocation during that batch size's runs,"
        " weights included)"
    )
    compiled = [v for v in result["variants"] if v["compile"] and v["status"] == "ok"]
    for v in compiled:
        parts.append(f"  compile time {_variant_name(v)}: {v['compile_s']:.1f} s over all batch sizes")
    for v in result["variants"]:
        if "ops" in v.get("op_breakdown", {}):
            ops = ", ".join(f"{o['op']} {o['share_pct']:.1f} %" for o in v["op_breakdown"]["ops"])
            parts.append(f"  self time by op, {_variant_name(v)}, batch {v['op_breakdown']['batch_size']}: {ops}")

    parts += ["", f"Parity with fp32 eager (same inputs, {cfg['activation']} scores)"]
    for name, desc in result["parity_inputs"].items():
        parts.append(f"  inputs '{name}': {desc}")
    if "reference_accuracy_pct" in result:
        parts.append(f"  fp32 accuracy on the demo-corpus labels: {result['reference_accuracy_pct']:.1f} %")
    if not cfg["trained_weights"]:
        parts.append("  NOTE: random-init weights (no trained weights for this model here): a weaker parity test")
    lines = []
    for p in result["parity"]:
        base = [p["precision"], "on" if p["compile"] else "off", _layout(p), p["inputs"]]
        if "error" in p:
            lines.append(base + ["error", "-", "-", "-", "-", "-", p["error"][:60]])
        else:
            acc = f"{p['accuracy_pct']:.1f}" if "accuracy_pct" in p else "-"
            lines.append(
                base
                + [
                    str(p["windows"]),
                    f"{p['top1_agreement_pct']:.2f}",
                    f"{p['top5_agreement_pct']:.2f}",
                    f"{p['top5_overlap_pct']:.2f}",
                    f"{p['max_abs_prob_diff']:.2e}",
                    f"{p['mean_abs_prob_diff']:.2e}",
                    acc,
                ]
            )
    if result.get("parity_error"):
        parts.append(f"  {result['parity_error']}")
    if lines:
        parts.append(
            _table(
                [
                    "precision",
                    "compile",
                    "layout",
                    "inputs",
                    "windows",
                    "top-1 agree %",
                    "top-5 same %",
                    "top-5 overlap %",
                    "max |dp|",
                    "mean |dp|",
                    "acc %",
                ],
                lines,
            )
        )
    else:
        parts.append("  (no variant besides fp32 eager, or --parity-windows 0)")

    parts.append("")
    best = result["best_share"]
    for precision in ("fp16", "bf16", "fp32", "int8"):
        if precision in best:
            b = best[precision]
            layout = ", channels-last" if b["channels_last"] else ""
            parts.append(
                f"best share of the {_ceiling_precision(cfg['family'], precision)} ceiling, {precision} "
                f"{cfg['model_name']}: {b['share_of_ceiling'] * 100:.1f} % ({b['model_tflops']:.4f} TFLOP/s, "
                f"{b['windows_per_s']:.1f} windows/s = {b['ms_per_excerpt']:.1f} ms per excerpt at batch "
                f"{b['batch_size']}, compile {'on' if b['compile'] else 'off'}{layout})"
            )
    half = [best[p]["share_of_ceiling"] for p in ("fp16", "bf16") if p in best]
    if half:
        parts.append(f"BEST fp16/bf16 share of ceiling ({cfg['model_name']}): {max(half) * 100:.1f} %")
    return "\n".join(parts)


def _layout(entry: dict[str, Any]) -> str:
    return "nhwc" if entry.get("channels_last") else "nchw"


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("need positive integers separated by commas")
    return values


def _precision_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in ("fp32", "fp16", "bf16", "int8")]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"precisions are fp32, fp16, bf16, int8 (got {text!r})")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference",
        description="Time one window classifier alone (plain PyTorch through acousticsense): windows/s, "
        "cost per excerpt, latency, share of a matmul ceiling, and parity of fp16/bf16/compile/int8/channels-last "
        "with fp32.",
    )
    parser.add_argument(
        "--model",
        choices=list(MODELS),
        default="vit",
        help="; ".join(f"{name}: {text}" for name, text in MODELS.items()) + " (default vit)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(MODEL_PRESETS),
        help="ViT size, --model vit only (default: base on CUDA, tiny on CPU)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        help="default 1,2,4,...,1024 on CUDA (ast: to 256); 1,8,32,128 on CPU (musicnn: 1,8,32; ast: 1,4)",
    )
    parser.add_argument(
        "--precisions", type=_precision_list, help="default fp32,fp16,bf16 on CUDA; fp32,bf16,int8 on CPU"
    )
    parser.add_argument(
        "--compile", choices=("both", "on", "off"), help="torch.compile (default both on CUDA, off on CPU)"
    )
    parser.add_argument(
        "--channels-last",
        choices=("both", "on", "off"),
        default="off",
        help="store the 4-D conv weights in torch.channels_last as well / instead (musicnn's front end; default off)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed batches after the first call (default 5 CUDA, 2 CPU; on CPU musicnn 1, ast 0)",
    )
    parser.add_argument(
        "--iters", type=int, help="at least this many timed batches (default 20 CUDA, 10 CPU; on CPU musicnn 3, ast 2)"
    )
    parser.add_argument(
        "--min-time-s",
        type=float,
        help="and at least this long per row (default 0.5 CUDA, 0.25 CPU; on CPU musicnn and ast 0)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument(
        "--parity-windows",
        type=int,
        help="windows per parity input set (default 512 CUDA, 128 CPU; ast 64 CUDA; on CPU musicnn 32, ast 4)",
    )
    parser.add_argument(
        "--ceiling-size", type=int, help="square matmul size for the ceiling (default 8192 CUDA, 4096 CPU)"
    )
    parser.add_argument("--ceiling-time-s", type=float, default=1.0, help="time each ceiling for this long (default 1)")
    parser.add_argument(
        "--op-breakdown",
        action="store_true",
        help="profile one forward per variant at its largest batch: self time per op (torch.profiler)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and random weights (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON result here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.device = select_device(args.device)
    except Exception as exc:  # ConfigError or a bad device string
        parser.error(str(exc))
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"device {args.device} is not supported here; use cpu or cuda")
    if args.model != "vit" and args.preset is not None:
        parser.error(f"--preset sizes the ViT; --model {args.model} has fixed dimensions")
    family = args.model.split("-")[0]
    defaults = _CUDA_DEFAULTS if args.device.type == "cuda" else _CPU_DEFAULTS
    defaults = {**defaults, **_FAMILY_DEFAULTS.get((args.device.type, family), {})}
    if args.model != "vit":
        defaults["preset"] = None
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup < 0 or args.iters < 1 or args.min_time_s < 0 or args.parity_windows < 0 or args.ceiling_size < 1:
        parser.error("need --warmup >= 0, --iters >= 1, --min-time-s >= 0, --parity-windows >= 0, --ceiling-size >= 1")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)

    result = run_benchmark(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(result))
    line = json.dumps(result, default=str)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
