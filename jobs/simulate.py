"""Ray job: simulate a search log and publish it atomically.

ray job submit --working-dir . -- python jobs/simulate.py --config sim.yaml
(or an inline JSON object)
"""

from synthrec.cli.jobs import job_main
from synthrec.config import SimulateConfig
from synthrec.data.simulator import run_simulate

if __name__ == "__main__":
    job_main(
        SimulateConfig,
        lambda cfg, progress: (
            f"published {run_simulate(cfg, progress=progress).num_rows} rows to {cfg.out_uri}"
        ),
    )
