"""Ray job entrypoints, one module per job: `python -m synthrec.jobs.NAME --config CFG`.

They run from an installed synthrec (no checkout needed); `synthrec submit NAME` sends this
command, and the scripts in the checkout's `jobs/` folder are thin wrappers around them.
Each module holds `CONFIG` (its config class), `run(cfg, progress)` and `main()`; it imports
only the config at module level, so the submitter can read `CONFIG` without torch or Ray.
`--config` takes a YAML path or an inline JSON object; `key=value` arguments override keys.
"""
