"""What a run reports: its metrics file, TensorBoard, its log file and the console (rank 0 only).

Other ranks log warnings and errors only, so every line appears once under torchrun.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from indextts.run_folder import RunFolder

logger = logging.getLogger(__name__)

PACKAGE_LOGGER = "indextts"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RunLog:
    """The run folder's logs; every method is a no-op except on the main process."""

    def __init__(self, run_dir: Path, is_main: bool):
        self.run = RunFolder(run_dir)
        self.is_main = is_main
        self.writer = None
        self._handler = None
        package = logging.getLogger(PACKAGE_LOGGER)
        self._previous_level = package.level
        if not is_main:
            package.setLevel(logging.WARNING)
            return
        if package.getEffectiveLevel() > logging.INFO:
            package.setLevel(logging.INFO)
        self._handler = logging.FileHandler(self.run.log_path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(FILE_FORMAT))
        package.addHandler(self._handler)

    def open(self, resumed_step: int | None) -> None:
        """Start the metrics file afresh, or cut it back to ``resumed_step``; open TensorBoard."""
        if not self.is_main:
            return
        if resumed_step is None:
            self.run.metrics_path.write_text("", encoding="utf-8")
        else:
            self._truncate(resumed_step)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run.tensorboard_dir),
                                    purge_step=None if resumed_step is None else resumed_step + 1)

    def _truncate(self, step: int) -> None:
        """Drop metric lines logged after ``step`` by the interrupted run (they will be redone)."""
        path = self.run.metrics_path
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        kept = []
        for line in lines:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                break  # a line cut short by the kill
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def record(self, kind: str, record: dict) -> None:
        """Append ``record`` to the metrics file and its numbers to TensorBoard under ``kind/``."""
        if not self.is_main:
            return
        with open(self.run.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"kind": kind, **record}) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch"):
                self.writer.add_scalar(f"{kind}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        package = logging.getLogger(PACKAGE_LOGGER)
        if self._handler is not None:
            package.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        package.setLevel(self._previous_level)
