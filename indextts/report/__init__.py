"""The voice report (``report.html`` + ``report.md``) of a prepared, trained and evaluated voice."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from indextts.atomic_files import write_bytes_atomic


def write_report(*, prepared_dirs: Sequence[Path], features_dir: Path, run_dir: Path, out_dir: Path,
                 commands: Sequence[str], device: str = "cpu") -> tuple[Path, Path]:
    """Write ``out_dir/report.html`` (self-contained) and ``out_dir/report.md`` (+ ``report_files/``)."""
    from indextts.report.content import gather
    from indextts.run_folder import RunFolder
    from indextts.report.render import render_html, render_markdown

    content = gather(prepared_dirs, Path(features_dir), Path(run_dir), commands, device)
    summary_png = RunFolder(run_dir).eval_dir / "summary.png"
    png = summary_png.read_bytes() if summary_png.is_file() else None
    out_dir = Path(out_dir)
    files = out_dir / "report_files"

    def save(name: str, data: bytes, _mime: str) -> str:
        write_bytes_atomic(files / name, data)
        return f"report_files/{name}"

    markdown = render_markdown(content, png, save)
    write_bytes_atomic(out_dir / "report.md", markdown.encode("utf-8"))
    write_bytes_atomic(out_dir / "report.html", render_html(content, png).encode("utf-8"))
    return out_dir / "report.html", out_dir / "report.md"
