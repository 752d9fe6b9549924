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
from acousticsense import FeatureConfig, MusicnnConfig, ViTConfig, build_model, load_bundle, model_config_for
from acousticsense.models import ASTConfig
from benchmarks.inference import (
    ast_flops_per_window,
    flops_per_window,
    main,
    musicnn_flops_per_window,
    vit_flops_per_window,
)


def _counted_flops_per_window(config, batch: int = 2) -> int:
    """FLOPs that torch's FlopCounterMode sees in one forward pass of the family's model, per window.

    The math SDPA backend runs attention as two bmm calls the counter knows; the fused CPU kernel
    (``_scaled_dot_product_flash_attention_for_cpu``) has no FLOP formula and would count as zero.
    """
    torch.manual_seed(0)
    model = build_model(config)
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
    config = ViTConfig(n_mels=64, window_frames=96, patch_size=8, dim=48, depth=3, heads=3, mlp_ratio=2.0, n_classes=7)
    assert vit_flops_per_window(config) == pytest.approx(_counted_flops_per_window(config), rel=0.02)


def test_musicnn_flops_match_hand_count_and_flop_counter():
    config = MusicnnConfig()  # one network, as musicnn-msd and musicnn-mtt
    # By hand, 187 frames x 96 mel bands: timbral 7x38 and 7x67 (204 filters, valid over mel: 59 and 30 bands),
    # temporal 128/64/32 x 1 (51 filters, all 96 bands), mid-end 561 -> 64 -> 64 -> 64 (kernel 7), dense.
    timbral = 204 * 187 * 59 * 7 * 38 + 204 * 187 * 30 * 7 * 67  # 598,694,712 + 536,742,360 MACs
    temporal = 51 * 187 * 96 * (128 + 64 + 32)  # 205,083,648
    midend = 64 * 187 * 7 * (561 + 64 + 64)  # 57,721,536
    dense = 1506 * 200 + 200 * 50  # 311,200
    assert musicnn_flops_per_window(config) == 2 * (timbral + temporal + midend + dense) == 2_797_107_168
    assert musicnn_flops_per_window(config) == pytest.approx(_counted_flops_per_window(config), rel=0.01)
    # The default bundle runs both networks: twice the work, and the output merge adds none.
    both = load_bundle("musicnn-msd-mtt", weights=False).model
    assert flops_per_window(both) == 2 * 2_797_107_168
    assert flops_per_window(both) == pytest.approx(_counted_flops_per_window(both, batch=1), rel=0.01)


def test_musicnn_flops_follow_the_config():
    config = MusicnnConfig(
        n_mels=40, window_frames=50, timbral_kernels=((3, 10),), timbral_filters=8, temporal_kernels=(16, 5),
        temporal_filters=4, midend_filters=8, midend_kernel=3, backend_units=16, tags=6, networks=2,
    )  # fmt: skip
    assert musicnn_flops_per_window(config) == pytest.approx(_counted_flops_per_window(config), rel=0.01)


def test_ast_flops_match_hand_count_and_flop_counter():
    config = ASTConfig()  # AudioSet geometry, ViT-B
    assert config.n_patches + 2 == 1214
    patch_embed = 2 * 1212 * 768 * 16 * 16
    per_block = 2 * 1214 * (4 * 768 * 768 + 2 * 3072 * 768) + 4 * 1214 * 1214 * 768
    assert ast_flops_per_window(config) == patch_embed + 12 * per_block + 2 * 768 * 527
    assert ast_flops_per_window(config) / 1e9 == pytest.approx(261.0, abs=0.1)
    small = ASTConfig(
        n_mels=32, window_frames=64, patch_size=8, frequency_stride=6, time_stride=6, dim=32, depth=2, heads=2,
        mlp_dim=64, n_classes=5,
    )  # fmt: skip
    assert ast_flops_per_window(small) == pytest.approx(_counted_flops_per_window(small), rel=0.02)


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
    assert result["config"]["trained_weights"] is True  # tiny is the synthetic-tiny bundle's preset
    assert (result["config"]["model_name"], result["config"]["activation"]) == ("vit-tiny", "softmax")
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
        assert p["windows"] == 16 and p["finite"] and p["activation"] == "softmax"
        # Counted over the 16 windows: whole windows for top-1 / top-5 sets, fifths of a window for overlap.
        assert _is_multiple(p["top1_agreement_pct"], 100 / 16) and _is_multiple(p["top5_agreement_pct"], 100 / 16)
        assert _is_multiple(p["top5_overlap_pct"], 100 / (16 * 5))
        assert p["top5_agreement_pct"] <= p["top5_overlap_pct"]  # a window with the same top 5 overlaps fully
        assert 0.0 < p["mean_abs_prob_diff"] <= p["max_abs_prob_diff"]  # int8 is not bit-exact, nor far off
    music = next(p for p in parity if p["inputs"] == "music")
    # The trained tiny model on the music it was trained on: dynamic int8 keeps nearly every top-1, and its
    # labels are the corpus's genres, so accuracy is reported (and a trained model beats 1/16 chance).
    assert music["top1_agreement_pct"] >= 75.0 and music["max_abs_prob_diff"] < 0.05  # measured: 100 %, 4.4e-3
    assert music["accuracy_pct"] >= 50.0  # measured: 100 % (chance: 6.25 %)
    assert "accuracy_pct" not in next(p for p in parity if p["inputs"] == "normal")  # random inputs: no labels


