"""Applying a rendered configuration to the running nginx, or leaving it untouched.

nginx.conf.next -> `nginx -t` -> os.replace onto nginx.conf -> SIGHUP -> the status socket
answers the new generation. A failing `-t` never touches the live file. A HUP that does not
bring the new generation within the probe timeout was refused by the master (it keeps the
old configuration in memory and says so only in its error log): the last good file is put
back, so the file on disk is always one nginx runs, and HUPed again."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path

from jobgate_edge.nginx import Nginx

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    generation: str
    error: str | None = None


class Applier:
    """Serializes applies (one reload in flight) and remembers the last good configuration."""

    def __init__(self, nginx: Nginx, *, probe_timeout_s: float = 5.0) -> None:
        self.nginx = nginx
        self.probe_timeout_s = probe_timeout_s
        self.next_path = Path(f"{nginx.conf}.next")
        self.good: tuple[str, str] | None = None  # (text, generation) live now
        self._lock = threading.Lock()

    def _write_next(self, text: str) -> None:
        with open(self.next_path, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def install_initial(self, text: str, generation: str) -> Outcome:
        """The file nginx starts with (nginx not running yet): checked, then swapped in."""
        with self._lock:
            self._write_next(text)
            error = self.nginx.test(self.next_path)
            if error is not None:
                return Outcome(False, generation, error)
            os.replace(self.next_path, self.nginx.conf)
            self.good = (text, generation)
            return Outcome(True, generation)

    def apply(self, text: str, generation: str) -> Outcome:
        """Check, swap, reload and prove the new generation is live; or keep the old one."""
        with self._lock:
            self._write_next(text)
            error = self.nginx.test(self.next_path)
            if error is not None:
                log.warning("nginx -t refused generation %s: %s", generation, error)
                return Outcome(False, generation, error)
            os.replace(self.next_path, self.nginx.conf)
            old_workers = self.nginx.workers()
            if not self.nginx.signal(signal.SIGHUP):
                return Outcome(False, generation, "nginx is not running")
            started = time.monotonic()
            if self.nginx.wait_generation(generation, self.probe_timeout_s):
                self.good = (text, generation)
                # Live once no old worker accepts any more (they finish what they serve).
                left = self.probe_timeout_s - (time.monotonic() - started)
                if not self.nginx.wait_retired(old_workers, max(left, 0.5)):
                    log.warning("old nginx workers still accept after generation %s", generation)
                log.info("nginx runs generation %s", generation)
                return Outcome(True, generation)
            error = (
                f"nginx did not load generation {generation} within {self.probe_timeout_s:g} s"
                " after SIGHUP (see its error log); the previous configuration stays"
            )
            log.error(error)
            self._restore()
            return Outcome(False, generation, error)

    def _restore(self) -> None:
        if self.good is None:
            return
        text, generation = self.good
        self._write_next(text)
        os.replace(self.next_path, self.nginx.conf)
        old_workers = self.nginx.workers()
        if not self.nginx.signal(signal.SIGHUP):
            return
        if self.nginx.wait_generation(generation, self.probe_timeout_s):
            self.nginx.wait_retired(old_workers, self.probe_timeout_s)
        else:
            log.error("nginx did not answer generation %s after the restore", generation)
