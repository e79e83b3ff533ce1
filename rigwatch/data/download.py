"""Fetch the UCI archive into a cache folder and check it is the right data.

The archive's own sha256 is not published, and a re-zip on the server would
change it anyway, so the check is on its contents: the sha256 of the member
files whose bytes are known (the 1 Hz sensors and the labels, computed once from
verified copies and pinned below).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rigwatch.data.loaders import uci_members
from rigwatch.exceptions import DataError

__all__ = [
    "ARCHIVE_NAME",
    "MEMBER_SHA256",
    "UCI_URL",
    "DownloadError",
    "download_archive",
    "verify_archive",
]

#: Where UCI serves data set 447 (Condition monitoring of hydraulic systems).
UCI_URL = "https://archive.ics.uci.edu/static/public/447/condition+monitoring+of+hydraulic+systems.zip"

#: File name of the archive inside the cache folder.
ARCHIVE_NAME = "uci-447-hydraulic.zip"

#: sha256 of archive members with known bytes (the 1 Hz files and the labels).
MEMBER_SHA256: dict[str, str] = {
    "profile.txt": "867987ca884b2f0fd607ad3918329eba887d095af2befa21122cea518eaa584a",
    "CE.txt": "2adc6e258be8e3b7a303b7962f485a7984099cea21248c3bf9f18c7d87283c09",
    "CP.txt": "63f60132cb5a30879c6f5c73640a39c69e416013195fe62dafe5133b0747baf4",
    "SE.txt": "4c04994cb28b82c001b4931acecf8099e9fe5c864f361c0a7435fbf8745361a1",
    "TS1.txt": "49cae5e9013d8e230698d95f53a98bb77fedfe3c86985b812cf701dcc9ef06d8",
    "TS2.txt": "34115a5b86886d83c0592c1ed259605634a8c83d3a051e97bf3e5790f1db58fa",
    "TS3.txt": "cc271852b4caad39a3b8f5c36d948b57f6cab761dad8b4c7bdd7cb7e99c0b980",
    "TS4.txt": "548b903f7cd4ea7f2497c0063bdda4bdf8793d55ff43a7d694b8cb835eaf2f55",
    "VS1.txt": "a6227d9bcb807ee9835c32e73834d3eb9262f0f5cad1b176ca10c473ced25e99",
}

_CHUNK = 1 << 20


class DownloadError(DataError):
    """The archive could not be fetched (offline, timeout, HTTP error).

    A separate type because callers fall back to other data on it, while a
    checksum mismatch (a plain :class:`DataError`) must stop them.
    """


def verify_archive(path: str | os.PathLike[str]) -> None:
    """Check the known members of a UCI archive (zip or folder) against :data:`MEMBER_SHA256`.

    Raises
    ------
    DataError
        A known member is missing or its sha256 differs; the message names it.
    """
    with uci_members(path) as members:
        for name, expected in MEMBER_SHA256.items():
            if name not in members:
                raise DataError(f"{path}: member {name} is missing; not the UCI hydraulic archive")
            digest = hashlib.sha256()
            with members[name]() as handle:
                while block := handle.read(_CHUNK):
                    digest.update(block)
            if digest.hexdigest() != expected:
                raise DataError(
                    f"{path}: member {name} has sha256 {digest.hexdigest()}, expected {expected}; "
                    "the archive is damaged or not the UCI hydraulic data set"
                )


def download_archive(
    dest: str | os.PathLike[str],
    *,
    url: str = UCI_URL,
    timeout: float = 15.0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Download the UCI archive to ``dest`` and verify it.

    The bytes go to ``dest + ".part"`` first and are renamed only after
    :func:`verify_archive` passes, so ``dest`` is either absent or verified.

    Parameters
    ----------
    dest
        Target file; its folder is created.
    url
        Source URL.
    timeout
        Seconds any single network operation may block.
    progress
        Called with short status lines (bytes received).

    Raises
    ------
    DownloadError
        The server could not be reached or the transfer broke off.
    DataError
        The file arrived but is not the expected archive.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "rigwatch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            received, reported = 0, 0
            while block := response.read(_CHUNK):
                out.write(block)
                received += len(block)
                # Report every ~10 MB: often enough to show life, rarely enough to read.
                if progress is not None and received - reported >= 10 * _CHUNK:
                    reported = received
                    of_total = f" of {total / 1e6:.0f}" if total else ""
                    progress(f"downloaded {received / 1e6:.0f}{of_total} MB")
    except (OSError, http.client.HTTPException) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}") from exc
    try:
        verify_archive(part)
    except DataError as exc:
        part.unlink(missing_ok=True)
        raise DataError(f"downloaded {url} but it failed verification: {exc}") from exc
    os.replace(part, dest)
    return dest
