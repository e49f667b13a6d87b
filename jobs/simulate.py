"""Ray job: simulate a search log and publish it atomically (`ray job submit -- python jobs/simulate.py
--config sim.yaml` or `--config '{"rows": 1000000, "out": "s3://bucket/sim"}'`)."""
import argparse
import json
import sys

from synthrec.config import SimulateConfig, load_config, validate_config
from synthrec.data.simulator import run_simulate
from synthrec.errors import SynthrecError

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--config", default="", help="a YAML file or a JSON object with SimulateConfig keys")
text = parser.parse_args().config
try:
    is_json = text.lstrip().startswith("{")
    cfg = validate_config(SimulateConfig, json.loads(text), "--config") if is_json else load_config(SimulateConfig, text or None)
    print(f"published {run_simulate(cfg).num_rows} rows to {cfg.out}")
except (SynthrecError, json.JSONDecodeError) as err:
    sys.exit(f"error: {err}")
