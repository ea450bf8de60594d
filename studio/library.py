"""The take library: every generated take saved as a WAV file plus a SQLite row, before it is shown.

This is the one place that writes takes to disk. The WAV is written atomically and flushed first,
then the row is committed, and a take only exists for front-ends once its row does: so nothing is
ever listed that is not fully on disk, and a crash can at worst leave an unlisted file, never a row
pointing at a missing or half-written one.

Gradio workers, the OSC server and the CLI call one `Library` from several threads, so a single
connection is shared under a lock; WAL mode and a busy timeout let a second process (another
`studio` command) use the same folder at the same time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from platformdirs import user_data_path

from studio.audio import write_audio
from studio.errors import AudioError, StudioError
from studio.names import slug, take_stem

if TYPE_CHECKING:  # the engine pulls in torch; the library must load fast without it (OSC, CLI)
    from studio.engine import Take

log = logging.getLogger("studio.library")

SCHEMA_VERSION = 1
DB_FILE = "library.sqlite3"
AUDIO_DIR = "audio"
ORPHANS_DIR = "orphans"  # take files whose save was interrupted before their row landed
STALE_S = 600  # a save takes well under a second: leftovers older than this are from a dead process
MAX_NAME = 200
MAX_TAG = 40
BUSY_TIMEOUT_MS = 10_000
_DISK_HINT = "check the library folder is writable and the disk has space (or set STUDIO_LIBRARY_DIR)"

_SCHEMA = (
    # AUTOINCREMENT: ids are never reused, so a front-end still holding a deleted take's id can
    # never reach a different take with it. `file` is relative to the library folder so the folder
    # can be moved; `prompt` repeats params["prompt"] so search needs no JSON.
    """CREATE TABLE takes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        file TEXT NOT NULL UNIQUE,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL,
        created_at REAL NOT NULL,
        starred INTEGER NOT NULL DEFAULT 0,
        duration_s REAL NOT NULL,
        sample_rate INTEGER NOT NULL
    )""",
    "CREATE INDEX takes_newest ON takes (created_at DESC, id DESC)",
    """CREATE TABLE tags (
        take_id INTEGER NOT NULL REFERENCES takes (id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (take_id, tag)
    ) WITHOUT ROWID""",
    "CREATE INDEX tags_by_tag ON tags (tag)",
)

# Tags cannot hold commas, which is what lets them travel through group_concat in one query.
_SELECT = """SELECT id, name, file, prompt, params, created_at, starred, duration_s, sample_rate,
    (SELECT group_concat(tag, ',') FROM tags WHERE take_id = takes.id) FROM takes"""


class LibraryError(StudioError):
    """The library folder or database could not be read or written, or a request to it was invalid."""


@dataclass(frozen=True)
class TakeRecord:
    id: int
    name: str  # user-visible name, defaults to a slug of the prompt + seed + take number
    path: Path  # absolute path of the WAV file
    prompt: str
    params: dict  # exactly TakeParams.to_dict() of the take
    created_at: float  # unix time
    starred: bool
    tags: tuple[str, ...]  # normalised and sorted
    duration_s: float
    sample_rate: int


def default_library_dir() -> Path:
    """$STUDIO_LIBRARY_DIR lets tests, portable installs and shared studios put the library anywhere."""
    if os.environ.get("STUDIO_LIBRARY_DIR"):
        return Path(os.environ["STUDIO_LIBRARY_DIR"]).expanduser()
    return user_data_path("studio") / "library"


class Library:
    """Takes on disk and in SQLite; safe to share between threads."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root if root is not None else default_library_dir()).expanduser().resolve()
        self.audio_dir = self.root / AUDIO_DIR
        self.db_path = self.root / DB_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # a folder the user gave keeps its mode
            self.audio_dir.mkdir(mode=0o700, exist_ok=True)
            _keep_private(self.db_path, self.audio_dir)
        except OSError as exc:
            raise LibraryError(
                f"cannot create the library folder {self.audio_dir}: {exc.strerror or exc}", _DISK_HINT
            ) from exc
        try:
            # isolation_level=None: transactions are opened explicitly (BEGIN IMMEDIATE), so a
            # writer takes the lock up front instead of failing half-way on a busy database.
            self._conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._db_error(exc, "open the library") from exc
        try:
            self._setup()
            self._tidy()
        except BaseException:
            self.close()
            raise

    # -- public API -------------------------------------------------------------------------------

    def add(self, take: Take, name: str | None = None) -> TakeRecord:
        """Save a take; only once this returns may a front-end show it."""
        audio = np.asarray(take.audio, dtype=np.float32)
        if audio.ndim != 2 or 0 in audio.shape:
            raise LibraryError(f"a take's audio must be [channels, frames] and not empty, got {audio.shape}")
        rate = int(take.sample_rate)
        if rate <= 0:
            raise LibraryError(f"a take's sample rate must be positive, got {take.sample_rate}")
        params = take.params.to_dict()
        try:
            params_json = json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:  # checked before any file is written
            raise LibraryError(f"the take's parameters cannot be stored: {exc}") from exc
        p = take.params
        name = _check_name(name) if name is not None else take_stem(p.prompt, p.seed, p.take_index)
        path = self.audio_dir / f"{uuid.uuid4().hex}_{slug(p.prompt)}.wav"
        duration = audio.shape[1] / rate
        try:
            write_audio(path, audio, rate, bit_depth=24)
        except AudioError as exc:
            raise LibraryError(exc.message, exc.hint) from exc
        try:
            _flush_to_disk(path)
            with self._db("save the take", write=True) as conn:
                created = time.time()  # taken under the lock, so newest-first agrees with id order
                take_id = conn.execute(
                    "INSERT INTO takes (name, file, prompt, params, created_at, duration_s, sample_rate)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        path.relative_to(self.root).as_posix(),
                        p.prompt,
                        params_json,
                        created,
                        duration,
                        rate,
                    ),
                ).lastrowid
        except BaseException:  # interrupts too: a file without a row would never be listed nor removed
            _remove(path)
            raise
        return TakeRecord(take_id, name, path, p.prompt, params, created, False, (), duration, rate)

    def get(self, take_id: int) -> TakeRecord:
        with self._db("read the take") as conn:
            return self._fetch(conn, take_id)

    def search(
        self, text: str = "", starred: bool | None = None, tag: str | None = None, limit: int = 200
    ) -> list[TakeRecord]:
        """Newest first. Text is a literal, case-insensitive substring of the prompt or the name:
        matched with instr on casefolded text rather than LIKE, so % and _ need no escaping and
        non-ASCII letters fold too (SQLite's LIKE and lower() only fold ASCII)."""
        if limit < 0:
            raise LibraryError(f"the search limit must be 0 or more, got {limit}")
        clauses, args = [], []
        if text.strip():
            clauses.append("(instr(casefold(prompt), ?) > 0 OR instr(casefold(name), ?) > 0)")
            args += [text.strip().casefold()] * 2
        if starred is not None:
            clauses.append("starred = ?")
            args.append(int(starred))
        if tag is not None:
            clauses.append("id IN (SELECT take_id FROM tags WHERE tag = ?)")
            args.append(tag.strip().lower())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db("search the library") as conn:
            rows = conn.execute(f"{_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit))
            return [self._record(row) for row in rows]

    def star(self, take_id: int, starred: bool = True) -> TakeRecord:
        return self._update(take_id, "starred = ?", int(starred), "star the take")

    def set_tags(self, take_id: int, tags: list[str]) -> TakeRecord:
        clean = _normalise_tags(tags)
        with self._db("tag the take", write=True) as conn:
            self._fetch(conn, take_id)
            conn.execute("DELETE FROM tags WHERE take_id = ?", (take_id,))
            conn.executemany("INSERT INTO tags (take_id, tag) VALUES (?, ?)", [(take_id, t) for t in clean])
            return self._fetch(conn, take_id)

    def rename(self, take_id: int, name: str) -> TakeRecord:
        """Only the display name changes: the file keeps its name, so paths handed out stay valid."""
        return self._update(take_id, "name = ?", _check_name(name), "rename the take")

    def delete(self, take_id: int) -> None:
        """The row goes first, so a failure can only leave an unlisted file, never a listed take
        without audio."""
        with self._db("delete the take", write=True) as conn:
            path = self._fetch(conn, take_id).path
            conn.execute("DELETE FROM takes WHERE id = ?", (take_id,))
        _remove(path)

    def params(self, take_id: int) -> dict[str, Any]:
        """The stored parameters, ready for `studio.request.Request.from_params`."""
        return self.get(take_id).params

    def tags(self) -> list[str]:
        with self._db("list the tags") as conn:
            return [tag for (tag,) in conn.execute("SELECT DISTINCT tag FROM tags ORDER BY tag")]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _setup(self) -> None:
        with self._db("open the library") as conn:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")  # tags go with their take
            conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
            conn.create_function("casefold", 1, str.casefold, deterministic=True)
        with self._db("set up the library", write=True) as conn:
            # Read inside the write transaction, so two processes opening a new library at once
            # cannot both create the schema.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LibraryError(
                    f"{self.db_path} was written by a newer Studio (schema {version}, this one reads "
                    f"up to {SCHEMA_VERSION})",
                    "upgrade Studio, or set STUDIO_LIBRARY_DIR to another folder",
                )
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _tidy(self) -> None:
        """What a process killed while saving left behind: its temporary files are removed, and a
        take's file whose row never landed moves to `orphans/` (kept, not deleted: it is audio).
        Only files older than STALE_S, so another process's save in progress is left alone."""
        with self._db("read the library") as conn:
            known = {row[0] for row in conn.execute("SELECT file FROM takes")}
        stale_before = time.time() - STALE_S
        for path in sorted(self.audio_dir.iterdir()):
            if not path.is_file() or path.stat().st_mtime > stale_before:
                continue
            if path.name.startswith("."):  # atomic_path's temporary files
                path.unlink(missing_ok=True)
                log.warning("removed %s, left by a save that was interrupted", path)
            elif path.relative_to(self.root).as_posix() not in known:
                orphans = self.root / ORPHANS_DIR
                orphans.mkdir(mode=0o700, exist_ok=True)
                path.replace(orphans / path.name)
                log.warning(
                    "moved %s to %s: its save was interrupted before the library recorded it",
                    path.name,
                    orphans,
                )

    @contextmanager
    def _db(self, doing: str, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; with write, one transaction, rolled back on any error."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LibraryError(f"the library {self.root} is closed", "open it again with Library(...)")
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")
                yield conn
                if write:
                    conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.warning("rollback failed in %s", self.db_path, exc_info=True)
                if isinstance(exc, sqlite3.Error):
                    raise self._db_error(exc, doing) from exc
                raise

    def _db_error(self, exc: sqlite3.Error, doing: str) -> LibraryError:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # primary code of an extended one
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return LibraryError(
                f"{self.db_path} is not a readable library database ({exc})",
                f"move {self.db_path.name} (and any {self.db_path.name}-wal / -shm beside it) out of "
                f"{self.root} and start again: Studio creates a new, empty library there. The audio "
                f"files in {self.audio_dir} are kept.",
            )
        return LibraryError(f"cannot {doing} ({self.db_path}): {exc}", _DISK_HINT)

    def _update(self, take_id: int, assignment: str, value: object, doing: str) -> TakeRecord:
        with self._db(doing, write=True) as conn:
            if conn.execute(f"UPDATE takes SET {assignment} WHERE id = ?", (value, take_id)).rowcount == 0:
                raise _unknown(take_id)
            return self._fetch(conn, take_id)

    def _fetch(self, conn: sqlite3.Connection, take_id: int) -> TakeRecord:
        row = conn.execute(f"{_SELECT} WHERE id = ?", (take_id,)).fetchone()
        if row is None:
            raise _unknown(take_id)
        return self._record(row)

    def _record(self, row: tuple) -> TakeRecord:
        take_id, name, file, prompt, params, created, starred, duration, rate, tags = row
        return TakeRecord(
            id=take_id,
            name=name,
            path=self.root / file,
            prompt=prompt,
            params=json.loads(params),
            created_at=created,
            starred=bool(starred),
            tags=tuple(sorted(tags.split(","))) if tags else (),
            duration_s=duration,
            sample_rate=rate,
        )


def _unknown(take_id: int) -> LibraryError:
    return LibraryError(
        f"there is no take {take_id} in the library", "it may have been deleted; search again"
    )


def _keep_private(db_path: Path, audio_dir: Path) -> None:
    """The database and the audio folder readable by their owner only, as the takes are. SQLite gives
    its -wal and -shm files the database's permissions, so they follow; a library made before this
    (0644 files) is tightened on open."""
    audio_dir.chmod(0o700)
    os.close(os.open(db_path, os.O_CREAT | os.O_RDWR, 0o600))
    for path in (db_path, *(db_path.with_name(db_path.name + end) for end in ("-wal", "-shm"))):
        if path.exists():
            path.chmod(0o600)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise LibraryError(f"a take's name must be 1 to {MAX_NAME} characters, got {len(name)}")
    return name


def _normalise_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):  # a bare string would otherwise become one tag per letter
        raise LibraryError(
            f"tags must be a list of strings, got the string {tags!r}", "pass ['drums', 'kick']"
        )
    clean: set[str] = set()
    for raw in tags:
        tag = raw.strip().lower()
        if "," in tag:
            raise LibraryError(f"the tag {raw!r} holds a comma", "give each tag as its own list item")
        if len(tag) > MAX_TAG:
            raise LibraryError(f"the tag {raw!r} is longer than {MAX_TAG} characters", "use a shorter tag")
        if tag:
            clean.add(tag)
    return sorted(clean)


def _flush_to_disk(path: Path) -> None:
    """write_audio renames a complete file into place but does not fsync it: without this, a power
    cut just after the row commits could leave the row pointing at an empty file."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.name == "posix":  # the rename itself lives in the folder; Windows cannot open folders
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise LibraryError(f"cannot flush {path} to disk: {exc.strerror or exc}", _DISK_HINT) from exc


def _remove(path: Path) -> None:
    """Best effort: the row is already gone (or was never made), so a file left here is only an
    unlisted orphan, and failing the caller over it would report a take as kept that is not."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc.strerror or exc)
