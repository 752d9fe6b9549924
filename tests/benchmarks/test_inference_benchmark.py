"""The accelerator-stage benchmark: its FLOP count and a short CPU run end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import benchmarks.inference as bench
from acousticsense import FeatureConfig, ModelConfig, WindowClassifier, model_config_for
from benchmarks.inference import main, vit_flops_per_window


def _counted_flops_per_window(config: ModelConfig, batch: int = 2) -> int:
    """FLOPs that torch's FlopCounterMode sees in one forward pass, per window.

    The math SDPA backend runs attention as two bmm calls the counter knows; the fused CPU kernel
    (``_scaled_dot_product_flash_attention_for_cpu``) has no FLOP formula and would count as zero.
    """
    torch.manual_seed(0)
    model = WindowClassifier(config).eval()
    x = torch.randn(batch, config.n_mels, config.window_frames)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // batch


def test_tiny_flops_match_hand_count_and_flop_counter():
    config = model_config_for("tiny", FeatureConfig(), 16)
    # By hand: 8 x 14 = 112 tokens of dim 64, MLP hidden 256, 4 blocks, 16 classes.
    patch_embed = 2 * 112 * 64 * 16 * 16  # 3,670,016
    per_block = 2 * 112 * (4 * 64 * 64 + 2 * 256 * 64) + 4 * 112 * 112 * 64  # 2,752,512 + 3,211,264
    head = 2 * 64 * 16
    assert vit_flops_per_window(config) == patch_embed + 4 * per_block + head == 60_557_312
    assert vit_flops_per_window(config) == pytest.approx(_counted_flops_per_window(config), rel=0.02)


def test_flops_follow_the_config():
    config = ModelConfig(
        n_mels=64, window_frames=96, patch_size=8, dim=48, depth=3, heads=3, mlp_ratio=2.0, n_classes=7
    )
    assert vit_flops_per_window(config) == pytest.approx(_counted_flops_per_window(config), rel=0.02)


def test_short_cpu_run_writes_the_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--preset", "tiny", "--batch-sizes", "1,4", "--precisions", "fp32,int8"]
    argv += ["--compile", "off", "--iters", "2", "--warmup", "1", "--json", str(out)]
    argv += ["--min-time-s", "0", "--parity-windows", "16", "--ceiling-size", "512", "--ceiling-time-s", "0.05"]
    assert main(argv) == 0

    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result  # the last line is the JSON
    for key in ("date", "machine", "machine_line", "config", "flops_per_window", "ceilings", "results", "parity"):
        assert key in result, key
    assert result["flops_per_window"] == 60_557_312
    assert result["machine"]["torch"] == torch.__version__ and result["machine"]["cpu_model"]
    assert result["config"]["trained_weights"] is True  # tiny is the demo bundle's preset
    assert {c["precision"] for c in result["ceilings"]} == {"fp32", "int8"}
    assert all(c["tflops"] > 0 for c in result["ceilings"])

    rows = result["results"]
    assert [(r["precision"], r["batch_size"]) for r in rows] == [("fp32", 1), ("fp32", 4), ("int8", 1), ("int8", 4)]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["windows_per_s"] > 0 and row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"]
        assert row["iters"] >= 2 and row["share_of_ceiling"] > 0
        assert row["peak_gpu_mib"] is None  # CPU: no device allocator to read

    parity = result["parity"]
    assert {(p["precision"], p["inputs"]) for p in parity} == {("int8", "music"), ("int8", "normal")}
    for p in parity:
        assert 0.0 <= p["top1_agreement_pct"] <= 100.0
        assert 0.0 <= p["max_abs_prob_diff"] <= 1.0 and p["windows"] == 16 and p["finite"]


@pytest.mark.requires_cuda
def test_cuda_rows_report_peak_gpu_memory_that_grows_with_the_batch(tmp_path):
    out = tmp_path / "bench.json"
    argv = [
        "--device",
        "cuda",
        "--preset",
        "tiny",
        "--batch-sizes",
        "1,256",
        "--precisions",
        "fp16",
        "--compile",
        "off",
    ]
    argv += ["--iters", "2", "--warmup", "1", "--min-time-s", "0", "--parity-windows", "16", "--json", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert 0 < rows[0]["peak_gpu_mib"] < rows[1]["peak_gpu_mib"]


def test_unrunnable_combinations_are_reported_not_fatal(tmp_path, monkeypatch, capsys):
    """A compile failure and an out-of-memory batch become rows with a status; the run still exits 0."""
    real_predictor = bench.WindowPredictor

    class FlakyPredictor(real_predictor):
        def __init__(self, model, device, precision, compile=False, max_batch_windows=256):
            super().__init__(model, device, precision, compile=False, max_batch_windows=max_batch_windows)
            eager = self.model

            def forward(x):
                if compile:
                    raise RuntimeError("inductor exploded")
                if x.shape[0] >= 4:
                    raise bench._OOM("CUDA out of memory. Tried to allocate 1 GiB")
                return eager(x)

            self.model = forward

    monkeypatch.setattr(bench, "WindowPredictor", FlakyPredictor)
    argv = ["--device", "cpu", "--preset", "tiny", "--batch-sizes", "1,4,8", "--precisions", "fp32"]
    argv += ["--compile", "both", "--iters", "1", "--warmup", "0", "--min-time-s", "0", "--parity-windows", "2"]
    argv += ["--ceiling-size", "256", "--ceiling-time-s", "0"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    status = {(r["compile"], r["batch_size"]): r["status"] for r in result["results"]}
    assert status == {
        (False, 1): "ok",
        (False, 4): "oom",
        (False, 8): "skipped",
        (True, 1): "error",
        (True, 4): "skipped",
        (True, 8): "skipped",
    }
    compiled = [v for v in result["variants"] if v["compile"]]
    assert compiled[0]["status"] == "error" and "inductor exploded" in compiled[0]["error"]
    assert bench._skip_reason("int8", torch.device("cuda")) is not None
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--precisions", "fp64"])


def test_the_benchmark_does_not_import_ray():
    code = "import sys, benchmarks.inference; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
