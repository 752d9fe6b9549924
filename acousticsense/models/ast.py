"""AST (Audio Spectrogram Transformer, Gong et al. 2021) in plain PyTorch, loadable from a transformers checkpoint.

Same math as transformers' ``ASTForAudioClassification`` in eval mode (e.g. the hub's
``MIT/ast-finetuned-audioset-10-10-0.4593``, AudioSet's 527 classes): the normalised log-mel image
``(n_mels, window_frames)`` is cut into ``patch_size`` squares at stride ``(frequency_stride,
time_stride)`` (overlapping: 12 x 101 = 1212 patches for the defaults), each projected to ``dim``;
a cls and a distillation token are prepended, a learned position embedding added, pre-norm blocks
(separate q/k/v projections, ``scaled_dot_product_attention``, GELU MLP) follow, then a final
LayerNorm; the mean of the two special tokens goes through the classifier's LayerNorm and Linear.

Input: ``(batch, n_mels, window_frames)``, frequency first like the rest of AcousticSense (transformers
takes ``(batch, frames, n_mels)`` and transposes it to the same image inside its patch embedding).
Make it with :class:`acousticsense.fbank.KaldiFbank` and :func:`ast_input_from_fbank`.

Importing a checkpoint folder (``config.json`` + ``model.safetensors``, as ``save_pretrained`` writes
them or the hub serves them) needs ``json`` and ``safetensors`` only, never transformers:
:func:`ast_config_from_transformers`, :func:`ast_state_dict_from_transformers`, or both at once with
:func:`load_transformers_ast`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acousticsense.errors import BundleError, ConfigError

__all__ = [
    "AST_NORM_MEAN",
    "AST_NORM_STD",
    "ASTConfig",
    "ASTClassifier",
    "ast_input_from_fbank",
    "ast_config_from_transformers",
    "ast_state_dict_from_transformers",
    "load_transformers_ast",
]

#: AudioSet statistics of the un-normalised Kaldi log fbank (``ASTFeatureExtractor`` defaults).
AST_NORM_MEAN = -4.2677393
#: Note: the extractor divides by **2 x** this value: ``(x - AST_NORM_MEAN) / (2 * AST_NORM_STD)``.
AST_NORM_STD = 4.5689974


@dataclass(frozen=True)
class ASTConfig:
    """Dimensions of an AST classifier, the ``ast`` family (defaults: ``MIT/ast-finetuned-audioset-10-10-0.4593``).

    Attributes:
        n_mels: mel bands of the input image (transformers: ``num_mel_bins``).
        window_frames: fbank frames of the input image, 10 ms each (transformers: ``max_length``).
        patch_size: side of the square patches.
        frequency_stride: patch stride along mel bands.
        time_stride: patch stride along frames.
        dim: token width (``hidden_size``).
        depth: transformer blocks (``num_hidden_layers``).
        heads: attention heads (``num_attention_heads``).
        mlp_dim: hidden width of the MLPs (``intermediate_size``).
        layer_norm_eps: epsilon of every LayerNorm.
        n_classes: logits per window (``num_labels``).
    """

    family: ClassVar[str] = "ast"

    n_mels: int = 128
    window_frames: int = 1024
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    layer_norm_eps: float = 1e-12
    n_classes: int = 527

    def __post_init__(self) -> None:
        _check(self.patch_size > 0, f"patch_size must be positive, got {self.patch_size}")
        _check(
            self.n_mels >= self.patch_size and self.window_frames >= self.patch_size,
            f"the input image ({self.n_mels} x {self.window_frames}) must be at least one patch "
            f"({self.patch_size} x {self.patch_size})",
        )
        _check(
            self.frequency_stride > 0 and self.time_stride > 0,
            f"strides must be positive, got frequency {self.frequency_stride}, time {self.time_stride}",
        )
        _check(
            self.dim > 0 and self.heads > 0 and self.dim % self.heads == 0, "dim must be a positive multiple of heads"
        )
        _check(self.depth > 0 and self.mlp_dim > 0, "depth and mlp_dim must be positive")
        _check(self.layer_norm_eps > 0, "layer_norm_eps must be positive")
        _check(self.n_classes >= 1, f"n_classes must be >= 1, got {self.n_classes}")

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patches along (mel, time): ``(12, 101)`` for the defaults."""
        return (
            (self.n_mels - self.patch_size) // self.frequency_stride + 1,
            (self.window_frames - self.patch_size) // self.time_stride + 1,
        )

    @property
    def n_patches(self) -> int:
        """Patch tokens (1212 for the defaults); the sequence adds the cls and distillation tokens."""
        freq, time = self.patch_grid
        return freq * time

    @property
    def input_shape(self) -> tuple[int, int]:
        """One window: ``(n_mels, window_frames)``."""
        return (self.n_mels, self.window_frames)


