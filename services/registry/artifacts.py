"""Model artifacts: received as a capped stream, scanned before acceptance, stored by content.

Layout: `<artifacts>/sha256/<first two hex>/<full hex>`, written once (temp file, fsync, hard
link into place), read-only, never overwritten: the same bytes always land on the same path.

Scanning never loads the model. A skops file (zip) is audited with
`skops.io.get_untrusted_types`; a pickle (protocol 2+) is walked opcode by opcode with
`pickletools.genops`, collecting every global it would import (GLOBAL, STACK_GLOBAL, INST). Both
are judged by one allow-list: classes from sklearn, numpy (arrays, dtypes, scalars, random
generators) and scipy.sparse, numpy ufuncs, Cython unpickle helpers, the numpy/copyreg
reconstructors and the safe builtin containers. A pickle calls what it references, so a function
outside that list (`os.system`, `builtins.eval`, `numpy.load`...) refuses the artifact. What cannot
be parsed completely (joblib's raw array buffers, compressed files) is refused too: an unscanned
byte is an untrusted byte.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.registry.domain import Artifact
from services.runtime.allowlist import TRUSTED_ROOTS, Unscannable, is_trusted, pickle_globals
from services.runtime.errors import Problem

__all__ = ["TRUSTED_ROOTS", "Unscannable", "is_trusted", "pickle_globals"]  # judged by the shared allow-list

SKOPS, PICKLE = "skops", "pickle"
ZIP_MAGIC = b"PK\x03\x04"
COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"ZF": "joblib zlib",
    b"\x78\x01": "zlib",
    b"\x78\x5e": "zlib",
    b"\x78\x9c": "zlib",
    b"\x78\xda": "zlib",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x5d\x00\x00": "lzma",
    b"\x04\x22\x4d\x18": "lz4",
}
SAVE_HINT = "save the model with skops.io.dump (preferred) or plain pickle.dump"

CHUNK = 1024 * 1024
MAX_METADATA_BYTES = 4 * 1024 * 1024
# Boundaries and part headers around the two parts: the slack allowed over the two caps.
MULTIPART_SLACK = 64 * 1024


class ArtifactRefused(Problem):
    """The upload is not an artifact the registry accepts (422), with the reason."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, "Artifact refused", detail)


# -- scanning ---------------------------------------------------------------------------------


def scan(path: Path) -> str:
    """Judge the file without loading it; returns its format or raises ArtifactRefused."""
    with path.open("rb") as fp:
        head = fp.read(8)
    if head.startswith(ZIP_MAGIC):
        _judge(SKOPS, _skops_types(path))
        return SKOPS
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        with path.open("rb") as fp:
            try:
                names = pickle_globals(fp)
            except Unscannable as exc:
                raise ArtifactRefused(f"artifact refused: the pickle cannot be scanned ({exc}); "
                                      f"joblib files with raw array buffers are not plain pickles: "
                                      f"{SAVE_HINT}") from exc
        _judge(PICKLE, names)
        return PICKLE
    for magic, kind in COMPRESSED_MAGIC.items():
        if head.startswith(magic):
            raise ArtifactRefused(f"artifact refused: it is {kind}-compressed and cannot be scanned; "
                                  f"{SAVE_HINT}, uncompressed")
    raise ArtifactRefused(f"artifact refused: unsupported format (first bytes {head[:8]!r}); expected a "
                          f"skops file (zip) or a pickle of protocol 2 or later; {SAVE_HINT}")


def _judge(kind: str, names: list[str]) -> None:
    refused = [n for n in dict.fromkeys(names) if not is_trusted(n)]
    if refused:
        what = "global" if kind == PICKLE else "type"
        plural = "s" if len(refused) > 1 else ""
        raise ArtifactRefused(
            f"artifact refused: {kind} references untrusted {what}{plural} {', '.join(refused)}; "
            f"accepted are classes from {', '.join(TRUSTED_ROOTS)}, numpy ufuncs and reconstructors, "
            f"and safe builtin containers"
        )


