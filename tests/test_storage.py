"""The storage layer: versions, manifest, writer lock, extra named files, old layout."""
import json
import os
import threading
import time

import faiss
import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.errors import ConcurrentWriteError, CorruptFileError, LockTimeoutError
from simstd.index.persistence import PARTS, Part, register_part
from simstd.storage import (
    current_version,
    legacy_paths,
    open_version,
    store_dir,
    version_files,
    writer_lock,
)
from simstd.storage import layout

from conftest import unit_rows


def small_index(seed=0, n=30, dim=8, method=None):
    rng = np.random.default_rng(seed)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, n, dim, 3.0), "image": unit_rows(rng, n, dim, -3.0)},
                                   metadata={"text": [{"text": f"t{i}"} for i in range(n)]})
    index.standardizer = (Standardizer(method=method) if method else Standardizer()).fit(index)
    return index


def write_legacy(index, path):
    """The single-file layout simstd wrote before versions (FAISS file + sidecars)."""
    paths = legacy_paths(path)
    store = index.store
    for key, value in (("format_version", 1), ("dim", index.dim), ("factory", index.factory),
                       ("model", index.model), ("fingerprint", index.fingerprint),
                       ("shards", [[m, n] for m, n in index.counts.items()])):
        store.set_info(key, value)
    writer = faiss.FileIOWriter(str(paths["faiss"]))
    for shard in index.shards.values():
        faiss.write_index(shard, writer)
    del writer
    store.save(paths["sqlite"])
    index.standardizer.save(paths["standardizer"])


def test_current_version_names_what_load_opens(tmp_path):
    path = tmp_path / "db.faiss"
    assert current_version(path) is None
    index = small_index()
    v1 = index.save(path)
    assert current_version(path) == v1 == MixedIndex.load(path).version
    index.add(unit_rows(np.random.default_rng(1), 3, 8), "text")
    v2 = index.save(path)
    assert v2 != v1 and current_version(path) == v2
    assert open_version(path).manifest.parent == v1


def test_fit_only_commit_links_the_unchanged_files(tmp_path):
    path = tmp_path / "db.faiss"
    small_index().save(path)
    before = version_files(path)
    index = MixedIndex.load(path)
    index.standardizer = Standardizer(sample=10).fit(index)
    index.save(path)
    after = version_files(path)
    assert after["shards.faiss"] != before["shards.faiss"]  # another version folder...
    assert os.path.samefile(after["shards.faiss"], before["shards.faiss"])  # ...same bytes, not copied
    assert os.path.samefile(after["items.sqlite"], before["items.sqlite"])


def test_only_the_current_and_previous_versions_are_kept(tmp_path):
    path = tmp_path / "db.faiss"
    index = small_index()
    for i in range(4):
        index.add(unit_rows(np.random.default_rng(i), 2, 8), "image")
        index.save(path)
    folders = sorted(p.name for p in store_dir(path).iterdir() if p.is_dir())
    manifest = open_version(path).manifest
    assert folders == sorted([manifest.version, manifest.parent])


def test_extra_named_file_round_trips(tmp_path):
    def save(index, p):
        terms = getattr(index, "item_terms_", None)
        if terms is None:
            return False
        np.save(p, terms)
        return True

    def load(index, p):
        index.item_terms_ = np.load(p)

    register_part(Part("item_terms_test.npy", save, load))  # an extension's own named file
    try:
        path = tmp_path / "db.faiss"
        index = small_index()
        index.save(path)
        assert "item_terms_test.npy" not in version_files(path)  # nothing to store: no file
        index.item_terms_ = np.arange(60, dtype=np.float32)
        index.save(path)
        assert "item_terms_test.npy" in open_version(path).manifest.files  # checksummed like the core files
        np.testing.assert_array_equal(MixedIndex.load(path).item_terms_, index.item_terms_)
    finally:
        PARTS.pop("item_terms_test.npy")


