"""Ray job: generate a synthetic dataset with Ray Data and publish it.

ray job submit --working-dir . -- python jobs/generate.py --config cfg.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import GenerateConfig
from synthrec.distributed.generate import run_generate

if __name__ == "__main__":
    job_main(GenerateConfig, run_generate)
