"""`synthrec train-gan`: pick the generator for a log (rows or sequences) and run its trainer.

`auto` (the default) trains the sequence generator when the log's relational view has a user,
an item and a time column, and the row GAN otherwise; `sequences` on a log without them fails
with the DataError of `require_sequence_log` (naming the columns found) before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synthrec.config import TrainGanConfig


def choose_generator(requested: str, table, schema) -> tuple[str, str]:
    """("rows" | "sequences", why) for a log; raises DataError when sequences are asked for
    and the log cannot give them."""
    from synthrec.data.relational import relational_view
    from synthrec.errors import DataError
    from synthrec.sequences.encoding import require_sequence_log

    if requested == "rows":
        return "rows", "asked for (generator: rows)"
    log = relational_view(table, schema)
    if requested == "sequences":
        require_sequence_log(log)
        return "sequences", "asked for (generator: sequences)"
    try:
        require_sequence_log(log)
    except DataError:
        found = ", ".join(
            f"{what} {col}"
            for what, col in (
                ("user", log.user_col),
                ("item", log.item_col),
                ("time", log.time_col),
            )
            if col
        )
        return "rows", (
            "the log lacks a user, an item or a time column "
            f"(found: {found or 'none of them'}); sequences need all three"
        )
    return "sequences", (
        f"the log has a user ({log.user_col}), an item ({log.item_col}) and a time column "
        f"({log.time_col}); --generator rows trains the row GAN instead"
    )


@dataclass(frozen=True)
class Choice:
    generator: str  # "rows" | "sequences"
    why: str
    loaded: tuple | None  # (table, schema) when the log was read to choose


def resolve_generator(cfg: TrainGanConfig) -> Choice:
    """The generator for cfg (reads the log unless rows were asked for); raises DataError
    when sequences are asked for and the log cannot give them."""
    from synthrec.data.eventlog import load_event_log

    if cfg.gan.privacy is not None and cfg.generator != "sequences":
        return Choice(
            "rows",
            "differential privacy (--epsilon) trains the row GAN unless --generator sequences "
            "asks for the sequence generator's user-level DP",
            None,
        )
    loaded = None
    if cfg.generator != "rows":
        loaded = load_event_log(cfg.data_uri, cfg.schema_uri, cfg.storage)
    generator, why = choose_generator(cfg.generator, *(loaded or (None, None)))
    return Choice(generator, why, loaded)


def run_train_generator(
    cfg: TrainGanConfig,
    progress: Callable[[dict], None] | None = None,
    choice: Choice | None = None,
) -> dict[str, Any]:
    """Train the generator `choice` (default: `resolve_generator(cfg)`) names with Ray Train
    and publish it; the summary says which generator and why."""
    from synthrec.distributed.gan_train import run_train_gan
    from synthrec.distributed.sequence_train import run_train_sequences

    choice = choice or resolve_generator(cfg)
    train = run_train_gan if choice.generator == "rows" else run_train_sequences
    return {**train(cfg, progress, loaded=choice.loaded), "why": choice.why}