def test_old_single_file_index_loads_and_converts_on_the_next_write(tmp_path):
    path = tmp_path / "db.faiss"
    index = small_index(method="paper")  # the old layout predates the corrected method
    write_legacy(index, path)
    old = MixedIndex.load(path)
    assert old.counts == index.counts and old.standardizer is not None
    assert current_version(path).startswith("legacy:")
    old.add(unit_rows(np.random.default_rng(3), 2, 8), "text")
    old.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.faiss", "db.faiss.d"]  # sidecars gone
    back = MixedIndex.load(path)
    assert back.counts == {"text": 32, "image": 30} and back.standardizer is not None
    assert back.store.get([0])[0] == {"text": "t0"}


def test_a_second_writer_waits_or_times_out_with_a_clear_message(tmp_path):
    path = tmp_path / "db.faiss"
    small_index().save(path)
    released = threading.Event()

    def hold():
        with writer_lock(path):
            time.sleep(0.6)
        released.set()

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.2)
    with pytest.raises(LockTimeoutError, match="another simstd process is writing .*lock-timeout"):
        small_index().save(path, lock_timeout=0, overwrite=True)
    start = time.monotonic()
    small_index().save(path, lock_timeout=10, overwrite=True)  # waits for the holder, then commits
    assert released.is_set() and time.monotonic() - start > 0.1
    t.join()


def test_saving_a_version_that_is_no_longer_current_is_refused(tmp_path):
    path = tmp_path / "db.faiss"
    small_index().save(path)
    a, b = MixedIndex.load(path), MixedIndex.load(path)
    a.add(unit_rows(np.random.default_rng(5), 2, 8), "text")
    b.add(unit_rows(np.random.default_rng(6), 3, 8), "text")
    a.save(path)
    with pytest.raises(ConcurrentWriteError, match="changed since it was loaded"):
        b.save(path)  # would silently drop a's batch
    assert MixedIndex.load(path).counts["text"] == 32


def test_a_damaged_manifest_is_named(tmp_path):
    path = tmp_path / "db.faiss"
    small_index().save(path)
    path.write_text('{"format": "simstd.index", "format_version": 2, "version": ')
    with pytest.raises(CorruptFileError, match="db.faiss is corrupt"):
        MixedIndex.load(path)
    path.write_text(json.dumps({"format": "simstd.index", "format_version": 9}))
    with pytest.raises(CorruptFileError, match="format version 9"):
        MixedIndex.load(path)


def test_a_reader_whose_version_is_removed_under_it_reads_the_new_one(tmp_path, monkeypatch):
    """Two commits between reading the manifest and opening the files remove the
    reader's version (only the previous one is kept): the reader starts again."""
    path = tmp_path / "db.faiss"
    writer = small_index()
    writer.save(path)
    original = layout._load_version_files
    calls = []

    def racing(version, *args):
        calls.append(version.version)
        if len(calls) == 1:  # a writer commits twice right after this reader read the manifest
            for seed in (1, 2):
                writer.add(unit_rows(np.random.default_rng(seed), 2, 8), "text")
                writer.save(path)
            assert not version.folder.exists()
        return original(version, *args)

    monkeypatch.setattr(layout, "_load_version_files", racing)
    index = MixedIndex.load(path)
    assert len(calls) == 2 and index.version == writer.version and index.counts["text"] == 34


def test_writing_to_a_missing_index_creates_nothing(tmp_path):
    from click.testing import CliRunner

    from simstd.cli import main

    np.save(tmp_path / "t.npy", unit_rows(np.random.default_rng(0), 5, 8))
    for args in (["add", "-e", f"text={tmp_path / 't.npy'}"], ["fit"]):
        r = CliRunner().invoke(main, [*args, "--index", str(tmp_path / "nothere.faiss")])
        assert r.exit_code == 1 and "does not exist" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npy"]


def test_rollback_of_an_old_single_file_index_says_it_has_no_versions(tmp_path):
    from simstd.errors import SimstdError
    from simstd.storage import rollback

    path = tmp_path / "db.faiss"
    write_legacy(small_index(), path)
    with pytest.raises(SimstdError, match="old single-file layout"):
        rollback(path)
    assert not store_dir(path).exists()
