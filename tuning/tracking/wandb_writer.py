"""One W&B writer thread per driver: it holds one ``wandb.Run`` per trial and does every W&B call
off the sweep's event loop.

Why: Ray's ``WandbLoggerCallback`` starts a logging actor (a process) per trial, about 2-3 s of a
2-core machine each, and hands it the API key through a Ray runtime env, which Ray's agent logs in
plain text. Here all runs live in this process (``wandb.init(reinit="create_new")``), share one
W&B service, and W&B reads its key from its own environment or settings. Imported lazily (it
imports wandb). A W&B failure is logged once as a warning and the writer then drops everything.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any

log = logging.getLogger(__name__)
_CLOSE = "close"


class WandbWriter:
    """A queue of W&B calls (start, log, finish per run key) served in order by one daemon thread.

    ``init_kwargs`` are the ``wandb.init`` arguments every run shares (project, group, job type,
    mode, dir, tags, settings); ``start`` adds a run's id, name and config.
    """

    def __init__(self, init_kwargs: dict[str, Any]) -> None:
        self._init_kwargs = dict(init_kwargs)
        self._queue: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._runs: dict[str, Any] = {}
        self.failed = False
        self._thread = threading.Thread(target=self._serve, name="medtune-wandb", daemon=True)
        self._thread.start()

    def start(self, key: str, *, name: str, config: dict[str, Any]) -> None:
        """Open run ``key`` (its W&B id); a key already open is kept (a restored trial)."""
        self._queue.put(("start", key, {"name": name, "config": config}))

    def log(self, key: str, metrics: dict[str, float]) -> None:
        """One history row (one committed step) of run ``key``."""
        self._queue.put(("log", key, metrics))

    def finish(self, key: str) -> None:
        """Finish run ``key``: its files are complete (offline) or uploaded (online)."""
        self._queue.put(("finish", key, None))

    def close(self, timeout: float | None = 300.0) -> None:
        """Finish every open run, stop W&B's service, and wait (up to ``timeout`` s) for the thread."""
        if self._thread.is_alive():
            self._queue.put((_CLOSE, "", None))
            self._thread.join(timeout)

    @property
    def open_runs(self) -> int:
        return len(self._runs)

    def _serve(self) -> None:
        while True:
            op, key, payload = self._queue.get()
            if op == _CLOSE:
                self._close_all()
                return
            if self.failed:
                continue
            try:
                getattr(self, f"_{op}")(key, payload)
            except Exception as err:  # noqa: BLE001 - tracking must never stop a sweep
                self.failed = True
                log.warning("W&B logging stopped at %s of run %s (%s: %s); the sweep goes on "
                            "without it", op, key, type(err).__name__, err)

    def _start(self, key: str, payload: dict[str, Any]) -> None:
        import wandb

        if key not in self._runs:
            self._runs[key] = wandb.init(**self._init_kwargs, id=key, name=payload["name"],
                                         config=payload["config"], reinit="create_new")

    def _log(self, key: str, metrics: dict[str, float]) -> None:
        run = self._runs.get(key)
        if run is not None:
            run.log(metrics)

    def _finish(self, key: str, _: Any) -> None:
        run = self._runs.pop(key, None)
        if run is not None:
            run.finish()

    def _close_all(self) -> None:
        for key in list(self._runs):
            try:
                self._finish(key, None)
            except Exception as err:  # noqa: BLE001
                log.warning("W&B run %s did not finish cleanly (%s: %s)", key, type(err).__name__, err)
        try:
            import wandb

            wandb.teardown()  # stop this process's W&B service now, not in an exit hook
        except Exception:  # noqa: BLE001
            pass
