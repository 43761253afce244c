"""Progress of long work, on a terminal and in a log file alike.

On a terminal, a tqdm bar. When stderr is not a terminal (output sent to a
log file, a cluster job's stdout), tqdm would stay silent (``disable=None``)
or fill the file with carriage returns; :class:`Progress` writes one plain
line instead every ``interval`` seconds and one at the end::

    rendering: 12/40 scenes (30%), 48 s, views_per_s=86.1 failed=0
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

LOG_INTERVAL = 30.0  # seconds between progress lines in a log file


class Progress:
    """``update``/``set_postfix``/``close`` as tqdm's, on a terminal or as log lines."""

    def __init__(self, total: int | None, desc: str, unit: str, *, stream: TextIO | None = None,
                 interval: float = LOG_INTERVAL) -> None:  # fmt: skip
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.n = 0
        self.postfix: dict[str, object] = {}
        self._start = self._last = time.monotonic()
        self._bar = None
        self._shown = 0  # the count the last log line showed
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last >= self.interval:
            self._line()

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=refresh)

    def tick(self, **values) -> None:
        """A heartbeat while nothing finishes: new figures, and a log line if ``interval`` has passed."""
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=True)
        elif time.monotonic() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last, self._shown = time.monotonic(), self.n
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {done} {self.unit}s{share}, {self._last - self._start:.0f} s{extra}",
              file=self.stream, flush=True)  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.n and self.total and self._shown != self.n:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
