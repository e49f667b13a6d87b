"""A generic event log: a CSV or Parquet file (or a published dataset), local or s3://, plus
an optional schema YAML that gives each column its role:

    columns:
      customer:  {role: user_id}
      sku:       {role: item_id}
      price:     {role: numeric, kind: float}   # kind and nullable are optional checks
      bought:    {role: label}
      note:      {role: ignore}                 # dropped where the log is read
    behaviour:                                  # optional: event types -> ordered 0/1 labels
      column: behavior_type                     # (not listed under columns)
      labels: {click: [pv, fav], cart: [cart], purchase: [buy]}   # weakest first
      cumulative: true                          # a purchase is also a cart and a click
      no_label: [impression]                    # values that set no label; others fail

With a schema file, the table must have exactly its columns. Without one, a published
dataset's own schema (from its manifest) is used, else roles are inferred. Either way the
schema is applied (ignored columns dropped, behaviour mapped to labels) and the table is
validated, so bad input fails here with a message that names the column and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from synthrec import storage as st
from synthrec.config import StorageConfig
from synthrec.errors import SchemaError
from synthrec.schema import (
    ID_ROLES,
    Behaviour,
    ColumnSpec,
    Kind,
    Role,
    Schema,
    apply_schema,
    infer_schema,
    kind_of,
    validate_table,
)

SPEC_KEYS = ("role", "kind", "nullable")
FILE_KEYS = ("columns", "behaviour", "behavior", "ignore")


@dataclass(frozen=True)
class SchemaFile:
    """A schema YAML as written by a user: column specs (kinds optional), what to drop, and
    an optional behaviour column. `resolve` turns it into a `Schema` against a table."""

    columns: dict[str, dict[str, Any]]
    behaviour: Behaviour | None = None
    ignore: tuple[str, ...] = ()

    def frame(self) -> Schema:
        """Roles without kinds yet: enough to apply the file (drop, map behaviour)."""
        return Schema([], self.behaviour, self.ignore)


def load_event_log(
    data_uri: str, schema_uri: str | None = None, storage: StorageConfig | None = None
) -> tuple[pa.Table, Schema]:
    """Read and validate an event log; returns the table and its schema."""
    table = read_events(data_uri, storage)
    if table.num_rows == 0:
        raise SchemaError(f"{data_uri} is empty (0 rows); provide at least one row")
    if schema_uri is not None:
        spec = read_schema_file(schema_uri, storage)
        table = apply_schema(table, spec.frame(), data_uri)
        _reject_all_null(table, data_uri)  # a CSV column of only nulls has no type to check
        schema = schema_from_spec(table, spec, where=data_uri)
    else:
        schema = manifest_schema(data_uri, storage)
        if schema is not None:
            table = apply_schema(table, schema, data_uri)
        _reject_all_null(table, data_uri)
        schema = schema or infer_schema(table)
    check_table(table, schema, data_uri)
    return table, schema


def schema_table(
    table: pa.Table, schema_uri: str, storage: StorageConfig | None = None, where: str = ""
) -> tuple[pa.Table, Schema]:
    """An in-memory table read through a schema file (as `load_event_log` reads a URI)."""
    spec = read_schema_file(schema_uri, storage)
    table = apply_schema(table, spec.frame(), where or "table")
    schema = schema_from_spec(table, spec, where=where or "table")
    check_table(table, schema, where or "table")
    return table, schema


def with_schema(
    table: pa.Table, schema: Schema | str | None, storage: StorageConfig | None = None
) -> tuple[pa.Table, Schema | None]:
    """`table` read through `schema`: a Schema (applied), a schema file's URI (read, applied,
    checked) or None (unchanged, roles left to inference). The Python API's entry to the
    schema the CLI takes as --schema-uri."""
    if schema is None:
        return table, None
    if isinstance(schema, Schema):
        return apply_schema(table, schema), schema
    return schema_table(table, str(schema), storage)


def prepare_table(
    table: pa.Table,
    schema_uri: str | None,
    storage: StorageConfig | None = None,
    where: str = "table",
) -> tuple[pa.Table, Schema]:
    """`schema_table` with a schema file, else the inferred schema, checked the same way."""
    if table.num_rows == 0:
        raise SchemaError(f"{where} is empty (0 rows); provide at least one row")
    if schema_uri is not None:
        return schema_table(table, schema_uri, storage, where)
    _reject_all_null(table, where)
    schema = infer_schema(table)
    check_table(table, schema, where)
    return table, schema


def read_events(
    uri: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """`storage.read_table`: a published dataset through its checked manifest, a file, or a
    plain folder; unfinished writes are refused there."""
    return st.read_table(uri, storage, columns)


def check_table(table: pa.Table, schema: Schema, where: str) -> None:
    """`validate_table`, then the kinds and nullability the schema declares."""
    validate_table(table, schema, where)
    for spec in schema.columns:
        col = table.column(spec.name)
        if kind_of(col.type) != spec.kind:
            raise SchemaError(
                f"{where} column '{spec.name}': the schema says kind {spec.kind.value} "
                f"but the data holds {col.type}; fix the data or the schema's kind"
            )
        if spec.role in ID_ROLES and spec.kind == Kind.STRING:
            empty = pc.sum(pc.equal(pc.utf8_trim_whitespace(col), "")).as_py() or 0
            if empty:  # CSV readers keep a missing id as ""
                raise SchemaError(
                    f"{where} column '{spec.name}': {empty} empty ids; "
                    f"every row needs a {spec.role.value}"
                )
        if not spec.nullable and col.null_count:
            raise SchemaError(
                f"{where} column '{spec.name}': {col.null_count} nulls but the schema says "
                "nullable: false; fill them or set nullable: true"
            )


def read_schema_yaml(uri: str, storage: StorageConfig | None = None) -> Any:
    """A schema file's parsed YAML (its sections are checked by their readers)."""
    if not st.exists(uri, storage):
        raise SchemaError(f"schema file {uri} does not exist; pass an existing YAML file")
    try:
        return yaml.safe_load(st.read_bytes(uri, storage).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SchemaError(
            f"schema file {uri} is not valid YAML: {str(err).splitlines()[0]}"
        ) from None


def read_schema_file(uri: str, storage: StorageConfig | None = None) -> SchemaFile:
    """A schema YAML, checked for shape: `columns` {name: {role, kind?, nullable?}}, optional
    `behaviour` {column, labels, cumulative?} and `ignore` [names] (or role: ignore)."""
    data = read_schema_yaml(uri, storage)
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(FILE_KEYS))
        if unknown:
            raise SchemaError(
                f"schema file {uri}: unknown top-level key(s) {', '.join(map(str, unknown))}; "
                f"allowed: columns, behaviour, ignore"
            )
        if "behaviour" in data and "behavior" in data:
            raise SchemaError(f"schema file {uri}: give 'behaviour' or 'behavior', not both")
    specs = read_schema_spec(uri, storage, data)
    ignore = [n for n, s in specs.items() if s["role"] == Role.IGNORE]
    listed = data.get("ignore") or []
    if not isinstance(listed, list):
        raise SchemaError(f"schema file {uri}: 'ignore' must be a list of column names")
    ignore += [str(n) for n in listed if str(n) not in ignore]
    raw = data.get("behaviour", data.get("behavior"))
    behaviour = Behaviour.from_dict(raw, f"schema file {uri}") if raw is not None else None
    columns = {n: s for n, s in specs.items() if s["role"] != Role.IGNORE}
    if behaviour is not None:
        if behaviour.column in specs:
            raise SchemaError(
                f"schema file {uri}: column '{behaviour.column}' is the behaviour column; "
                "remove it from columns (its labels replace it)"
            )
        for label in behaviour.names:  # listed labels (a written schema) must stay labels
            role = columns.get(label, {"role": Role.LABEL})["role"]
            if role != Role.LABEL:
                raise SchemaError(
                    f"schema file {uri}: column '{label}' is a behaviour label, so its role "
                    f"must be label, not {role.value}"
                )
        columns = _with_labels(columns, behaviour)
    return SchemaFile(columns, behaviour, tuple(ignore))


