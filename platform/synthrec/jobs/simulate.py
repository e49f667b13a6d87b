"""Ray job: simulate a search log and publish it atomically.

python -m synthrec.jobs.simulate --config sim.yaml   (or an inline JSON object)
"""

from synthrec.cli.jobs import job_main
from synthrec.config import SimulateConfig

CONFIG = SimulateConfig


def run(cfg: SimulateConfig, progress) -> str:
    from synthrec.data.simulator import run_simulate

    return f"published {run_simulate(cfg, progress=progress).num_rows} rows to {cfg.out_uri}"


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
