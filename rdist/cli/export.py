"""`rdist export`: a model as one ONNX file for the edge, fp32 or int8, checked against PyTorch; or its RobustBench
leaderboard entry."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli import common
from rdist.cli.common import console, err_console, print_json, user_errors
from rdist.errors import RdistError
from rdist.export.writer import CHECK_IMAGES, DEFAULT_CALIBRATION, DEFAULT_OPSET, FP32_TOLERANCE


@user_errors
def export(
    model: str = typer.Argument(..., help=f"the model to export: {common.MODEL_HELP}", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="the file to write: an .onnx file, or with --format "
                             "robustbench <model ID>.json", show_default=False),
    format: str = typer.Option("onnx", "--format", help="onnx, or robustbench: RobustBench's model_info JSON and "
                               "new-model issue, from the report `rdist attack --protocol robustbench --record` "
                               "stored in the model"),
    int8: bool = typer.Option(False, "--int8", help="quantise statically to int8 with ONNX Runtime (QDQ, "
                              "per-channel weights), calibrated on --calibration training images"),
    calibration: int = typer.Option(DEFAULT_CALIBRATION, "--calibration", help="training images of the model's "
                                    "dataset that set the int8 activation ranges"),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset to write (18 up to what the installed "
                              "onnx knows)"),
    data: str = common.DATA,
    data_dir: str = common.DATA_DIR,
    check_n: int = typer.Option(CHECK_IMAGES, "--check-n", help="test images on which ONNX Runtime is checked "
                                "against PyTorch (logits and clean accuracy)"),
    threat_model: str = typer.Option("Linf", "--threat-model", help="robustbench: the board, Linf, L2 or "
                                     "corruptions"),
    issue: Path = typer.Option(None, "--issue", help="robustbench: write the new-model issue's text to this file "
                               "\\[default: print it]"),
    title: str = typer.Option(None, "--title", help="robustbench: the paper's title \\[default: the method, "
                              "architecture and teacher]"),
    link: str = typer.Option("", "--link", help="robustbench: the paper's URL"),
    authors: str = typer.Option("", "--authors", help="robustbench: the paper's authors, comma-separated"),
    venue: str = typer.Option("N/A", "--venue", help="robustbench: where the paper appeared, e.g. 'ICLR 2025'"),
    allow_flagged: bool = typer.Option(False, "--allow-flagged", help="robustbench: export a flagged evaluation "
                                       "(refused otherwise), marked unreliable"),
    json_out: bool = typer.Option(False, "--json", help="print what was written and measured as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress notes"),
) -> None:
    """Export a model to one ONNX file, fp32 or int8, checked against PyTorch before it is written.

    The graph takes [0,1] pixels (the normalisation is inside it) at any batch size and carries the rdist
    metadata in metadata_props. Refused, and nothing written, if fp32 ONNX Runtime logits differ from
    PyTorch's by more than 1e-3 of the largest logit. The check and the int8 calibration use the images of --data.

    Then `rdist attack student.onnx --attacks clean,square,transfer-pgd20` measures it again.
    Example: rdist export student.safetensors -o student-int8.onnx --int8

    --format robustbench writes RobustBench's model_info JSON (the fields of its own files) and the text of its
    new-model issue, from the RobustBench protocol's report recorded in the model.
    Example: rdist export student.safetensors --format robustbench -o Me2026Student.json --issue issue.md
    """
    from rdist.export.writer import export_model

    if format == "robustbench":
        _export_robustbench(model, out, threat_model, issue, title, link, authors, venue, allow_flagged, json_out)
        return
    if format != "onnx":
        raise RdistError(f"--format must be onnx or robustbench, got '{format}'")

    silent = quiet or json_out
    result = export_model(model, out, int8=int8, calibration=calibration, opset=opset, data=data, data_dir=data_dir,
                          check_n=check_n,
                          note=None if silent else (lambda text: err_console.print(text, highlight=False)))
    if json_out:
        print_json(result)
        return
    check = result["check"]
    tolerance = f" (limit {FP32_TOLERANCE:g})" if result["precision"] == "fp32" else " (int8 rounding)"
    console.print(f"wrote {result['path']}: ONNX {result['precision']}, opset {result['opset']}, "
                  f"{result['bytes'] / 1e6:.3g} MB (the artifact: {result['source_bytes'] / 1e6:.3g} MB)",
                  highlight=False, soft_wrap=True)
    console.print(f"ONNX Runtime vs PyTorch logits on {check['n']} images: max abs difference "
                  f"{check['max_abs_diff']:.3g}, {check['relative_diff']:.2g} of the largest logit{tolerance}",
                  highlight=False, soft_wrap=True)
    if "accuracy" in check:
        accuracy = check["accuracy"]
        console.print(f"clean accuracy on the first {check['n']} {result['dataset']} test images: ONNX "
                      f"{100 * accuracy['onnx']:.2f}%, PyTorch {100 * accuracy['pytorch']:.2f}%", highlight=False,
                      soft_wrap=True)
    else:
        console.print("clean accuracy not measured: the model records no dataset (pass --data)", highlight=False)


def _export_robustbench(model: str, out: Path, threat_model: str, issue: Path | None, title: str | None, link: str,
                        authors: str, venue: str, allow_flagged: bool, json_out: bool) -> None:
    from rdist.export.robustbench import export_robustbench

    result = export_robustbench(model, out, threat_model=threat_model, issue=issue, title=title, link=link,
                                authors=authors, venue=venue, allow_flagged=allow_flagged)
    if json_out:
        print_json(result)
        return
    err_console.print(f"wrote {result['path']} (RobustBench's model_info/<dataset>/{threat_model}/ entry)"
                      + (f" and {result['issue_path']}" if result["issue_path"] else "")
                      + f"; open the issue at {result['issue_url']}", highlight=False, soft_wrap=True)
    if not result["issue_path"]:
        console.print(result["issue"], highlight=False, markup=False, soft_wrap=True)
