"""Ray job: simulate a search log and publish it atomically. --config: a YAML file or a JSON object."""
import argparse
import json
import sys

from synthrec.config import SimulateConfig, load_config, validate_config
from synthrec.data.simulator import run_simulate
from synthrec.errors import SynthrecError

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--config", default="", help='e.g. sim.yaml or \'{"rows": 1000000, "out": "s3://b/sim"}\'')
text = parser.parse_args().config
try:
    if text.lstrip().startswith("{"):
        cfg = validate_config(SimulateConfig, json.loads(text), "--config")
    else:
        cfg = load_config(SimulateConfig, text or None)
    print(f"published {run_simulate(cfg).num_rows} rows to {cfg.out}")
except (SynthrecError, json.JSONDecodeError) as err:
    sys.exit(f"error: {err}")
