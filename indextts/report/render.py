"""The voice report as a self-contained HTML page and as Markdown with its files beside it.

HTML embeds every image and sound as a ``data:`` URI (one file to send or archive, nothing fetched);
Markdown links the same images and sounds from ``report_files/``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable

import numpy as np

from indextts.report.content import ReportContent

SUMMARY_COLUMNS = ("checkpoint", "step", "speaker", "utterances", "mer", "wer_en", "cer_zh", "sim", "best", "note")
Asset = Callable[[str, bytes, str], str]
"""(file name, bytes, MIME type) -> the address to put in the page."""


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def loss_curves(metrics: list[dict]) -> bytes:
    """Training loss and validation mel loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    for kind, key, label in (("train", "loss", "training loss"), ("valid", "mel_loss", "validation mel loss")):
        points = [(row["step"], row[key]) for row in metrics if row.get("kind") == kind and key in row]
        if points:
            axis.plot(*zip(*points), marker="o", label=label)
    axis.set_xlabel("step")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend(loc="best") if axis.lines else axis.text(0.5, 0.5, "no metrics", ha="center")
    return _png(figure)


def length_histogram(content: ReportContent) -> bytes:
    """Clip lengths (seconds) per speaker, training and validation clips together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    for speaker, data in content.data.items():
        lengths = data.train_seconds + data.valid_seconds
        if lengths:
            axis.hist(lengths, bins=np.linspace(0, max(lengths) + 1, 16), alpha=0.6, label=speaker)
    axis.set_xlabel("clip length (s)")
    axis.set_ylabel("clips")
    axis.legend(loc="best") if content.data else None
    return _png(figure)


def _data_rows(content: ReportContent) -> list[list[str]]:
    rows = []
    for speaker, data in sorted(content.data.items()):
        seconds = sum(data.train_seconds) + sum(data.valid_seconds)
        reasons = ", ".join(f"{reason} {count}" for reason, count in data.reasons.most_common()) or "-"
        rows.append([speaker, str(data.kept), str(data.dropped), reasons, f"{seconds / 3600:.3f}",
                     str(len(data.train_seconds)), str(len(data.valid_seconds))])
    return rows


DATA_HEADER = ["speaker", "clips kept", "clips dropped", "why dropped", "hours extracted", "train clips", "valid clips"]


def _html_table(header, rows, marked: Callable[[list[str]], bool] = lambda row: False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    best = " class='best'"
    body = "".join(f"<tr{best if marked(row) else ''}>" + "".join(
        f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows])


def data_uri(_name: str, data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _summary_rows(content: ReportContent) -> list[list[str]]:
    return [[row.get(column, "") or "" for column in SUMMARY_COLUMNS] for row in content.summary]


def render_html(content: ReportContent, summary_png: bytes | None) -> str:
    """The whole report as one HTML page (every asset inline)."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Voice report</title><style>"
             "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:2px 6px}tr.best{background:#dfd}</style></head><body>",
             "<h1>Voice report</h1><h2>Data</h2>", _html_table(DATA_HEADER, _data_rows(content)),
             f"<img alt='clip lengths' src='{data_uri('', length_histogram(content), 'image/png')}'>",
             "<h2>Training</h2>", f"<img alt='loss curves' src='{data_uri('', loss_curves(content.metrics), 'image/png')}'>",
             f"<h2>Evaluation</h2><p>Chosen checkpoint: <b id='best'>{html.escape(str(content.best.get('best')))}</b>. "
             f"{html.escape(content.best.get('rule', ''))}</p>",
             _html_table(SUMMARY_COLUMNS, _summary_rows(content), lambda row: row[8] == "1")]
    if summary_png:
        parts.append(f"<img alt='error rate and similarity per step' src='{data_uri('', summary_png, 'image/png')}'>")
    parts.append("<h2>Listen</h2>")
    for sample in content.samples:
        parts.append(f"<h3>{html.escape(sample.speaker)}: {html.escape(sample.text)}</h3><p>recording "
                     f"<audio controls src='{data_uri('', sample.recording, 'audio/wav')}'></audio> synthesis "
                     f"<audio controls src='{data_uri('', sample.synthesis, 'audio/wav')}'></audio></p>")
    parts.append("<h2>Commands</h2><pre>" + html.escape("\n".join(content.commands)) + "</pre><h2>Environment</h2>")
    parts.append(_html_table(["", ""], [[k, v] for k, v in content.environment.items()]) + "</body></html>\n")
    return "".join(parts)


def render_markdown(content: ReportContent, summary_png: bytes | None, save: Asset) -> str:
    """The report as Markdown; ``save`` stores each image and sound and returns its relative path."""
    lines = ["# Voice report", "", "## Data", "", _md_table(DATA_HEADER, _data_rows(content)), "",
             f"![clip lengths]({save('lengths.png', length_histogram(content), 'image/png')})", "", "## Training", "",
             f"![loss curves]({save('losses.png', loss_curves(content.metrics), 'image/png')})", "", "## Evaluation", "",
             f"Chosen checkpoint: **{content.best.get('best')}**. {content.best.get('rule', '')}", "",
             _md_table(SUMMARY_COLUMNS, _summary_rows(content)), ""]
    if summary_png:
        lines += [f"![error rate and similarity]({save('summary.png', summary_png, 'image/png')})", ""]
    lines += ["## Listen", ""]
    for index, sample in enumerate(content.samples):
        recording = save(f"{sample.speaker}_{index}_recording.wav", sample.recording, "audio/wav")
        synthesis = save(f"{sample.speaker}_{index}_synthesis.wav", sample.synthesis, "audio/wav")
        lines.append(f"- {sample.speaker}: {sample.text} — [recording]({recording}) · [synthesis]({synthesis})")
    lines += ["", "## Commands", "", "```sh", *content.commands, "```", "", "## Environment", "",
              *[f"- {key}: {value}" for key, value in content.environment.items()], ""]
    return "\n".join(lines)
