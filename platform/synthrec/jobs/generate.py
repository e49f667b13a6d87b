"""Ray job: generate a synthetic dataset with Ray Data and publish it.

python -m synthrec.jobs.generate --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import GenerateConfig

CONFIG = GenerateConfig


def run(cfg: GenerateConfig, progress):
    from synthrec.distributed.generate import run_generate

    return run_generate(cfg, progress=progress)


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
