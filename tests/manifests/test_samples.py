"""``manifests.samples.ViewsLookup``: a views folder that is not one is named as such, not as a missing views file."""

from __future__ import annotations

import pytest

from manifests.samples import SampleError, ViewsLookup


@pytest.mark.parametrize("given, phrase", [
    ("a views file", "is a file, not a views folder"),  # `--views OUT/views/synthetic/apartment_0000.parquet`
    ("nothing", "no such views folder"),
    ("an empty folder", "synthetic/apartment_0000.parquet: missing: the views file of scene synthetic/apartment_0000"),
])  # fmt: skip
def test_what_is_wrong_is_said_of_the_folder_or_of_the_file(tmp_path, given, phrase):
    views = tmp_path / "views"
    if given == "a views file":
        views.write_bytes(b"PAR1")
    elif given == "an empty folder":
        views.mkdir()
    with pytest.raises(SampleError) as info:
        ViewsLookup(views).get("synthetic", "apartment_0000", None)
    message = str(info.value)
    assert phrase in message and "scene synthetic/apartment_0000" in message
    assert ("missing: the views file" in message) == (given == "an empty folder")
