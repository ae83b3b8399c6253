"""Progress of long loops: a live bar on a terminal, plain log lines elsewhere.

On a terminal, a rich progress bar per epoch (or per evaluation) shows the
steps, the loss, images/s and the ETA of the whole job; rich is the library
Kedro already logs through, and its log lines print above the bar. Where
output is not a terminal (Airflow task logs, CI, files) or rich is missing
(a machine with only torch), a plain log line is written instead, at most
one every :data:`PLAIN_INTERVAL_S` seconds of work. The caller's clock
decides nothing: progress reads the time itself, between steps. It never
touches the device: the caller hands it a loss (:meth:`JobProgress.show_loss`)
when it has read one anyway, so showing progress never waits for the device.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

logger = logging.getLogger(__name__)

# Seconds between plain progress lines: at most about one every 10 s, at
# least one a minute while steps are shorter than that.
PLAIN_INTERVAL_S = 30.0


def format_duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``: hours only when there are some."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rich_console() -> Any | None:
    """rich's console when output goes to a terminal, else None (plain lines)."""
    try:
        import rich  # noqa: PLC0415 (optional: the engine runs with torch alone)
    except ImportError:
        return None
    console = rich.get_console()
    return console if console.is_terminal else None


class JobProgress:
    """Progress over a job of ``total_steps`` steps, shown one part (an epoch) at a time.

    ``done_steps`` steps were done before this process started (a resumed
    run); the ETA comes from the rate of the steps done here. ``bar=False``
    never opens a bar (the other workers of a data-parallel run).
    """

    def __init__(
        self, name: str, total_steps: int, images_per_step: int, done_steps: int = 0, bar: bool = True
    ) -> None:
        self.name = name
        self.total_steps = total_steps
        self.images_per_step = images_per_step
        self.steps = done_steps
        self._first_step = done_steps
        self._started = time.perf_counter()
        self._console = _rich_console() if bar else None
        self._bar: Any = None
        self._task: Any = None
        self._part = ""
        self._part_started = self._started
        self._part_steps = self._part_total = 0
        self._last_line = self._started
        self.loss: float | None = None  # the latest loss handed in; None: none yet (or none to show)

    def start_part(self, label: str, steps: int) -> None:
        """Begin one part (``epoch 3/10``) of ``steps`` steps."""
        self._part, self._part_steps, self._part_total = label, 0, steps
        self._part_started = time.perf_counter()
        if self._console is not None:
            self._open_bar(label, steps)

    def show_loss(self, value: float) -> None:
        """The loss the bar and the lines show from now on (a value the caller has already read)."""
        self.loss = value

    def step(self) -> None:
        """Count one step."""
        self.steps += 1
        self._part_steps += 1
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, completed=self._part_steps, **self._fields(now))
        elif now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            fields = self._fields(now)
            loss = "" if self.loss is None else f", loss {fields['loss']}"
            logger.info(
                "%s %s: step %d/%d%s, %s img/s, ETA %s",
                self.name,
                self._part,
                self._part_steps,
                self._part_total,
                loss,
                fields["rate"],
                fields["eta"],
            )

    def end_part(self) -> None:
        """Close the part's bar (the caller logs the part's summary line)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def eta_s(self) -> float:
        """Seconds left for the whole job at the rate of the steps done in this process."""
        done_here = self.steps - self._first_step
        if done_here <= 0:
            return float("nan")
        rate = done_here / max(time.perf_counter() - self._started, 1e-9)
        return (self.total_steps - self.steps) / rate

    def _fields(self, now: float) -> dict[str, str]:
        seconds = max(now - self._part_started, 1e-9)
        eta = self.eta_s()
        return {
            "loss": "-" if self.loss is None else f"{self.loss:.4f}",
            "rate": f"{self._part_steps * self.images_per_step / seconds:,.0f}",
            "eta": "?" if math.isnan(eta) else format_duration(eta),
        }

    def _open_bar(self, label: str, steps: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: PLC0415

        self._bar = Progress(
            TextColumn(f"{self.name} {label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]} | {task.fields[rate]} img/s | ETA {task.fields[eta]}"),
            console=self._console,
            transient=True,
        )
        self._task = self._bar.add_task(label, total=steps, loss="-", rate="-", eta="?")
        self._bar.start()
