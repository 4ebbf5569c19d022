"""The main job end to end on the tiny preset: CLI, reports, settings precedence, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import centerpoint_deploy.job.run as job_run
from centerpoint_deploy.cli.app import app
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.export import bundle
from centerpoint_deploy.job.report import fmt
from centerpoint_deploy.job.settings import AUTOWARE_FORMATS, DeploySettings


def _deploy(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["deploy", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def job_out(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, tiny_dataset: Path) -> tuple[Path, int, str]:
    """One full run (AWML's rot_y_axis_reference export): a deploy-config YAML the command line partly overrides."""
    root = tmp_path_factory.mktemp("job")
    deploy_config = root / "deploy.yaml"
    deploy_config.write_text("config: tiny\nexport: {rot_y_axis_reference: true}\nverify: {frames: 3}\n"
                             "evaluate: {bev_frames: 3, max_frames: 3}\nbenchmark: {iterations: 3, warmup: 0}\n")
    code, output = _deploy(["--deploy-config", str(deploy_config), "--checkpoint", str(tiny_checkpoint),
                            "--dataset", str(tiny_dataset), "--out", str(root / "out"), "--verify-frames", "2",
                            "--bev-frames", "1", "--iterations", "2"])
    return root / "out", code, output


def test_job_writes_reports_with_the_results(job_out: tuple[Path, int, str]) -> None:
    out, code, _ = job_out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["passed"] is True and results["verification_passed"] is True
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    summary = results["summary"]
    assert list(summary) == ["pytorch", "onnxruntime"]
    for name, entry in summary.items():
        metrics = results["metrics"][name]
        assert entry["mAP"] == metrics["mean_ap"] and entry["NDS"] == metrics["nd_score"]
        row = f"| {name} | {fmt(entry['mAP'])} | {fmt(entry['NDS'])} | {entry['verification']} | " \
              f"{fmt(entry['latency_p50_ms'], 1)} |"
        assert row in markdown
        assert (f'<td>{name}</td><td class="num">{fmt(entry["mAP"])}</td><td class="num">{fmt(entry["NDS"])}</td>'
                in page)
        assert entry["latency_p50_ms"] > 0
    assert summary["onnxruntime"]["verification"] == "PASS"
    assert set(results["metric_config"]["class_range"].values()) == {10.0}  # tiny grid: ±12.8 m
    # the report embeds its images and links the detailed reports
    assert page.count("data:image/png;base64,") >= 4  # PR curves x2, one BEV, benchmark stages
    assert "![pytorch: precision-recall per class](evaluation/pytorch/pr_curves.png)" in markdown
    for linked in ("verification/onnxruntime/verification.md", "evaluation/comparison.md", "benchmark/benchmark.md"):
        assert f"]({linked})" in markdown and (out / linked).is_file()
    assert (out / "deploy" / "pts_voxel_encoder.onnx").is_file() and (out / "deploy" / "deploy_metadata.yaml").is_file()


def test_command_line_overrides_the_deploy_config(job_out: tuple[Path, int, str]) -> None:
    out, _, _ = job_out
    results = json.loads((out / "results.json").read_text())
    settings = results["settings"]
    assert settings["config"] == "tiny" and settings["evaluate"]["max_frames"] == 3          # YAML
    assert settings["export"]["rot_y_axis_reference"] is True                                # YAML
    metadata = yaml.safe_load((out / "deploy" / "deploy_metadata.yaml").read_text())
    assert metadata["rot_y_axis_reference"] is True
    assert metadata["checks"]["verification.onnxruntime"]["passed"] is True                 # recorded by the job
    assert set(metadata["checks"]["evaluation.onnxruntime"]["figures"]) == {"mAP", "NDS"}
    assert settings["verify"]["frames"] == 2 and settings["evaluate"]["bev_frames"] == 1     # flags beat YAML
    assert (settings["benchmark"]["iterations"], settings["benchmark"]["warmup"]) == (2, 0)  # flag, YAML
    assert results["inputs"]["verified_frames"] == [0, 2] and results["inputs"]["evaluated_frames"] == [0, 1, 2]
    assert len(list((out / "evaluation" / "bev").glob("*.png"))) == 1
    assert results["benchmark"]["settings"]["iterations"] == 2
    assert all(r["end_to_end"]["count"] == 2 for r in results["benchmark"]["results"])


def test_everything_printed_is_logged(job_out: tuple[Path, int, str]) -> None:
    out, _, output = job_out
    log = (out / "deploy.log").read_text()
    steps = json.loads((out / "results.json").read_text())["steps"]
    for step in steps:
        assert f"[{step['number']}/9] {step['title']}" in log
    assert [s["status"] for s in steps] == ["done", "done", "done", "skipped", "done", "done", "done", "done"]
    assert steps[6]["title"] == "Calibrate score thresholds"
    assert "verification PASSED" in log and "verification PASSED" in output
    assert f"report: {out / 'report.html'}" in log


def test_job_calibrates_the_bundle_on_the_evaluated_frames(job_out: tuple[Path, int, str]) -> None:
    out, _, _ = job_out
    results = json.loads((out / "results.json").read_text())
    calibration = results["calibration"]
    # 3 frames: 1 calibrates, the last 2 are held out; the tiny random model leaves cells too thin to calibrate
    assert calibration["num_samples"] == 1 and calibration["comparisons"][-1]["label"] == "held-out frames"
    assert calibration["comparisons"][-1]["num_samples"] == 2
    assert calibration["written"] is (calibration["reason"] == "")
    metadata = yaml.safe_load((out / "deploy" / "deploy_metadata.yaml").read_text())
    assert metadata["checks"]["calibration"]["passed"] is calibration["written"]
    assert (out / "evaluation" / "onnxruntime@calibration" / "predictions.json").is_file()
    assert not (out / "evaluation" / "pytorch@calibration").exists()  # only the bundle's backend is calibrated
    assert (out / "calibration" / "calibration.md").is_file()
    assert "## Score-threshold calibration" in (out / "report.md").read_text()


def test_calibration_step_is_skipped_with_its_reason() -> None:
    def reason(**sections: dict) -> str:
        return job_run._calibration_skip_reason(DeploySettings.from_dict(sections))

    assert reason() == ""
    assert reason(calibrate={"enabled": False}) == "disabled (calibrate.enabled: false)"
    assert reason(evaluate={"enabled": False}).startswith("needs the evaluation")
    assert reason(export={"autoware_format": "legacy"}) == "a legacy bundle holds no score thresholds"
    with pytest.raises(ConfigError, match="export.autoware_format"):
        DeploySettings.from_dict({"export": {"autoware_format": "v3"}})
    with pytest.raises(ConfigError, match="calibrate.holdout_fraction"):
        DeploySettings.from_dict({"calibrate": {"holdout_fraction": 1.0}})
    assert AUTOWARE_FORMATS == bundle.AUTOWARE_FORMATS


def test_failed_verification_exits_nonzero_after_the_report(tmp_path: Path, tiny_checkpoint: Path, tiny_dataset: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Export a model whose head differs from the checkpoint: ONNX Runtime no longer matches PyTorch."""
    export_onnx = job_run.export_onnx

    def export_altered_model(model: torch.nn.Module, *args: object, **kwargs: object) -> object:
        with torch.no_grad():
            model.pts_bbox_head.task_heads[0].reg[-1].bias += 0.25
        return export_onnx(model, *args, **kwargs)

    monkeypatch.setattr(job_run, "export_onnx", export_altered_model)
    out = tmp_path / "out"
    code, output = _deploy(["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--dataset", str(tiny_dataset),
                            "--out", str(out), "--verify-frames", "1", "--no-evaluate", "--no-benchmark"])
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    assert results["passed"] is False and results["summary"]["onnxruntime"]["verification"] == "FAIL"
    assert results["summary"]["onnxruntime"]["mAP"] is None
    failures = results["verification"]["onnxruntime"]["backends"]["onnxruntime"]["failures"]
    assert any("head reg" in line for line in failures)
    assert "### onnxruntime vs PyTorch: FAIL" in (out / "report.md").read_text()
    assert "verification FAILED" in output


def test_input_errors_are_logged(tmp_path: Path, tiny_dataset: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["deploy", "--config", "tiny", "--dataset", str(tiny_dataset), "--out", str(out)])
    assert isinstance(result.exception, ConfigError)
    assert "error: config 'tiny' needs a checkpoint (--checkpoint PATH)" in (out / "deploy.log").read_text()
