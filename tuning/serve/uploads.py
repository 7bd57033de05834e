"""Checking and unpacking an uploaded input for the HTTP API: suffix, zip safety, size limit,
and how many requests run at once and for how long.

A zip must not climb out of its folder (zip-slip): members with absolute paths or ``..`` are
refused before anything is extracted, and so is a zip that would expand to a great deal more
than the upload limit (a zip bomb).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from core.imageio import IMAGE_2D_SUFFIXES, VOLUME_SUFFIXES, volume_suffix

ZIP_EXPANSION = 8  # a zip may unpack to at most this many times the upload limit
MAX_ZIP_MEMBERS = 100_000
NEEDS_DATA_FILE = (".mhd", ".nhdr")  # headers whose voxels live in a second file


class UploadError(Exception):
    """An upload the API refuses: ``status`` is the HTTP status (4xx), ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def accepted_inputs(volumes: bool) -> str:
    if volumes:
        return (f"a volume file ({', '.join(s for s in VOLUME_SUFFIXES if s not in NEEDS_DATA_FILE)}) "
                "or a .zip of one DICOM series (or of an .mhd with its .raw)")
    return f"a {', '.join(IMAGE_2D_SUFFIXES)} image"


def check_members(archive: zipfile.ZipFile, *, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Every member, after refusing absolute or ``..`` names and a zip that expands too far."""
    members = archive.infolist()
    for info in members:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise UploadError(400, f"Refused zip: member {info.filename!r} has an absolute path or "
                                   "'..' and would be written outside the upload folder.")
    expanded = sum(info.file_size for info in members)
    if len(members) > MAX_ZIP_MEMBERS or expanded > ZIP_EXPANSION * max_bytes:
        raise UploadError(413, f"Refused zip: {len(members)} members expanding to {expanded} bytes; "
                               f"at most {MAX_ZIP_MEMBERS} members and {ZIP_EXPANSION}x the upload limit.")
    return members


def _unzip(saved: Path, folder: Path, *, max_bytes: int) -> Path:
    try:
        with zipfile.ZipFile(saved) as archive:
            archive.extractall(folder, members=check_members(archive, max_bytes=max_bytes))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise UploadError(422, f"The upload is not a readable zip: {err}.") from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, unknown compression
        raise UploadError(422, f"Cannot unpack the zip: {err}.") from err
    return folder


def _volumes_under(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and volume_suffix(Path(f)) is not None]
    return sorted(found)


def _zip_input(saved: Path, *, max_bytes: int) -> Path:
    """The one volume file a zip holds, else the unpacked folder as a DICOM series."""
    folder = _unzip(saved, saved.parent / "unzipped", max_bytes=max_bytes)
    volumes = _volumes_under(folder)
    if len(volumes) > 1:
        names = ", ".join(str(v.relative_to(folder)) for v in volumes[:5])
        raise UploadError(422, f"The zip holds {len(volumes)} volumes ({names}); upload one case.")
    if volumes:
        return volumes[0]
    if not any(files for _, _, files in os.walk(folder)):
        raise UploadError(422, "The zip is empty; it should hold the files of one DICOM series.")
    return folder


def stage_upload(saved: Path, filename: str, *, volumes: bool, max_bytes: int) -> Path:
    """The path to read a saved upload from, chosen by the client's file name: the file renamed to
    its suffix (readers pick the format by it), or the folder a zip unpacks to."""
    lower = filename.lower()
    suffix = volume_suffix(Path(lower))
    if volumes and lower.endswith(".zip"):
        return _zip_input(saved, max_bytes=max_bytes)
    if volumes and suffix in NEEDS_DATA_FILE:
        raise UploadError(415, f"{filename} keeps its voxels in a second file; upload a .zip of it "
                               "together with its .raw, or convert it to .nii.gz, .mha or .nrrd.")
    if volumes and suffix:
        return saved.rename(saved.with_name("upload" + suffix))
    if not volumes and lower.endswith(IMAGE_2D_SUFFIXES):
        return saved.rename(saved.with_name("upload" + Path(lower).suffix))
    raise UploadError(415, f"Cannot use {filename!r}: this model takes {accepted_inputs(volumes)}.")


class _TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413 JSON answer. Content-Length is
    checked first, and the bytes are counted as they stream in, so a missing or false header does
    not get past it."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"The upload is larger than the limit of "
                                     f"{self.max_bytes / 2 ** 20:.4g} MiB (--max-upload-mb)."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self.refuse(send)
        seen, over, started = 0, False, False

        async def counted() -> dict:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if seen > self.max_bytes:
                over = True
                raise _TooLarge
            return message

        async def guarded(message: dict) -> None:
            nonlocal started
            if not over:  # the app's answer to a body cut short is replaced by the 413
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self.refuse(send)


async def send_json(send: Any, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer an ASGI request with ``{"detail": detail}``."""
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


class Ticket:
    """One admitted request's slot. The slot is free again once the request has been answered
    *and* its worker thread (which a timeout cannot stop) has finished; a worker that has not
    started when its request times out does not start at all (``enter`` returns False)."""

    def __init__(self, slots: Slots) -> None:
        self.slots, self.holders, self.cancelled = slots, 1, False

    def enter(self) -> bool:
        with self.slots.lock:
            if self.cancelled:
                return False
            self.holders += 1
            return True

    def leave(self, *, cancel: bool = False) -> None:
        with self.slots.lock:
            self.cancelled = self.cancelled or cancel
            self.holders -= 1
            if self.holders == 0:
                self.slots.free += 1


class Slots:
    """At most ``size`` tickets out at once (a thread-safe counter)."""

    def __init__(self, size: int) -> None:
        self.size, self.free, self.lock = size, size, threading.Lock()

    def take(self) -> Ticket | None:
        with self.lock:
            if self.free == 0:
                return None
            self.free -= 1
        return Ticket(self)


@contextlib.contextmanager
def worker_slot(ticket: Ticket | None) -> Iterator[None]:
    """Hold the request's slot while a worker thread computes; refuse to start a timed-out one."""
    if ticket is not None and not ticket.enter():
        raise UploadError(503, "The request was cancelled after its timeout before it started.")
    try:
        yield
    finally:
        if ticket is not None:
            ticket.leave()


class Admission:
    """ASGI middleware for ``paths``: at most ``max_concurrent`` requests in progress (the next
    gets a 503 with Retry-After) and ``timeout_s`` seconds each, upload included (then a 504)."""

    def __init__(self, app: Any, *, max_concurrent: int, timeout_s: float,
                 paths: tuple[str, ...] = ("/predict",)) -> None:
        self.app, self.slots, self.timeout_s, self.paths = app, Slots(max_concurrent), timeout_s, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        ticket = self.slots.take()
        if ticket is None:
            return await send_json(send, 503, f"Busy: {self.slots.size} requests are in progress "
                                              "(--max-concurrent); retry shortly.", {"Retry-After": "1"})
        scope.setdefault("state", {})["ticket"] = ticket
        state = {"started": False, "closed": False}

        async def tracked(message: dict) -> None:
            if not state["closed"]:  # after a timeout the late answer is dropped
                state["started"] = state["started"] or message["type"] == "http.response.start"
                await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracked))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a late error is not lost noise
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if done:
            ticket.leave()
            return task.result()
        state["closed"] = True
        task.cancel()  # a worker thread already running finishes on its own and then frees the slot
        ticket.leave(cancel=True)
        if not state["started"]:
            await send_json(send, 504, f"The request took longer than {self.timeout_s:g} s (--timeout).")
