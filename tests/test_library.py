"""The take library on real SQLite files and real WAVs: saving, restarts, search, edits, threads, failures."""

from __future__ import annotations

import os
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from platformdirs import user_data_path

from studio.engine import Take
from studio.library import Library, LibraryError, TakeRecord, default_library_dir
from studio.request import Request, TakeParams

RATE = 44100


def make_take(prompt: str = "punchy 808 kick, long tail", seed: int = 7, index: int = 0, frames: int = 2205):
    t = np.arange(frames, dtype=np.float32) / RATE
    tone = 0.5 * np.sin(2 * np.pi * (110 + 10 * seed + index) * t).astype(np.float32)
    params = TakeParams(
        prompt=prompt,
        negative_prompt="hiss, clicks",
        seconds=frames / RATE,
        steps=8,
        cfg=1.0,
        sampler="pingpong",
        seed=seed,
        take_seed=seed + index,
        take_index=index,
        variations=4,
        diversity=0.7,
        init_audio=None,
        strength=None,
        model="stable-audio-open-small",
        sample_rate=RATE,
    )
    return Take(np.stack([tone, -tone]), RATE, params)


@pytest.fixture
def lib(tmp_path):
    with Library(tmp_path / "library") as library:
        yield library


def rows(library: Library) -> int:
    with sqlite3.connect(library.db_path) as conn:
        return conn.execute("SELECT count(*) FROM takes").fetchone()[0]


def audio_files(library: Library) -> list[str]:
    return sorted(p.name for p in library.audio_dir.iterdir())


def test_add_writes_a_full_wav_and_a_row_with_the_exact_params(lib):
    take = make_take()
    record = lib.add(take)
    assert record.path.is_absolute() and record.path.parent == lib.audio_dir and record.path.is_file()
    info = sf.info(str(record.path))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (RATE, 2, 2205, "PCM_24")
    back, _ = sf.read(str(record.path), dtype="float32", always_2d=True)
    assert np.abs(back.T - take.audio).max() < 1e-6
    assert record.params == take.params.to_dict()
    assert record.name == "punchy-808-kick-long-tail_7_1"
    assert record.duration_s == pytest.approx(0.05) and record.sample_rate == RATE
    assert not record.starred and record.tags == ()
    assert lib.get(record.id) == record
    assert audio_files(lib) == [record.path.name]  # no temporary files left beside it


