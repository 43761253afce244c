"""Every "one interface, many kinds" registry behaves alike: names, one-line descriptions, errors."""

from __future__ import annotations

import pytest

import covisibility
import manifests.datasets
import renderers.backends
import renderers.sources

# (kind as the errors name it, the module's list/get/register functions, the names registered today)
REGISTRIES = {
    "covisibility measure": (covisibility.available_measures, covisibility.get_measure,
                             covisibility.register_measure, ["croco", "reprojection"]),
    "pair search": (covisibility.available_searches, covisibility.get_search,
                    covisibility.register_search, ["exhaustive", "index"]),
    "render backend": (renderers.backends.available_backends, renderers.backends.get_backend,
                       renderers.backends.register_backend, ["habitat", "raycast"]),
    "scene source": (renderers.sources.available_sources, renderers.sources.get_source,
                     renderers.sources.register_source, ["gltf", "ply", "synthetic"]),
    "dataset": (manifests.datasets.available_datasets, manifests.datasets.get_dataset,
                manifests.datasets.register_dataset, ["gibson", "hm3d", "mp3d", "replica", "scannet", "synthetic"]),
}  # fmt: skip


@pytest.mark.parametrize("kind", REGISTRIES)
def test_a_registry_lists_gets_and_refuses(kind):
    available, get, register, names = REGISTRIES[kind]
    assert available() == names
    for name in names:
        entry = get(name)
        assert entry.name == name
        description = getattr(entry, "description", "")
        assert description and "\n" not in description, f"{kind} {name}: no one-line description"
    with pytest.raises(ValueError, match=f"unknown {kind} 'nope'; known: {', '.join(names)}"):
        get("nope")
    with pytest.raises(ValueError, match=f"{kind} '{names[0]}' is registered twice"):
        register(type("Again", (), {"name": names[0], "description": "a second one"}))
    assert available() == names


def test_help_texts_list_every_entry_with_its_description():
    summary = covisibility.describe_measures()
    assert summary.startswith("croco (CroCo's criterion") and "reprojection (depth" in summary
    assert covisibility.describe_searches().startswith("exhaustive (") and "index (" in covisibility.describe_searches()
