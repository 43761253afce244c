"""The name rule of every dataset, scene id and label that names a file (``manifests.layout.name_problem``)."""

from __future__ import annotations

import pytest

from manifests.layout import MAX_NAME_BYTES, NAME_MAX_BYTES, SAFE_NAME_RULE, is_safe_name, name_problem


@pytest.mark.parametrize("name", ["apartment_0000", "00800-TEEsavR23oF", "a" * MAX_NAME_BYTES, "x.y-z_1", "Room.2"])
def test_names_that_fit_the_rule_are_taken(name):
    assert name_problem(name) is None and is_safe_name(name)


@pytest.mark.parametrize("name", ["-dash", ".hidden", "_state"])
def test_a_bad_first_character_is_named_with_the_rule_that_allows_it_later(name):
    # '-' is allowed, but not first: a message listing the characters must say so, or it contradicts itself
    problem = name_problem(name, "scene id")
    assert problem is not None and not is_safe_name(name)
    assert f"starts with {name[0]!r}" in problem and SAFE_NAME_RULE in problem
    assert "starting with a letter or a digit" in problem


@pytest.mark.parametrize("name", ["a/b", "..", "a b", "a\n", "", "ü"])
def test_unsafe_characters_are_refused_with_the_rule(name):
    problem = name_problem(name, "label")
    assert problem is not None and problem.startswith("label ") and SAFE_NAME_RULE in problem


@pytest.mark.parametrize("size", [MAX_NAME_BYTES + 1, 240, NAME_MAX_BYTES, 400])
def test_a_name_too_long_for_its_files_is_said_so(size):
    # ENAMETOOLONG otherwise: the views file's temporary (.tmp-<host>-<pid>-<id>.parquet.XXXXXXXX) goes past 255
    name = "b" * size
    problem = name_problem(name, "scene id")
    assert problem is not None and not is_safe_name(name)
    assert problem.startswith(f"scene id {'b' * 40 + '...'!r} is too long for a file name ({size} bytes;")
    assert f"allows {NAME_MAX_BYTES}" in problem and f"at most {MAX_NAME_BYTES}" in problem


def test_the_longest_name_leaves_room_for_every_file_named_after_it():
    longest_file = "x" * MAX_NAME_BYTES + "_1_camera_params.json"  # a CroCo export's longest, after a label
    temporary = f".tmp-{'h' * 64}-{4194304}-{longest_file}.abcdefgh"  # manifests.io's, at the longest host and pid
    assert len(temporary.encode()) <= NAME_MAX_BYTES


def test_a_name_is_not_a_string():
    assert name_problem(3, "dataset") == "dataset 3 is not a string"