def _is_multiple(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < 1e-9


def _run(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_musicnn_run_reports_excerpt_cost_ceiling_and_fp32_parity(capsys):
    """The real model: its FLOPs, cost per 30 s excerpt, share of the fp32 ceiling, and channels-last parity."""
    argv = ["--device", "cpu", "--model", "musicnn", "--batch-sizes", "1", "--precisions", "fp32,int8"]
    argv += ["--channels-last", "both", "--iters", "1", "--warmup", "0", "--min-time-s", "0", "--op-breakdown"]
    argv += ["--parity-windows", "2", "--ceiling-size", "256", "--ceiling-time-s", "0"]
    result = _run(argv, capsys)

    cfg = result["config"]
    assert (cfg["model_name"], cfg["family"], cfg["activation"], cfg["trained_weights"]) == (
        "musicnn-msd", "musicnn", "sigmoid", True,
    )  # fmt: skip
    assert cfg["preset"] is None and cfg["model"]["networks"] == 1
    assert result["flops_per_window"] == musicnn_flops_per_window(MusicnnConfig()) == 2_797_107_168
    assert result["windows_per_excerpt"] == 11  # 30 s at 16 kHz, hop 256: 1,876 frames in 187-frame patches
    assert "conv/matmul" in result["ceiling_note"]
    assert [c["precision"] for c in result["ceilings"]] == ["fp32"]  # int8 musicnn runs its convs in fp32

    rows = result["results"]
    assert [(r["precision"], r["channels_last"]) for r in rows] == [
        ("fp32", False), ("fp32", True), ("int8", False), ("int8", True),
    ]  # fmt: skip
    for row in rows:
        assert row["status"] == "ok", row
        assert row["ceiling_precision"] == "fp32" and row["share_of_ceiling"] > 0
        assert row["ms_per_excerpt"] == pytest.approx(11e3 / row["windows_per_s"])
        assert row["excerpts_per_s"] == pytest.approx(row["windows_per_s"] / 11)
        assert row["cpu_s"] > 0 and row["windows_per_cpu_s"] > 0

    breakdown = result["variants"][0]["op_breakdown"]  # fp32 at its largest batch: where the time goes
    assert breakdown["batch_size"] == 1 and any("convolution" in o["op"] for o in breakdown["ops"])
    ops = breakdown["ops"]
    shares = [o["share_pct"] for o in ops]
    assert shares == sorted(shares, reverse=True) and min(shares) > 0  # largest first, no idle rows
    assert sum(shares) <= 100.0 + 1e-9  # the top ops of one pass: at most all of its time
    for op in ops:  # one denominator for every row: share follows self time
        assert op["share_pct"] / shares[0] == pytest.approx(op["self_ms"] / ops[0]["self_ms"], rel=1e-9)

    parity = {(p["precision"], p["channels_last"], p["inputs"]): p for p in result["parity"]}
    variants = [("fp32", True), ("int8", False), ("int8", True)]  # all but the fp32 reference itself
    assert set(parity) == {(*v, inputs) for v in variants for inputs in ("music", "normal")}
    for inputs in ("music", "normal"):
        same = parity[("fp32", True, inputs)]  # fp32 vs fp32, another memory layout: the same numbers
        assert same["activation"] == "sigmoid" and same["windows"] == 2 and same["finite"]
        assert same["max_abs_prob_diff"] < 1e-4 and same["top1_agreement_pct"] == 100.0
        assert same["top5_agreement_pct"] == 100.0 and same["top5_overlap_pct"] == 100.0
        assert parity[("int8", False, inputs)]["max_abs_prob_diff"] < 0.5
    assert "accuracy_pct" not in same  # its tags are not the demo corpus's genres


def test_ast_geometry_runs_with_sigmoid_parity(capsys, monkeypatch):
    """``--model ast`` end to end: AST's front end and 1214-token geometry; a narrow width keeps it fast."""
    narrow = ASTConfig(dim=32, depth=1, heads=2, mlp_dim=64)  # the default 128 x 1024 input, 1212 patches
    monkeypatch.setattr(bench, "ASTConfig", lambda: narrow)
    argv = ["--device", "cpu", "--model", "ast", "--batch-sizes", "1,2", "--precisions", "fp32,bf16"]
    argv += ["--iters", "1", "--warmup", "0", "--min-time-s", "0", "--parity-windows", "2"]
    argv += ["--ceiling-size", "256", "--ceiling-time-s", "0"]
    result = _run(argv, capsys)

    cfg = result["config"]
    assert (cfg["model_name"], cfg["family"], cfg["activation"], cfg["trained_weights"]) == (
        "ast", "ast", "sigmoid", False,
    )  # fmt: skip
    assert (cfg["model"]["n_mels"], cfg["model"]["window_frames"]) == (128, 1024)
    assert cfg["features"]["front_end"] == "kaldi_fbank"
    assert result["flops_per_window"] == ast_flops_per_window(narrow)
    assert result["windows_per_excerpt"] == 3  # 30 s of 10 ms fbank frames in 1024-frame windows
    assert [r["status"] for r in result["results"]] == ["ok"] * 4
    assert "11 s" in result["parity_inputs"]["music"]  # clips longer than one 10.24 s window
    bf16 = [p for p in result["parity"] if p["precision"] == "bf16"]
    assert {p["inputs"] for p in bf16} == {"music", "normal"}
    assert all(p["activation"] == "sigmoid" and p["finite"] and p["max_abs_prob_diff"] < 0.1 for p in bf16)


def test_model_flags_are_checked():
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--model", "musicnn", "--preset", "tiny"])
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--model", "resnet"])


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
        def __init__(self, model, device, precision, compile=False, max_batch_windows=256, **kwargs):
            super().__init__(model, device, precision, compile=False, max_batch_windows=max_batch_windows, **kwargs)
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