def ast_input_from_fbank(fbank: Tensor, window_frames: int = 1024) -> Tensor:
    """Un-normalised log fbank -> AST input, exactly as ``ASTFeatureExtractor`` pads, cuts and normalises.

    The extractor pads short spectrograms with **0 in log units** at the end (or keeps the first
    ``window_frames`` frames of long ones) and normalises afterwards, so padded frames become
    ``-AST_NORM_MEAN / (2 * AST_NORM_STD)`` (about 0.467), not 0.

    Args:
        fbank: ``(..., n_mels, frames)`` from :class:`acousticsense.fbank.KaldiFbank`.
        window_frames: the model's ``ASTConfig.window_frames``.

    Returns:
        ``(..., n_mels, window_frames)``, same dtype, ``(x - AST_NORM_MEAN) / (2 * AST_NORM_STD)``.
    """
    frames = fbank.shape[-1]
    if frames < window_frames:
        fbank = F.pad(fbank, (0, window_frames - frames), value=0.0)
    else:
        fbank = fbank[..., :window_frames]
    return (fbank - AST_NORM_MEAN) / (2 * AST_NORM_STD)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape

        def split(t: Tensor) -> Tensor:  # (batch, tokens, dim) -> (batch, heads, tokens, head_dim)
            return t.reshape(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ASTClassifier(nn.Module):
    """AST over normalised log-mel windows; one logit per class (AudioSet: sigmoid, multi-label).

    Args:
        config: model dimensions; ``config.input_shape`` is the input image.

    Freshly built, the weights are random (truncated normal, std 0.02); load a checkpoint with
    :func:`load_transformers_ast` or ``load_state_dict(ast_state_dict_from_transformers(...))``.
    """

    def __init__(self, config: ASTConfig) -> None:
        super().__init__()
        self.config = config
        p = config.patch_size
        self.patch_embed = nn.Conv2d(
            1, config.dim, kernel_size=(p, p), stride=(config.frequency_stride, config.time_stride)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.n_patches + 2, config.dim))
        self.blocks = nn.ModuleList(
            _Block(config.dim, config.heads, config.mlp_dim, config.layer_norm_eps) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.head_norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.dim, config.n_classes)
        for param in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(param, std=0.02)
        self.apply(_init_weights)

    def forward(self, windows: Tensor) -> Tensor:
        """Args: windows: ``(batch, n_mels, window_frames)``, normalised log fbank (:func:`ast_input_from_fbank`).

        Returns:
            ``(batch, n_classes)`` logits.
        """
        if windows.ndim != 3 or tuple(windows.shape[1:]) != self.config.input_shape:
            raise ValueError(
                f"ASTClassifier wants (batch, {self.config.n_mels}, {self.config.window_frames}), "
                f"got {tuple(windows.shape)}"
            )
        x = self.patch_embed(windows.unsqueeze(1))  # (batch, dim, mel patches, time patches)
        x = x.flatten(2).transpose(1, 2)  # (batch, n_patches, dim), mel-major like transformers
        special = torch.cat((self.cls_token, self.dist_token), dim=1).expand(x.shape[0], -1, -1)
        x = torch.cat((special, x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        pooled = (x[:, 0] + x[:, 1]) / 2
        return self.head(self.head_norm(pooled))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --- import from transformers' checkpoint format -------------------------------------------------------------------

_MODEL_TYPE = "audio-spectrogram-transformer"

# config.json key -> ASTConfig field (absent keys take ASTConfig's defaults, which are transformers' ASTConfig's).
_CONFIG_FIELDS = {
    "num_mel_bins": "n_mels",
    "max_length": "window_frames",
    "patch_size": "patch_size",
    "frequency_stride": "frequency_stride",
    "time_stride": "time_stride",
    "hidden_size": "dim",
    "num_hidden_layers": "depth",
    "num_attention_heads": "heads",
    "intermediate_size": "mlp_dim",
    "layer_norm_eps": "layer_norm_eps",
}

_PREFIX = "audio_spectrogram_transformer."
_FIXED_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
# Within block i. Checkpoints (the hub's, and what save_pretrained writes) use the ViT names under
# "encoder.layer.{i}."; transformers >= 5 names its modules "layers.{i}." with *_proj / mlp.fc* inside
# (a state_dict() taken in memory). Both are accepted.
_BLOCK_NAMES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.attention.query": "attn.q",
    "attention.attention.key": "attn.k",
    "attention.attention.value": "attn.v",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.0",
    "output.dense": "mlp.2",
    "attention.q_proj": "attn.q",
    "attention.k_proj": "attn.k",
    "attention.v_proj": "attn.v",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.2",
}
_BLOCK_KEY = re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)")
_HEAD_NAMES = {
    "classifier.layernorm.weight": "head_norm.weight",
    "classifier.layernorm.bias": "head_norm.bias",
    "classifier.dense.weight": "head.weight",
    "classifier.dense.bias": "head.bias",
}


