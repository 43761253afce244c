"""manifests.io: the checksums a Parquet file carries in its footer (``write_parquet_atomic(checksums=True)``,
``check_parquet``), on tables written here: every value of every column is covered, however it is stored."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.io import (
    CHECKSUMS_KEY,
    OutputError,
    check_parquet,
    parquet_checksums,
    write_parquet_atomic,
)
from manifests.pairs import PAIRS_SCHEMA

ROWS, GROUP = 10, 4  # row groups of 4, 4 and 2 rows
ALTERED_ROW = 5  # in row group 1


def value(field: pa.Field, i: int):
    """Row ``i``'s value of ``field``, different on every row."""
    t = field.type
    if pa.types.is_struct(t):
        rng = np.random.default_rng([i, *field.name.encode()])
        return {"bytes": bytes(rng.integers(0, 256, 300 + i, np.uint8)), "path": f"{field.name}/{i}"}
    if pa.types.is_fixed_size_list(t):
        return (np.arange(t.list_size, dtype=np.float32) + i).tolist()
    if pa.types.is_string(t):
        return f"{field.name}-{i}"
    return i + 0.25 if pa.types.is_floating(t) else i


def pairs_table() -> pa.Table:
    return pa.table({f.name: pa.array([value(f, i) for i in range(ROWS)], f.type) for f in PAIRS_SCHEMA},
                    schema=PAIRS_SCHEMA)  # fmt: skip


def other_table() -> pa.Table:
    """Nulls, lists, a dictionary column: the kinds the walk over a column's values must also cover."""
    return pa.table({
        "name": pa.array([None if i % 3 == 1 else f"n{i}" for i in range(ROWS)]),
        "views": pa.array([None if i == 2 else list(range(i % 4)) for i in range(ROWS)], pa.list_(pa.int32())),
        "count": pa.array([None if i == 7 else i for i in range(ROWS)], pa.int32()),
        "label": pa.array([f"l{i % 2}" for i in range(ROWS)]).dictionary_encode(),
        "images": pa.array([[{"bytes": bytes([i, 1]), "path": None}] * (i % 3) for i in range(ROWS)],
                           pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
    })  # fmt: skip


def rewrite(path, table: pa.Table, **kw) -> None:
    """Write ``table`` over ``path`` as another tool would, keeping the footer's metadata (the checksums with it)."""
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path, **kw)


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "shard-00000.parquet"
    write_parquet_atomic(path, pairs_table(), metadata={"pairgen": "{}"}, row_group_size=GROUP, checksums=True)
    return path


def test_a_file_written_with_checksums_verifies(shard):
    assert check_parquet(shard) is True
    written = json.loads(pq.read_schema(shard).metadata[CHECKSUMS_KEY.encode()])
    assert written["rows"] == [4, 4, 2] and written["columns"] == PAIRS_SCHEMA.names
    assert json.loads(pq.read_schema(shard).metadata[b"pairgen"]) == {}  # the caller's metadata kept beside them


@pytest.mark.parametrize("column", PAIRS_SCHEMA.names)
def test_one_value_changed_in_any_column_is_found_and_named(shard, column):
    table = pq.read_table(shard)
    values = table.column(column).to_pylist()
    values[ALTERED_ROW] = values[0]
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type))
    rewrite(shard, table, row_group_size=GROUP)
    with pytest.raises(OutputError, match=f"{shard.name}: row group 1, column '{column}': its values differ"):
        check_parquet(shard)


@pytest.mark.parametrize("at", [0.0, 0.5, 0.999])
def test_a_byte_flipped_in_an_image_is_found(shard, at):
    image = pq.read_table(shard).column("image2")[ALTERED_ROW]["bytes"].as_py()
    data = bytearray(shard.read_bytes())
    start = data.find(image)
    data[start + int(at * len(image))] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(OutputError, match="row group 1, column 'image2'"):
        check_parquet(shard)


def test_the_same_values_stored_otherwise_still_verify(shard):
    """The checksums are of values: another compression, page size or chunking of the same rows verifies."""
    rewrite(shard, pq.read_table(shard), row_group_size=GROUP, compression="gzip", data_page_size=64)
    assert check_parquet(shard) is True
    table = pairs_table()
    chunked = pa.concat_tables([table.slice(0, 3), table.slice(3, 5), table.slice(8)])
    assert parquet_checksums(chunked, GROUP) == parquet_checksums(table, GROUP)


def test_other_kinds_of_columns_are_covered(tmp_path):
    path = tmp_path / "other.parquet"
    for column in other_table().column_names:
        write_parquet_atomic(path, other_table(), row_group_size=GROUP, checksums=True)
        assert check_parquet(path) is True
        table = pq.read_table(path)
        values = table.column(column).to_pylist()
        values[ALTERED_ROW], values[ALTERED_ROW + 1] = values[ALTERED_ROW + 1], values[ALTERED_ROW]  # 5 and 6 differ
        changed = table.set_column(table.schema.get_field_index(column), column,
                                   pa.array(values, table.schema.field(column).type))  # fmt: skip
        rewrite(path, changed, row_group_size=GROUP)
        with pytest.raises(OutputError, match=f"row group 1, column '{column}'"):
            check_parquet(path)


def test_rows_lost_are_found(shard):
    rewrite(shard, pq.read_table(shard).slice(0, 8), row_group_size=GROUP)
    with pytest.raises(OutputError, match=r": 8 rows, its checksums were written for 10 \(rows lost or added since\)"):
        check_parquet(shard)


def test_the_same_rows_in_other_row_groups_check_equal(shard):
    """Another writer's row groups (every 3 rows): the values are checked as they were cut when written."""
    table = pq.read_table(shard)
    rewrite(shard, table, row_group_size=3)
    assert pq.ParquetFile(shard).metadata.num_row_groups == 4 and check_parquet(shard) is True
    values = table.column("pair_id").to_pylist()
    values[ALTERED_ROW] = "altered"
    rewrite(shard, table.set_column(table.schema.get_field_index("pair_id"), "pair_id",
                                    pa.array(values, table.schema.field("pair_id").type)), row_group_size=3)  # fmt: skip
    with pytest.raises(OutputError, match=r": rows 4-7, column 'pair_id': its values differ"):
        check_parquet(shard)


def test_a_file_without_checksums_says_so(tmp_path, shard):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pairs_table(), plain)
    assert check_parquet(plain) is False
    again = tmp_path / "again.parquet"  # written from a table read with checksums: they are not carried over
    write_parquet_atomic(again, pq.read_table(shard), row_group_size=GROUP)
    assert CHECKSUMS_KEY.encode() not in pq.read_schema(again).metadata and check_parquet(again) is False


@pytest.mark.parametrize("damage", ["truncated", "checksums-damaged"])
def test_a_damaged_file_or_footer_is_one_error_naming_it(shard, damage):
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        phrase = "not a readable Parquet file"
    else:
        table = pq.read_table(shard)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, CHECKSUMS_KEY.encode(): b'{"rows": 3'}),
                       shard, row_group_size=GROUP)  # fmt: skip
        phrase = "its footer.s checksums .* cannot be read"
    with pytest.raises(OutputError, match=f"{shard.name}: {phrase}"):
        check_parquet(shard)
