"""Ray job: the end-to-end pipeline (GAN -> synthetic data -> report -> recommender).

ray job submit --working-dir . -- python jobs/pipeline.py --config pipeline.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import PipelineConfig
from synthrec.pipeline import run_pipeline

if __name__ == "__main__":
    job_main(
        PipelineConfig,
        lambda cfg, progress: run_pipeline(cfg, progress=lambda kind, **e: progress({kind: e})),
    )
