"""A TensorBoard sink: scalars, images and run info as event files in ``<run_dir>/tensorboard``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtrl.errors import MtrlError
from mtrl.logging.logger import Sink


def require_tensorboard() -> type:
    """torch's ``SummaryWriter``; a one-line error if the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise MtrlError(
            "logger.tensorboard=true needs the tensorboard package: "
            "pip install tensorboard (or pip install 'mtrl-bench[tensorboard]')"
        ) from exc
    return SummaryWriter


class TensorBoardSink(Sink):
    """Writes every row with ``SummaryWriter``; view with ``tensorboard --logdir RUN_DIR``.

    :param log_dir: the event file folder (``<run_dir>/tensorboard``).
    :param purge_after: on resume, the checkpoint's step: events logged after it (by the run
        that was interrupted) are hidden, as they will be logged again.
    """

    accepts_images: ClassVar[bool] = True

    def __init__(self, log_dir: str | Path, purge_after: int | None = None) -> None:
        summary_writer = require_tensorboard()
        purge_step = None if purge_after is None else purge_after + 1
        self.writer = summary_writer(str(log_dir), purge_step=purge_step)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if value is not None:
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for key, image in images.items():
            self.writer.add_image(key, image, step, dataformats="HWC")
        self.writer.flush()

    def write_info(self, name: str, info: dict[str, Any]) -> None:
        # TensorBoard renders text as markdown: an indented block keeps the JSON readable
        text = "\n".join("    " + line for line in json.dumps(info, indent=2).splitlines())
        self.writer.add_text(name, text, 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
