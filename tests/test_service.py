"""The service every front-end shares, as front-ends meet it: what lands in the library, what a
client is told, and what a DAW is handed."""

from __future__ import annotations

import pytest
import soundfile as sf

from studio.bridges.session import Session
from studio.library import LibraryError
from studio.request import Request
from studio.service import open_studio


@pytest.fixture
def studio(tiny_model_dir, tmp_path):
    studio = open_studio(
        str(tiny_model_dir), library_dir=tmp_path / "library", export_dir=tmp_path / "exports"
    )
    yield studio
    studio.close()


def test_a_request_whose_second_take_hits_a_full_disk_leaves_nothing(studio, monkeypatch):
    real_write, writes = sf.write, []

    def disk_full_after_one(*args, **kwargs):
        writes.append(1)
        if len(writes) > 1:
            raise OSError(28, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sf, "write", disk_full_after_one)
    with pytest.raises(LibraryError, match="No space left on device") as caught:
        studio.run(Request("x", seconds=0.3, variations=2, seed=1))
    assert "disk has space" in caught.value.hint
    assert studio.library.search() == [] and list(studio.library.audio_dir.iterdir()) == []
    monkeypatch.setattr(sf, "write", real_write)
    _, records = studio.run(Request("x", seconds=0.3, variations=2, seed=1))  # and it still works
    assert len(records) == 2 and all(r.path.is_file() for r in records)


def test_saved_takes_are_handed_over_from_the_library_when_the_export_folder_fails(studio):
    studio.export_dir.parent.mkdir(parents=True, exist_ok=True)
    studio.export_dir.write_text("a file where the export folder should be")
    session = Session(studio)
    try:
        ticket = session.generate("x", seconds=0.3, variations=2, seed=1)
        _, records = ticket.future.result(timeout=120)  # a success, not a failure
        assert ticket.handoff == [r.path for r in records] and all(p.is_file() for p in ticket.handoff)
    finally:
        session.close()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_studio_computes_in_the_precision_asked_for(tiny_model_dir, tmp_path, dtype):
    """What `studio serve --dtype` and `studio osc --dtype` ask for is what the engine computes in."""
    studio = open_studio(str(tiny_model_dir), library_dir=tmp_path / "library", dtype=dtype)
    try:
        assert str(studio.host.engine.dtype) == f"torch.{dtype}"
        _, records = studio.run(Request("x", seconds=0.3, seed=1))
        audio, _ = sf.read(records[0].path, dtype="float32")
        assert abs(audio).max() > 0
    finally:
        studio.close()