def test_the_database_is_wal_versioned_and_its_files_are_in_the_root(lib):
    with sqlite3.connect(lib.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert lib.db_path == lib.root / "library.sqlite3" and lib.audio_dir == lib.root / "audio"


def test_every_library_file_is_private_and_an_old_library_is_tightened(tmp_path):
    root = tmp_path / "lib"
    with Library(root) as library:
        take = library.add(make_take())
        files = [library.db_path, *root.glob("library.sqlite3-*"), take.path]
        assert len(files) >= 3  # the database, its -wal (and -shm) and the take
        assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o600"}
        assert oct(library.audio_dir.stat().st_mode & 0o777) == "0o700"
        assert oct(root.stat().st_mode & 0o777) == "0o700"
    for path in (*root.glob("library.sqlite3*"), root / "audio"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # as a library from before this fix
    with Library(root) as library:
        assert oct(library.db_path.stat().st_mode & 0o777) == "0o600"
        assert oct(library.audio_dir.stat().st_mode & 0o777) == "0o700"


def test_a_relative_root_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Library("lib") as library:
        assert library.root == tmp_path.resolve() / "lib"
        assert library.add(make_take()).path.is_absolute()


def test_history_survives_a_restart(tmp_path):
    with Library(tmp_path) as first:
        a = first.add(make_take("glass pad", seed=1))
        b = first.add(make_take("vinyl texture", seed=2), name="my crackle")
        b = first.set_tags(first.star(b.id).id, ["Texture", "lofi"])
    with Library(tmp_path) as second:
        assert second.get(a.id) == a and second.get(b.id) == b
        assert [r.id for r in second.search()] == [b.id, a.id]
        assert second.tags() == ["lofi", "texture"]
        assert second.add(make_take(seed=3)).id > b.id


def test_search_text_is_a_case_insensitive_literal_substring(lib):
    kick = lib.add(make_take("Punchy 808 KICK"))
    wet = lib.add(make_take("100% wet reverb_tail"))
    verbatim = lib.add(make_take("verbatim speech"))
    cafe = lib.add(make_take("Café ambience"))
    named = lib.add(make_take("glass pad"), name="Sunday Morning")
    assert [r.id for r in lib.search("kick")] == [kick.id]
    assert [r.id for r in lib.search("  808 kick ")] == [kick.id]
    assert [r.id for r in lib.search("0%")] == [wet.id]  # LIKE would match every prompt with a 0
    assert [r.id for r in lib.search("b_t")] == [wet.id]  # LIKE would match "verbatim" too
    assert [r.id for r in lib.search("%")] == [wet.id]
    assert [r.id for r in lib.search("CAFÉ")] == [cafe.id]
    assert [r.id for r in lib.search("sunday")] == [named.id]  # the name counts, not just the prompt
    assert lib.search("nothing like this") == []
    assert [r.id for r in lib.search()] == [named.id, cafe.id, verbatim.id, wet.id, kick.id]


def test_search_is_newest_first_and_filters_by_star_and_tag(lib):
    ids = [lib.add(make_take(f"take {i}", seed=i)).id for i in range(6)]
    assert [r.id for r in lib.search()] == ids[::-1]
    assert [r.id for r in lib.search(limit=2)] == ids[:-3:-1]
    lib.star(ids[1])
    lib.star(ids[4])
    lib.star(ids[4], False)
    lib.set_tags(ids[1], ["drums"])
    lib.set_tags(ids[2], ["Drums", "kick"])
    assert [r.id for r in lib.search(starred=True)] == [ids[1]]
    assert [r.id for r in lib.search(starred=False)] == [i for i in ids[::-1] if i != ids[1]]
    assert [r.id for r in lib.search(tag=" DRUMS ")] == [ids[2], ids[1]]
    assert [r.id for r in lib.search("take 2", tag="drums")] == [ids[2]]
    assert [r.id for r in lib.search(starred=True, tag="kick")] == []
    with pytest.raises(LibraryError, match="limit"):
        lib.search(limit=-1)


def test_rename_changes_the_display_name_only(lib):
    record = lib.add(make_take())
    renamed = lib.rename(record.id, "  Big Kick  ")
    assert renamed.name == "Big Kick" and renamed.path == record.path and record.path.is_file()
    assert lib.get(record.id).name == "Big Kick"
    for bad in ("", "   ", "x" * 201):
        with pytest.raises(LibraryError, match="name"):
            lib.rename(record.id, bad)
    assert lib.rename(record.id, "x" * 200).name == "x" * 200
    with pytest.raises(LibraryError, match="name"):
        lib.add(make_take(), name=" ")


def test_star_and_tags_are_normalised_and_bad_tags_rejected(lib):
    a, b = lib.add(make_take(seed=1)), lib.add(make_take(seed=2))
    assert lib.star(a.id).starred and lib.get(a.id).starred
    assert not lib.star(a.id, False).starred
    tagged = lib.set_tags(a.id, ["  Kick ", "kick", "", "   ", "808", "KICK"])
    assert tagged.tags == ("808", "kick") and lib.get(a.id).tags == ("808", "kick")
    lib.set_tags(b.id, ["Snare", "808"])
    assert lib.tags() == ["808", "kick", "snare"]
    for bad in (["a,b"], ["ok", "x" * 41], "drums"):
        with pytest.raises(LibraryError, match="tag"):
            lib.set_tags(a.id, bad)
    assert lib.get(a.id).tags == ("808", "kick")  # a rejected call changes nothing
    assert lib.set_tags(a.id, ["y" * 40]).tags == ("y" * 40,)
    assert lib.set_tags(a.id, []).tags == ()
    assert lib.tags() == ["808", "snare"]


def test_unknown_ids_are_clear_errors(lib):
    for call in (lib.get, lib.params, lib.delete, lib.star):
        with pytest.raises(LibraryError, match="no take 42"):
            call(42)
    with pytest.raises(LibraryError, match="no take 42"):
        lib.rename(42, "x")
    with pytest.raises(LibraryError, match="no take 42"):
        lib.set_tags(42, ["x"])


def test_delete_removes_the_row_its_tags_and_the_file(lib):
    keep = lib.add(make_take(seed=1))
    gone = lib.set_tags(lib.add(make_take(seed=2)).id, ["doomed"])
    lib.delete(gone.id)
    assert not gone.path.exists() and keep.path.exists()
    with pytest.raises(LibraryError):
        lib.get(gone.id)
    assert [r.id for r in lib.search()] == [keep.id] and lib.tags() == []
    assert lib.add(make_take(seed=3)).id > gone.id  # ids are never reused


def test_a_file_removed_from_outside_is_still_listed_and_deletable(lib):
    record = lib.add(make_take())
    record.path.unlink()
    assert lib.get(record.id) == record and [r.id for r in lib.search()] == [record.id]
    lib.delete(record.id)
    assert rows(lib) == 0


def test_params_round_trip_into_a_request(lib):
    take = make_take("latin funk drum loop 115 BPM", seed=7, index=2)
    record = lib.add(take)
    params = lib.params(record.id)
    assert params == take.params.to_dict()
    request = Request.from_params(params)
    assert (request.prompt, request.seed, request.take_seeds) == (take.params.prompt, 7, (9,))
    assert (request.diversity, request.negative_prompt, request.steps) == (0.7, "hiss, clicks", 8)


def test_concurrent_adds_from_many_threads_all_land(lib):
    def worker(thread: int) -> list[TakeRecord]:
        added = [lib.add(make_take(f"thread {thread}", seed=thread, index=i, frames=441)) for i in range(10)]
        lib.search(f"thread {thread}")  # reads interleaved with other threads' writes
        return added

    with ThreadPoolExecutor(8) as pool:
        records = [r for batch in pool.map(worker, range(8)) for r in batch]
    assert len({r.id for r in records}) == 80 and len({r.path for r in records}) == 80
    assert all(r.path.is_file() for r in records)
    assert len(lib.search(limit=1000)) == 80 and len(audio_files(lib)) == 80
    with Library(lib.root) as reopened:
        assert {r.id for r in reopened.search(limit=1000)} == {r.id for r in records}


def test_a_full_disk_leaves_no_row_and_no_file(lib, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", disk_full)
    with pytest.raises(LibraryError, match="No space left on device") as caught:
        lib.add(make_take())
    assert "disk has space" in caught.value.hint
    assert rows(lib) == 0 and audio_files(lib) == []


def test_an_audio_folder_that_cannot_be_written_leaves_no_row(lib):
    shutil.rmtree(lib.audio_dir)
    lib.audio_dir.write_text("not a folder")  # unwritable even for root, unlike chmod
    with pytest.raises(LibraryError, match="cannot write"):
        lib.add(make_take())
    assert rows(lib) == 0
    lib.audio_dir.unlink()
    lib.audio_dir.mkdir()
    assert lib.add(make_take()).path.is_file()  # the library is still consistent and usable


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a POSIX user that chmod binds")
def test_a_read_only_audio_folder_leaves_no_row(lib):
    lib.audio_dir.chmod(0o500)
    try:
        with pytest.raises(LibraryError, match="cannot write"):
            lib.add(make_take())
    finally:
        lib.audio_dir.chmod(0o700)
    assert rows(lib) == 0 and audio_files(lib) == []


def test_a_failed_insert_removes_the_file_it_wrote(lib):
    with sqlite3.connect(lib.db_path) as conn:  # a real failure inside SQLite, at the real insert
        conn.execute("CREATE TRIGGER fail BEFORE INSERT ON takes BEGIN SELECT RAISE(ABORT, 'disk I/O'); END")
    with pytest.raises(LibraryError, match="save the take") as caught:
        lib.add(make_take())
    assert str(lib.db_path) in caught.value.message
    assert rows(lib) == 0 and audio_files(lib) == []
    with sqlite3.connect(lib.db_path) as conn:
        conn.execute("DROP TRIGGER fail")
    assert lib.add(make_take()).path.is_file()


def test_bad_takes_are_refused_before_anything_is_written(lib):
    take = make_take()
    for audio in (take.audio[0], take.audio[:, :0]):
        with pytest.raises(LibraryError, match="channels, frames"):
            lib.add(Take(audio, RATE, take.params))
    with pytest.raises(LibraryError, match="sample rate"):
        lib.add(Take(take.audio, 0, take.params))
    assert rows(lib) == 0 and audio_files(lib) == []


def test_a_corrupt_database_names_the_file_and_the_way_out(tmp_path):
    with Library(tmp_path) as library:
        kept = library.add(make_take()).path
    db = tmp_path / "library.sqlite3"
    db.write_bytes(b"this is not SQLite, it is a text file " * 200)
    with pytest.raises(LibraryError) as caught:
        Library(tmp_path)
    assert str(db) in caught.value.message and "move library.sqlite3" in caught.value.hint
    assert "audio files" in caught.value.hint
    db.rename(tmp_path / "library.sqlite3.broken")  # the recovery the hint describes
    with Library(tmp_path) as fresh:
        assert fresh.search() == [] and kept.is_file()


def test_a_library_from_a_newer_studio_is_refused(tmp_path):
    Library(tmp_path).close()
    with sqlite3.connect(tmp_path / "library.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(LibraryError, match="newer Studio"):
        Library(tmp_path)


def test_an_unusable_root_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="cannot create the library folder"):
        Library(tmp_path / "file" / "library")


def test_a_closed_library_says_so(tmp_path):
    library = Library(tmp_path)
    library.close()
    library.close()
    with pytest.raises(LibraryError, match="closed"):
        library.search()


def test_default_library_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_LIBRARY_DIR", str(tmp_path / "mine"))
    assert default_library_dir() == tmp_path / "mine"
    with Library() as library:
        assert library.root == (tmp_path / "mine").resolve()
    monkeypatch.delenv("STUDIO_LIBRARY_DIR")
    assert default_library_dir() == user_data_path("studio") / "library"


def test_leftovers_of_a_killed_save_are_tidied_on_open_and_said_so(tmp_path, caplog):
    root = tmp_path / "lib"
    with Library(root) as library:
        kept = library.add(make_take())
        temp = library.audio_dir / ".abc123_kick-x1y2.wav"  # what atomic_path leaves when killed
        temp.write_bytes(b"")
        orphan = library.audio_dir / "0123abcd_kick.wav"  # a take written, its row never inserted
        shutil.copy(kept.path, orphan)
        fresh = library.audio_dir / ".fresh-save.wav"  # another process saving right now
        fresh.write_bytes(b"")
    long_ago = 1_000_000_000
    for path in (temp, orphan, kept.path):
        os.utime(path, (long_ago, long_ago))
    with caplog.at_level("WARNING", logger="studio.library"), Library(root) as library:
        assert not temp.exists() and fresh.exists()
        assert not orphan.exists() and (root / "orphans" / orphan.name).is_file()
        assert [r.id for r in library.search()] == [kept.id] and kept.path.is_file()
    assert "interrupted" in caplog.text and orphan.name in caplog.text
