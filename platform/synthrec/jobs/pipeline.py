"""Ray job: the end-to-end pipeline (GAN -> synthetic data -> report -> recommender).

python -m synthrec.jobs.pipeline --config pipeline.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import PipelineConfig

CONFIG = PipelineConfig


def run(cfg: PipelineConfig, progress) -> dict:
    from synthrec.pipeline import run_pipeline

    return run_pipeline(cfg, progress=lambda kind, **event: progress({kind: event}))


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