def _with_labels(columns: dict[str, dict], b: Behaviour) -> dict[str, dict]:
    """`columns` with each behaviour label (role label, kind int) where it is not listed."""
    out = dict(columns)
    for label in b.names:
        out.setdefault(label, {"role": Role.LABEL, "kind": Kind.INT, "nullable": False})
    return out


def read_schema_spec(
    uri: str, storage: StorageConfig | None = None, data: Any = None
) -> dict[str, dict[str, Any]]:
    """The `columns` mapping of a schema YAML, checked for shape:
    {name: {role, kind?, nullable?}}."""
    data = read_schema_yaml(uri, storage) if data is None else data
    columns = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(columns, dict) or not columns:
        raise SchemaError(
            f"schema file {uri}: expected a top-level 'columns' mapping of name -> {{role: ...}}"
        )
    specs = {}
    for name, spec in columns.items():
        spec = {"role": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or "role" not in spec:
            raise SchemaError(f"schema file {uri}: column '{name}' needs a mapping with a 'role'")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise SchemaError(
                f"schema file {uri}: column '{name}' has unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(SPEC_KEYS)}"
            )
        specs[str(name)] = {"role": _enum(Role, spec["role"], name, "role", uri)}
        if "kind" in spec:
            specs[str(name)]["kind"] = _enum(Kind, spec["kind"], name, "kind", uri)
        if "nullable" in spec:
            if not isinstance(spec["nullable"], bool):
                raise SchemaError(
                    f"schema file {uri}: column '{name}': nullable must be true or false"
                )
            specs[str(name)]["nullable"] = spec["nullable"]
    return specs


def _enum(cls, value: Any, name: str, key: str, uri: str):
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(v.value for v in cls)
        raise SchemaError(
            f"schema file {uri}: column '{name}': {key} {value!r} is unknown; allowed: {allowed}"
        ) from None


def schema_from_spec(table: pa.Table, specs: SchemaFile | dict[str, dict], where: str) -> Schema:
    """A schema with exactly the spec's columns; kinds the spec leaves out come from the data."""
    file = specs if isinstance(specs, SchemaFile) else SchemaFile(specs)
    columns = []
    for name, spec in file.columns.items():
        present = name in table.column_names
        kind = spec.get("kind") or (kind_of(table.column(name).type) if present else Kind.STRING)
        if kind is None:
            raise SchemaError(
                f"{where} column '{name}': type {table.column(name).type} is not supported; "
                "use string, integer, float, bool or timestamp"
            )
        nullable = spec.get("nullable", bool(present and table.column(name).null_count))
        columns.append(ColumnSpec(name, spec["role"], kind, nullable))
    return Schema(columns, file.behaviour, file.ignore)


def schema_yaml(schema: Schema, source: str) -> str:
    """`schema` as a schema file (the YAML `--schema-uri` reads), headed by how to edit it."""
    header = (
        f"# Column roles of {source}. Edit them, then pass this file as --schema-uri.\n"
        f"# role: {', '.join(r.value for r in Role)} (ignore drops the column)\n"
        "# behaviour: {column: NAME, labels: {click: [pv], cart: [cart], purchase: [buy]}}\n"
        "#   maps a column of event types to ordered 0/1 label columns (weakest first)\n"
        f"# kind: {', '.join(k.value for k in Kind)} (checked against the data)\n"
        "# nullable: true lets the column hold nulls\n"
    )
    return header + yaml.safe_dump(schema.to_dict(), sort_keys=False, default_flow_style=None)


def write_schema(
    schema: Schema, uri: str, source: str, storage: StorageConfig | None = None
) -> None:
    """Write `schema_yaml` to `uri` (local or s3://), replacing any file there."""
    st.write_bytes(uri, schema_yaml(schema, source).encode("utf-8"), storage)


def manifest_schema(uri: str, storage: StorageConfig | None = None) -> Schema | None:
    """The schema a published dataset carries in its manifest, if any."""
    if not st.exists(st.join(uri, st.MANIFEST), storage):  # e.g. a single file
        return None
    manifest = st.read_manifest(uri, storage)
    if manifest is None or "schema" not in manifest.metadata:
        return None
    return Schema.from_dict(manifest.metadata["schema"])


def _reject_all_null(table: pa.Table, where: str) -> None:
    for name in table.column_names:
        col = table.column(name)
        if col.null_count == len(col):
            raise SchemaError(
                f"{where} column '{name}': all {len(col)} values are null; "
                "drop the column or fill it"
            )


@dataclass
class ColumnSummary:
    name: str
    type: str
    role: str
    nulls: int
    distinct: int
    low: str  # min and max (lexicographic for strings); "" when all null
    high: str


@dataclass
class Description:
    uri: str
    num_rows: int
    columns: list[ColumnSummary]
    manifest: st.Manifest | None  # set for a published dataset: the only source of truth


def describe(
    uri: str, storage: StorageConfig | None = None, schema_uri: str | None = None
) -> Description:
    """Rows, and per column: type, role, nulls, distinct values, range. A published dataset is
    read through its manifest one column at a time (bounded memory); its schema, if it has
    one, gives the roles. With `schema_uri` the log is read as every other command reads it:
    the schema file's roles, ignored columns dropped, the behaviour column as its labels."""
    manifest = st.read_manifest(uri, storage) if _is_dir(uri, storage) else None
    if schema_uri is not None:
        table, schema = load_event_log(uri, schema_uri, storage)
        cols = [_summarize(table.column(n), n, schema[n].role.value) for n in table.column_names]
        return Description(uri, table.num_rows, cols, manifest)
    if manifest is None:
        table = read_events(uri, storage)
        schema = infer_schema(table) if table.num_rows and not _has_all_null(table) else None
        cols = [
            _summarize(table.column(n), n, schema[n].role.value if schema else "?")
            for n in table.column_names
        ]
        return Description(uri, table.num_rows, cols, None)
    schema = manifest_schema(uri, storage)
    plan = st.plan_read(uri, storage)  # one version of the manifest for every column read
    manifest = plan.manifest or manifest
    names = pq.read_schema(plan.paths[0], filesystem=st.filesystem(uri, storage)[0]).names
    if (storage or StorageConfig()).verify_checksums:
        st.verify_dataset(uri, manifest, storage)  # once, streaming; then one column at a time
    checked = (storage or StorageConfig()).model_copy(update={"verify_checksums": False})
    cols = []
    for name in names:
        col = st.read_plan(plan, checked, columns=[name]).column(name)
        spec = (
            schema[name]
            if schema and name in schema.names
            else infer_schema(pa.table({name: col})).columns[0]
        )
        cols.append(_summarize(col, name, spec.role.value))
    return Description(uri, manifest.num_rows or 0, cols, manifest)


def _is_dir(uri: str, storage: StorageConfig | None) -> bool:
    fs, path = st.filesystem(uri, storage)
    info = st.with_retries(lambda: fs.get_file_info(path), uri, storage, "look up")
    return info.type == st.pafs.FileType.Directory


def _has_all_null(table: pa.Table) -> bool:
    return any(c.null_count == len(c) for c in table.columns)


def _summarize(col: pa.ChunkedArray, name: str, role: str) -> ColumnSummary:
    distinct = pc.count_distinct(col, mode="only_valid").as_py() if col.null_count < len(col) else 0
    low = high = ""
    if distinct and kind_of(col.type) is not None:
        bounds = pc.min_max(col)
        low, high = str(bounds["min"].as_py()), str(bounds["max"].as_py())
    return ColumnSummary(name, str(col.type), role, col.null_count, distinct, low, high)