def ast_config_from_transformers(config: dict[str, Any]) -> tuple[ASTConfig, tuple[str, ...]]:
    """A transformers ``config.json`` (as a dict) -> :class:`ASTConfig` and the labels in id order.

    Args:
        config: the parsed ``config.json`` of an ``ASTForAudioClassification`` checkpoint.

    Returns:
        ``(config, labels)``; ``labels[i]`` is ``id2label[i]`` and ``config.n_classes == len(labels)``.

    Raises:
        BundleError: not an AST config, a variant this port does not implement (activation, no q/k/v
            bias, custom head_dim, rectangular patches), or ``id2label`` missing or not ids 0..n-1.
    """
    model_type = config.get("model_type")
    if model_type != _MODEL_TYPE:
        raise BundleError(f"config.json has model_type {model_type!r}, expected {_MODEL_TYPE!r} (an AST checkpoint)")
    unsupported = []
    if config.get("hidden_act", "gelu") != "gelu":
        unsupported.append(f"hidden_act={config['hidden_act']!r} (only 'gelu')")
    if not config.get("qkv_bias", True):
        unsupported.append("qkv_bias=false (only true)")
    hidden, heads = config.get("hidden_size", ASTConfig.dim), config.get("num_attention_heads", ASTConfig.heads)
    if config.get("head_dim") not in (None, hidden // max(heads, 1)):
        unsupported.append(f"head_dim={config['head_dim']} (only hidden_size // num_attention_heads)")
    values: dict[str, Any] = {field: config[key] for key, field in _CONFIG_FIELDS.items() if key in config}
    patch = values.get("patch_size")
    if isinstance(patch, (list, tuple)):
        if len(patch) != 2 or patch[0] != patch[1]:
            unsupported.append(f"patch_size={list(patch)} (only square patches)")
        else:
            values["patch_size"] = patch[0]
    if unsupported:
        raise BundleError("this AST checkpoint uses settings the port does not implement: " + "; ".join(unsupported))

    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise BundleError("config.json has no id2label: an AST classifier checkpoint must name its classes")
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as e:
        raise BundleError(f"config.json id2label has a non-integer id: {sorted(id2label)[:5]}") from e
    if sorted(by_id) != list(range(len(by_id))):
        raise BundleError(f"config.json id2label ids must be 0..{len(by_id) - 1} without gaps")
    labels = tuple(by_id[i] for i in range(len(by_id)))
    try:
        return ASTConfig(**values, n_classes=len(labels)), labels
    except (ConfigError, TypeError) as e:
        raise BundleError(f"config.json does not describe a valid AST: {e}") from e


def ast_state_dict_from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a transformers ``ASTForAudioClassification`` state dict to :class:`ASTClassifier`'s names.

    Accepts the checkpoint names (``audio_spectrogram_transformer.encoder.layer.{i}.attention.attention.query.weight``,
    what the hub serves and ``save_pretrained`` writes) and transformers 5's in-memory names
    (``audio_spectrogram_transformer.layers.{i}.attention.q_proj.weight``). Tensors are passed through
    unchanged (same objects); shapes are checked by ``load_state_dict``.

    Raises:
        BundleError: a name is unknown, two names map to the same tensor, or a tensor the model needs
            is missing (block count taken from the checkpoint; each problem named).
    """
    renamed: dict[str, Tensor] = {}
    unknown: list[str] = []
    duplicated: list[str] = []
    for name, tensor in state.items():
        target = _rename(name)
        if target is None:
            unknown.append(name)
        elif target in renamed:
            duplicated.append(name)
        else:
            renamed[target] = tensor
    depth = 1 + max((int(m.group(1)) for k in renamed if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    expected = set(_FIXED_NAMES.values()) | set(_HEAD_NAMES.values())
    for i in range(depth):
        for block_name in set(_BLOCK_NAMES.values()):
            expected |= {f"blocks.{i}.{block_name}.weight", f"blocks.{i}.{block_name}.bias"}
    missing = sorted(expected - set(renamed))
    problems = []
    if unknown:
        problems.append(f"unknown tensor name(s) {sorted(unknown)}")
    if duplicated:
        problems.append(f"tensor(s) given twice under old and new names {sorted(duplicated)}")
    if missing:
        problems.append(f"missing tensor(s) {missing} (ASTClassifier names)")
    if depth == 0:
        problems.append("no transformer blocks found")
    if problems:
        raise BundleError("not an ASTForAudioClassification state dict: " + "; ".join(problems))
    return renamed


def _rename(name: str) -> str | None:
    if name in _HEAD_NAMES:
        return _HEAD_NAMES[name]
    if not name.startswith(_PREFIX):
        return None
    rest = name[len(_PREFIX) :]
    if rest in _FIXED_NAMES:
        return _FIXED_NAMES[rest]
    match = _BLOCK_KEY.fullmatch(rest)
    if match is None or match.group(2) not in _BLOCK_NAMES:
        return None
    return f"blocks.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}.{match.group(3)}"


def load_transformers_ast(folder: str | Path) -> tuple[ASTClassifier, tuple[str, ...]]:
    """Build an :class:`ASTClassifier` from a transformers checkpoint folder (``config.json`` + ``model.safetensors``).

    Weights are read with safetensors (never unpickled) and loaded strictly; the model is returned in
    eval mode, float32, on the CPU.

    Returns:
        ``(model, labels)`` with ``labels`` in logit order.

    Raises:
        BundleError: a file is missing or malformed, or the checkpoint does not match the config.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    if not weights_path.is_file():
        hint = (
            " (sharded checkpoints are not supported)"
            if (folder / "model.safetensors.index.json").is_file()
            else " (convert pytorch_model.bin to safetensors first)"
        )
        raise BundleError(f"{weights_path} not found{hint}")
    try:
        config_dict = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"cannot read {config_path}: {e}") from e
    config, labels = ast_config_from_transformers(config_dict)
    try:
        state = load_file(str(weights_path))
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        raise BundleError(f"cannot read {weights_path}: {e}") from e
    model = ASTClassifier(config)
    try:
        model.load_state_dict({k: v.float() for k, v in ast_state_dict_from_transformers(state).items()})
    except RuntimeError as e:  # shape mismatches between config.json and the weights
        raise BundleError(f"{weights_path} does not match {config_path}: {e}") from e
    return model.eval(), labels


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
