"""Ray job: fidelity, utility and privacy report of a synthetic table (report.html and
metrics.json under `out_uri`).

python -m synthrec.jobs.evaluate --config eval.yaml
"""

from synthrec.cli.jobs import job_main
from synthrec.config import EvaluateConfig

CONFIG = EvaluateConfig


def run(cfg: EvaluateConfig, progress) -> dict:
    from synthrec.evaluate import run_evaluate

    metrics = run_evaluate(
        cfg, progress=lambda done, stage="": progress({"stage": stage, "done": done})
    )
    out = cfg.out_uri.rstrip("/")
    return {
        "report": f"{out}/report.html",
        "metrics": f"{out}/metrics.json",
        "passed": metrics["verdict"]["passed"],
    }


def main() -> None:
    job_main(CONFIG, run)


if __name__ == "__main__":
    main()
