"""Ray job: fidelity, utility and privacy report of a synthetic table.

The same as `python -m synthrec.jobs.evaluate` (which needs no checkout):
ray job submit --working-dir . -- python jobs/evaluate.py --config cfg.yaml
"""

from synthrec.jobs.evaluate import main

if __name__ == "__main__":
    main()
