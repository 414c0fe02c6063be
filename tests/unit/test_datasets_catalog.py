"""The catalog entries are complete and well-formed; the registry's look-up and label transforms."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import numpy as np
import pytest

from workbench.datasets import (
    DatasetInfo,
    Layout,
    RemoteFile,
    Source,
    get_dataset,
    list_datasets,
    register_dataset,
    unregister_dataset,
    value_map,
)
from workbench.errors import WorkbenchError

ENTRIES = list_datasets()
REQUIRED = {
    "isbi2012",
    "snemi3d",
    "cremi-a",
    "cremi-b",
    "cremi-c",
    "lucchi",
    "mitoem-rat",
    "mitoem-human",
    "urocell",
}


def _well_formed_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc) and " " not in url


def test_required_datasets_registered():
    assert REQUIRED <= {d.name for d in ENTRIES}


@pytest.mark.parametrize("info", ENTRIES, ids=lambda d: d.name)
def test_entry_is_complete(info: DatasetInfo):
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", info.name)
    for text in (info.title, info.modality, info.organism, info.tissue, info.license):
        assert text.strip()
    assert len(info.description) > 150 and info.description.count(".") >= 2  # a few sentences
    assert len(info.citation) > 30 and re.search(r"\(\d{4}\)", info.citation)  # authors (year) ...
    assert re.fullmatch(r"10\.\d{4,9}/\S+", info.doi)
    assert _well_formed_url(info.homepage)
    assert len(info.voxel_size) == 3 and all(v > 0 for v in info.voxel_size)
    assert len(info.shape) == 3 and all(isinstance(s, int) and s > 0 for s in info.shape)
    assert np.dtype(info.raw_dtype).kind in "uif"
    assert info.layouts and info.tasks


@pytest.mark.parametrize("info", ENTRIES, ids=lambda d: d.name)
def test_entry_layouts_are_well_formed(info: DatasetInfo):
    assert any(layout.downloadable for layout in info.layouts)
    for layout in info.layouts:
        assert layout.files and layout.note
        names = [f.name for f in layout.files]
        assert len(set(names)) == len(names)
        for f in layout.files:
            assert "/" not in f.name and f.name.strip()
            if f.url is not None:
                assert _well_formed_url(f.url), f.url
            if f.sha256 is not None:
                assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.sha256
        archive = any(f.unpack for f in layout.files)
        sources = [layout.raw] + [label.source for label in layout.labels]
        for src in sources:
            assert src.paths
            if not archive:  # plain files: each path is one of the layout's files
                assert all(p in names for p in src.paths), (src.paths, names)
        assert layout.labels, "every catalog entry has ground truth"
        for label in layout.labels:
            assert label.kind in ("instances", "semantic", "original") and label.note
            if label.kind == "semantic":
                assert label.classes and 0 not in label.classes  # 0 stays 'unlabelled'
        # every layout gives the same label images, so code can rely on the names
        assert [label.name for label in layout.labels] == info.label_names


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(WorkbenchError) as err:
        get_dataset("isbi")
    msg = str(err.value)
    assert "did you mean 'isbi2012'" in msg and "snemi3d" in msg and "\n" not in msg
    with pytest.raises(WorkbenchError, match="cremi-a"):
        get_dataset("cremi")
    assert get_dataset("ISBI2012").name == "isbi2012"


def _entry(name: str) -> DatasetInfo:
    layout = Layout(
        "tiff", files=(RemoteFile("a.tif", url="https://example.org/a.tif"),), raw=Source(("a.tif",))
    )
    return DatasetInfo(
        name=name, title="t", description="d", modality="m", organism="o", tissue="t",
        voxel_size=(1.0, 1.0, 1.0), shape=(1, 1, 1), license="l", citation="c", doi="10.1/x",
        homepage="https://example.org", layouts=(layout,),
    )  # fmt: skip


def test_duplicate_registration_is_an_error():
    try:
        register_dataset("unit-dup")(lambda: _entry("unit-dup"))
        with pytest.raises(ValueError, match="twice"):
            register_dataset("unit-dup")(lambda: _entry("unit-dup"))
        with pytest.raises(ValueError, match="calls itself"):
            register_dataset("unit-other")(lambda: _entry("unit-dup"))
    finally:
        unregister_dataset("unit-dup")
        unregister_dataset("unit-other")


def test_value_map_maps_and_rejects_unexpected_values():
    f = value_map({0: 1, 255: 2}, what="labels")
    out = f(np.array([[0, 255], [255, 0]], dtype=np.uint8))
    assert out.dtype == np.uint8 and out.tolist() == [[1, 2], [2, 1]]
    with pytest.raises(WorkbenchError, match=r"unexpected values \[7\]"):
        f(np.array([0, 7, 255], dtype=np.uint8))


def test_isbi_semantic_labels_are_membrane_1_interior_2():
    layout = get_dataset("isbi2012").layouts[0]
    semantic = {label.name: label for label in layout.labels}["semantic"]
    assert semantic.classes == {1: "membrane", 2: "cell interior"}
    assert semantic.transform(np.array([0, 255], dtype=np.uint8)).tolist() == [1, 2]


def test_catalog_is_plain_data_validated_into_entries():
    import ast
    from pathlib import Path

    from workbench.datasets import catalog
    from workbench.datasets.registry import LabelKind, dataset_from_dict

    tree = ast.parse(Path(catalog.__file__).read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(getattr(n, "module", "") == "__future__" for n in imports), "the catalog imports nothing back"
    assert {e["name"] for e in catalog.ENTRIES} == REQUIRED
    lucchi = get_dataset("lucchi").layouts[0].labels[0]
    assert lucchi.kind is LabelKind.SEMANTIC and lucchi.kind == "semantic"
    with pytest.raises(WorkbenchError, match=r"unexpected values \[7\]"):
        lucchi.transform(np.array([0, 7], dtype=np.uint8))
    broken = dict(catalog.ENTRIES[0], shape=(1, 2))
    with pytest.raises(ValueError, match="catalog entry 'isbi2012'"):
        dataset_from_dict(broken)
    with pytest.raises(ValueError, match="label kind"):
        dataset_from_dict(dict(catalog.ENTRIES[0], layouts=[dict(catalog.ENTRIES[0]["layouts"][0], labels=[
            dict(catalog.ENTRIES[0]["layouts"][0]["labels"][0], kind="instance-ids")])]))


def test_unknown_dataset_message_is_the_shared_one():
    with pytest.raises(WorkbenchError) as err:
        get_dataset("Lucchy")
    assert str(err.value).startswith("unknown dataset 'lucchy' (did you mean 'lucchi'?); valid: isbi2012, ")