def _skops_types(path: Path) -> list[str]:
    import skops.io

    try:
        return skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means: not a skops file we can audit
        raise ArtifactRefused(f"artifact refused: a zip file that cannot be scanned as a skops file "
                              f"({type(exc).__name__}: {exc}); {SAVE_HINT}") from exc


# -- storing ----------------------------------------------------------------------------------


class Spool:
    """An upload in progress: a temp file next to the store, its sha256 and size, capped."""

    def __init__(self, tmp_dir: Path, limit: int) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        self.path = Path(name)
        self.file = os.fdopen(handle, "wb")
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(f"the artifact is larger than the limit of {self.limit} bytes")
        self._hash.update(data)
        self.file.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


def too_large(what: str) -> Problem:
    return Problem(413, "Content Too Large", f"{what} (max_artifact_bytes, env MODELGOV_MAX_ARTIFACT_BYTES)")


class ArtifactStore:
    """Content-addressed, write-once files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def spool(self, limit: int) -> Spool:
        return Spool(self.root / "tmp", limit)

    def keep(self, spool: Spool, artifact_format: str) -> Artifact:
        """Move a finished, scanned spool into place (or drop it: those bytes are already kept)."""
        final = self.path_for(spool.sha256)
        try:
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(spool.path, 0o444)
                try:
                    os.link(spool.path, final)  # fails, never overwrites, if it appeared meanwhile
                except FileExistsError:
                    pass
                _fsync_dir(final.parent)
        finally:
            spool.discard()
        return Artifact(spool.sha256, spool.size, artifact_format)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- receiving --------------------------------------------------------------------------------


@dataclass
class Upload:
    artifact: Spool | None = None
    metadata: bytes | None = None

    def discard(self) -> None:
        if self.artifact is not None:
            self.artifact.discard()


async def receive(request: Request, store: ArtifactStore, limit: int) -> Upload:
    """Stream a multipart/form-data body: part `artifact` to a capped spool, part `metadata` to memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MAX_METADATA_BYTES + MULTIPART_SLACK:
        raise too_large(f"the request body of {declared} bytes exceeds the artifact limit of {limit} bytes")
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Problem(415, "Unsupported Media Type", "send multipart/form-data with a file part 'artifact' "
                                                     "and a JSON part 'metadata'")
    upload = Upload()
    reader = _PartReader(upload, store, limit)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        await _feed(request, parser)
        if not reader.finished:
            raise Problem(400, "Bad Request", "the multipart body ended before its closing boundary")
        if upload.artifact is not None:
            upload.artifact.finish()
    except BaseException:
        upload.discard()
        raise
    return upload


async def _feed(request: Request, parser: MultipartParser) -> None:
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise Problem(400, "Bad Request", f"the multipart body is malformed ({exc})") from exc


class _PartReader:
    """python-multipart callbacks routing each part's bytes to where they belong."""

    def __init__(self, upload: Upload, store: ArtifactStore, limit: int) -> None:
        self.upload, self.store, self.limit = upload, store, limit
        self.header_name = self.header_value = self.disposition = b""
        self.part: str | None = None
        self.metadata = bytearray()
        self.seen: set[str] = set()
        self.finished = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.header_name = self.header_value = self.disposition = b""
        self.part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in ("artifact", "metadata"):
            which = f"unexpected multipart part '{name}'" if name else "a multipart part has no name"
            raise Problem(422, "Unprocessable Content",
                          f"{which}; send a file part 'artifact' and a JSON part 'metadata'")
        if name in self.seen:
            raise Problem(422, "Unprocessable Content", f"multipart part '{name}' appears twice")
        self.seen.add(name)
        self.part = name
        if name == "artifact":
            self.upload.artifact = self.store.spool(self.limit)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == "artifact":
            self.upload.artifact.write(data[start:end])
        else:
            self.metadata += data[start:end]
            if len(self.metadata) > MAX_METADATA_BYTES:
                raise Problem(413, "Content Too Large",
                              f"multipart part 'metadata' is larger than {MAX_METADATA_BYTES} bytes")

    def on_part_end(self) -> None:
        if self.part == "metadata":
            self.upload.metadata = bytes(self.metadata)

    def on_end(self) -> None:
        self.finished = True
