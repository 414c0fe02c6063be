"""LabelStore: editing, undo, persistence, imports, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from workbench.annotations.store import LabelStore, LabelStoreOptions
from workbench.errors import WorkbenchError
from workbench.io.volume import Volume

SHAPE = (4, 32, 40)


def make_store(tmp_path, shape=SHAPE, **kw) -> LabelStore:
    return LabelStore.create(tmp_path / "data.zarr" / "labels" / "annotations", tmp_path / "annotations.jsonl",
                             shape, (40.0, 4.0, 4.0), LabelStoreOptions(**kw))


def reopen(store: LabelStore) -> LabelStore:
    return LabelStore(store.group_path, store.journal_path, store.undo_dir)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return make_store(tmp_path)


def test_new_store_is_empty_small_chunked_ngff_label_image(store):
    import zarr

    assert store.shape == SHAPE and store.dtype == np.uint8
    assert store.chunks == (1, 32, 40)
    assert store.counts() == {} and not store.read().any()
    attrs = dict(zarr.open_group(str(store.group_path), mode="r").attrs)
    meta = attrs.get("ome", attrs)
    assert "multiscales" in meta and "image-label" in meta


def test_stroke_labels_expected_pixels_and_is_journaled(store):
    edit = store.add_stroke([[1, 10, 5], [1, 10, 15]], label=2, width=3)
    got = store.read()
    want = np.zeros(SHAPE, np.uint8)
    want[1, 9:12, 4:17] = 2
    np.testing.assert_array_equal(got, want)
    assert edit.changed == 3 * 13 and store.counts() == {2: 39}
    rec = json.loads(store.journal_path.read_text().splitlines()[-1])
    assert rec["op"] == "stroke" and rec["label"] == 2 and rec["width"] == 3 and rec["plane"] == "xy"
    assert rec["points"] == [[1, 10, 5], [1, 10, 15]]


def test_3d_stroke_paints_a_ball(store):
    store.add_stroke([[2, 16, 20]], label=1, width=3, plane="3d")
    lab = store.read()
    assert lab[1, 16, 20] == lab[3, 16, 20] == 1 and lab[0, 16, 20] == 0
    assert store.counts()[1] == int((lab == 1).sum())


def test_overwrite_erase_and_counts(store):
    store.add_stroke([[0, 5, 0], [0, 5, 39]], 1, width=3)
    store.add_stroke([[0, 0, 20], [0, 31, 20]], 2, width=1)  # crosses the first stroke: overwrites it
    lab = store.read()
    assert lab[0, 5, 20] == 2 and lab[0, 5, 19] == 1
    store.erase_stroke([[0, 5, 20]], width=3)
    lab = store.read()
    assert not lab[0, 4:7, 19:22].any()
    assert store.counts() == {k: int((lab == k).sum()) for k in (1, 2)}


def test_fill_slice_and_box_and_their_undo(store):
    store.add_stroke([[2, 3, 3]], 1)
    before = store.read()
    store.fill_slice(2, 2)
    assert (store.read()[2] == 2).all()
    store.fill_slice(5, 1, axis=2)
    assert (store.read()[:, :, 5] == 1).all()
    store.fill_box((0, -4, 30), (2, 10, 100), 1)  # clipped
    assert (store.read()[0:2, 0:10, 30:] == 1).all()
    for _ in range(3):
        assert store.undo() is not None
    np.testing.assert_array_equal(store.read(), before)
    with pytest.raises(WorkbenchError):
        store.fill_slice(9, 1)


def test_undo_each_kind_and_nothing_left(store, rng):
    states = [store.read()]
    store.add_stroke([[1, 2, 2], [1, 20, 30]], 1)
    states.append(store.read())
    store.erase_stroke([[1, 10, 14]], width=5)
    states.append(store.read())
    store.import_labels(rng.integers(0, 3, SHAPE).astype(np.uint8))
    states.append(store.read())
    store.clear()
    states.append(store.read())
    assert not states[-1].any()
    store.add_stroke([[3, 1, 1]], 2)
    for expected in reversed(states):
        assert store.undo() is not None
        np.testing.assert_array_equal(store.read(), expected)
        assert store.counts() == {k: int((expected == k).sum()) for k in (1, 2) if (expected == k).any()}
    assert store.undo() is None
    ops = [r["op"] for r in store.history()]
    assert ops.count("undo") == 5


def test_persistence_in_new_instance_and_undo_after_reopen(tmp_path):
    store = make_store(tmp_path)
    store.add_stroke([[0, 4, 4], [0, 4, 30]], 1)
    first = store.read()
    store.fill_box((1, 0, 0), (2, 8, 8), 2)
    second = store.read()
    again = reopen(store)
    np.testing.assert_array_equal(again.read(), second)
    assert again.undo() is not None
    np.testing.assert_array_equal(store.read(), first)


def test_labels_and_undo_survive_a_new_process(tmp_path):
    store = make_store(tmp_path)
    store.add_stroke([[0, 4, 4], [0, 4, 30]], 1)
    store.add_stroke([[2, 20, 4], [2, 20, 30]], 2)
    code = (
        "import sys, numpy as np; from workbench.annotations.store import LabelStore;"
        "s = LabelStore(sys.argv[1], sys.argv[2]);"
        "print(s.counts()); s.undo(); print(s.counts())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store.group_path), str(store.journal_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["{1: 87, 2: 87}", "{1: 87}"]


def test_clear_then_undo_restores_everything(store):
    store.fill_box((0, 0, 0), (4, 8, 8), 1)
    store.add_stroke([[3, 30, 2], [3, 30, 38]], 2)
    before = store.read()
    store.clear()
    assert store.counts() == {} and not store.read().any()
    assert store.undo().changed == int(np.count_nonzero(before))
    np.testing.assert_array_equal(store.read(), before)


def test_import_labels_checks(store):
    with pytest.raises(WorkbenchError, match="shape"):
        store.import_labels(np.zeros((4, 32, 41), np.uint8))
    with pytest.raises(WorkbenchError, match="non-negative"):
        store.import_labels(-np.ones(SHAPE, np.int16))
    with pytest.raises(WorkbenchError, match="integers"):
        store.import_labels(np.zeros(SHAPE, np.float32))
    with pytest.raises(WorkbenchError, match="does not fit"):
        store.import_labels(np.full(SHAPE, 300, np.uint16))
    assert store.history() == []  # nothing was recorded or changed
    lab = np.zeros(SHAPE, np.int32)
    lab[1, 2:5, 2:5] = 2
    edit = store.import_labels(Volume(lab, source="labels.tif"))
    np.testing.assert_array_equal(store.read(), lab)
    assert edit.op == "import" and store.history()[-1]["source"] == "labels.tif"
    assert store.counts() == {2: 9}


def test_import_merge_keeps_existing_labels(store):
    store.add_stroke([[0, 1, 1]], 1)
    lab = np.zeros(SHAPE, np.uint8)
    lab[3, 10, 10] = 2
    store.import_labels(lab, merge=True)
    assert store.read()[0, 1, 1] == 1 and store.read()[3, 10, 10] == 2


def test_relabel(store):
    store.add_stroke([[0, 1, 1]], 1)
    store.add_stroke([[1, 1, 1]], 2)
    store.relabel(1, 0)
    assert store.counts() == {2: 9}
    store.undo()
    assert store.counts() == {1: 9, 2: 9}


def test_bad_labels_raise(store):
    for bad in (0, -1, 256, 1.5, True):
        with pytest.raises(WorkbenchError):
            store.add_stroke([[0, 1, 1]], bad)


def test_stroke_outside_is_a_noop(store):
    edit = store.add_stroke([[0, -50, -50], [0, -40, -10]], 1)
    assert edit.changed == 0 and not store.read().any()
    assert store.undo() is None


def test_uint16_store_and_undo_depth(tmp_path):
    store = make_store(tmp_path, dtype="uint16", undo_depth=2)
    for i in range(4):
        store.add_stroke([[0, 3 * i + 1, 1]], 300 + i)
    assert len(list(store.undo_dir.glob("*.npz"))) == 2
    assert store.undo() and store.undo() and store.undo() is None
    assert set(store.counts()) == {300, 301}


def test_two_threads_adding_strokes(store):
    errors = []

    def draw(label, row0):
        try:
            for i in range(15):
                y = row0 + (i % 7) * 2
                store.add_stroke([[i % 4, y, 0], [i % 4, y, 39]], label, width=1)
                store.read((slice(0, 1),))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(1, 1)), threading.Thread(target=draw, args=(2, 17))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lab = store.read()
    assert store.counts() == {1: int((lab == 1).sum()), 2: int((lab == 2).sum())}
    assert len(store.history()) == 30 and len({r["id"] for r in store.history()}) == 30
    fresh = reopen(store).read()
    np.testing.assert_array_equal(fresh, lab)


def test_listener_and_locked_reader(store):
    seen = []
    store.on_change(seen.append)
    store.add_stroke([[0, 1, 1]], 1)
    assert seen and seen[0].op == "stroke" and seen[0].changed == 9
    vol = Volume(store.as_array(), voxel_size=(40, 4, 4))
    assert vol[0, 1, 1] == 1 and vol.shape == SHAPE and store.version >= 1
    v2 = store.as_volume()
    assert v2.voxel_size == (40.0, 4.0, 4.0) and v2.read().sum() == 9 and v2.to_dask().sum().compute() == 9


def test_open_missing_raises(tmp_path):
    with pytest.raises(WorkbenchError):
        LabelStore(tmp_path / "nope", tmp_path / "j.jsonl")


def test_failed_import_leaves_labels_untouched(store):
    store.add_stroke([[0, 1, 1]], 1)
    before = store.read()

    class Flaky:
        shape, dtype, reads = SHAPE, np.dtype("uint8"), 0

        def __getitem__(self, key):
            self.reads += 1
            if self.reads > 1:  # passes validation, fails while writing
                raise OSError("disk went away")
            return np.ones(SHAPE, np.uint8)[key]

    with pytest.raises(OSError):
        store.import_labels(Volume(Flaky(), source="flaky"))
    np.testing.assert_array_equal(store.read(), before)
    np.testing.assert_array_equal(reopen(store).read(), before)
    assert not list(store.group_path.glob("0.*")) and store.history()[-1]["op"] == "stroke"


def test_label_image_stays_valid_ngff_after_whole_volume_edits(store):
    import zarr
    from ome_zarr_models.v04.image_label import ImageLabel

    store.set_colors({1: "#ff0000", 2: "#00ff00"})
    store.fill_box((0, 0, 0), (1, 4, 4), 1)
    store.clear()
    store.undo()
    model = ImageLabel.from_zarr(zarr.open_group(str(store.group_path), mode="r"))
    assert [c.label_value for c in model.attributes.image_label.colors] == [1, 2]
    assert model.members["0"].chunks == (1, 32, 40)
