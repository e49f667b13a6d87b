"""Generation's block bookkeeping without Ray: part names parsed exactly, block count capped."""

import numpy as np
import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.config import GenerateConfig
from synthrec.distributed.generate import MAX_BLOCKS, _existing_blocks, part_name, run_generate
from synthrec.errors import ConfigError


def test_generate_resume_reads_part_names_exactly(tmp_path):
    """A file named part-100000 is not block 10000 (the old parser read five characters)."""
    out = str(tmp_path / "out")
    cfg = GenerateConfig(model="m", out=out, rows=10_001_000, rows_per_file=1_000)
    run_id = "run-gen-0000000000000000"
    one_row = storage.parquet_bytes(pa.table({"a": [1]}))
    storage.write_bytes(storage.join(out, run_id, "part-100000.parquet"), one_row)
    storage.write_bytes(storage.join(out, part_name(run_id, 7)), one_row)
    found = _existing_blocks(cfg, run_id, np.ones(10_001, dtype=np.int64))
    assert sorted(found) == [7]
    assert found[7].path == f"{run_id}/part-00007.parquet"


def test_generate_caps_the_block_count_before_any_work(tmp_path):
    cfg = GenerateConfig(
        model=str(tmp_path / "no-model"), out=str(tmp_path / "o"), rows=10**9, rows_per_file=1_000
    )
    with pytest.raises(ConfigError, match=f"at most {MAX_BLOCKS:,}.*at least 10,000"):
        run_generate(cfg)
