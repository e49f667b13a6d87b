"""`synthrec data ...` in-process through `main`, which turns user errors into exit 2."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.cli import main


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_cli_simulate_publishes_exact_rows(tmp_path, capsys):
    out_dir = tmp_path / "sim"
    code, out, _ = run(
        [
            "data",
            "simulate",
            "--rows",
            "12345",
            "--out-uri",
            str(out_dir),
            "--seed",
            "2",
            "--num-users",
            "300",
            "--num-items",
            "900",
        ],
        capsys,
    )
    assert code == 0
    assert "published 12,345 rows" in out
    manifest = storage.read_manifest(str(out_dir))
    assert manifest.num_rows == 12_345 and manifest.metadata["config"]["seed"] == 2
    assert storage.read_dataset(str(out_dir)).num_rows == 12_345


def test_cli_simulate_config_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(
        f"rows: 3000\nnum_users: 100\nnum_items: 400\nout_uri: {tmp_path / 'from_yaml'}\n"
    )
    code, _, _ = run(["data", "simulate", "--config", str(cfg), "--rows", "2000"], capsys)
    assert code == 0
    assert storage.read_manifest(str(tmp_path / "from_yaml")).num_rows == 2000  # the flag wins


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        (
            "rows: 100\ncolour: red\n",
            "unknown key 'colour' (allowed here: num_brands, num_categories",
        ),
        ("rows: many\n", "key 'rows'"),
        ("- a list\n", "top level must be a mapping"),
    ],
)
def test_cli_simulate_config_errors_exit_2_with_one_line(tmp_path, capsys, yaml_text, expected):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml_text)
    code, _, err = run(
        ["data", "simulate", "--config", str(cfg), "--out-uri", str(tmp_path / "x")], capsys
    )
    assert code == 2
    assert expected in one_error_line(err)
    assert not (tmp_path / "x").exists()


def test_cli_simulate_bad_flag_value_exit_2(tmp_path, capsys):
    code, _, err = run(
        ["data", "simulate", "--rows", "0", "--out-uri", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "--rows: " in one_error_line(err)  # the flag typed, not the key


def test_cli_unknown_option_exit_2_without_traceback(capsys):
    code, _, err = run(["data", "simulate", "--bogus"], capsys)
    assert code == 2 and "Traceback" not in err


def _events(tmp_path) -> str:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,price,click\nu1,i1,2.5,1\nu2,i2,3.0,0\n")
    return str(path)


def test_cli_validate_prints_schema_table(tmp_path, capsys):
    code, out, _ = run(["data", "validate", "--data-uri", _events(tmp_path)], capsys)
    assert code == 0
    assert "schema (inferred)" in out and "valid: 2 rows, 4 columns" in out
    assert "user_id" in out and "label" in out


@pytest.mark.parametrize(
    "content, schema, expected",
    [
        (None, None, "no file or dataset"),
        ("user_id,item_id,click\n", None, "empty"),
        ("user_id,item_id,click\n,i1,1\nu2,i2,0\n", None, "1 empty ids"),
        (
            "user_id,item_id,click\nu1,i1,1\nu2,i2,0\n",
            "columns: {user_id: {role: user_id}, item_id: {role: item_id}}",
            "unexpected column(s) click",
        ),
        (
            "user_id,item_id,click\nu1,i1,3\nu2,i2,0\n",
            "columns: {user_id: user_id, item_id: item_id, click: label}",
            "binary",
        ),
    ],
)
def test_cli_validate_bad_input_exit_2_with_one_line(tmp_path, capsys, content, schema, expected):
    data = tmp_path / "log.csv"
    if content is not None:
        data.write_text(content)
    argv = ["data", "validate", "--data-uri", str(data)]
    if schema:
        (tmp_path / "s.yaml").write_text(schema)
        argv += ["--schema-uri", str(tmp_path / "s.yaml")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert expected in one_error_line(err)


def test_cli_describe_file_and_published_dataset(tmp_path, capsys):
    code, out, _ = run(["data", "describe", _events(tmp_path)], capsys)
    assert code == 0 and "2 rows, 4 columns" in out and "published" not in out
    uri = str(tmp_path / "ds")
    storage.write_dataset(pa.table({"user_id": ["a", "b", "b"], "item_id": ["x", "x", "y"]}), uri)
    code, out, _ = run(["data", "describe", uri], capsys)
    assert code == 0 and "published dataset" in out and "3 rows, 2 columns" in out


def test_cli_describe_reads_the_log_through_a_schema_file(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("uid,sku,kind,ts,note\n7,100,pv,1700000000,a\n8,101,buy,1700000100,b\n")
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "columns:\n  uid: {role: user_id}\n  sku: {role: item_id}\n  ts: {role: datetime}\n"
        "  note: {role: ignore}\n"
        "behaviour: {column: kind, labels: {click: [pv], purchase: [buy]}}\n"
    )
    code, out, _ = run(["data", "describe", str(log), "--schema-uri", str(schema)], capsys)
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "user_id" in rows["uid"] and "item_id" in rows["sku"]  # not numeric: the schema's
    assert "note" not in rows and "kind" not in rows and "purchase" in rows


def test_cli_describe_refuses_unfinished_publish(tmp_path, capsys):
    run_dir = tmp_path / "ds" / "run-20250101T000000-deadbeef"
    run_dir.mkdir(parents=True)
    pq.write_table(
        pa.table({"a": [1]}), run_dir / "part-00000.parquet"
    )  # a crash before the manifest
    code, _, err = run(["data", "describe", str(tmp_path / "ds")], capsys)
    assert code == 2 and "unfinished" in one_error_line(err)


def test_cli_old_flag_and_yaml_names_work_with_one_warning_line(tmp_path, capsys):
    small = ["data", "simulate", "--rows", "1000", "--num-users", "50", "--num-items", "90"]
    code, _, err = run([*small, "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and storage.read_manifest(str(tmp_path / "a")).num_rows == 1000
    assert err.startswith("warning: --out is deprecated, use --out-uri")
    cfg = tmp_path / "old.yaml"
    cfg.write_text(f"out: {tmp_path / 'b'}\n")
    code, _, err = run([*small, "--config", str(cfg)], capsys)
    assert code == 0 and storage.read_manifest(str(tmp_path / "b")).num_rows == 1000
    assert err.startswith("warning: config key 'out' is deprecated, use 'out_uri'")
    assert err.count("warning:") == 1
    code, _, err = run([*small, "--out", "x", "--out-uri", "y"], capsys)
    assert code == 2 and "--out is the old name of --out-uri" in err
