"""Tasks of the jobs app: bulk replay of dead letters from a worker."""

from __future__ import annotations

import logging

from apiplatform.jobs.base import QUEUE_DEFAULT, project_task
from apiplatform.jobs.services import dead_letter_replay

logger = logging.getLogger(__name__)


@project_task(name="jobs.replay_dead_letters", queue=QUEUE_DEFAULT, max_retries=0)
def replay_dead_letters(self, dead_letter_ids: list[int]) -> int:
    """Replay many dead letters from a worker (the admin's bulk action for very large selections)."""
    replayed = 0
    for pk in dead_letter_ids:
        try:
            dead_letter_replay(dead_letter_id=pk)
            replayed += 1
        except Exception:
            logger.exception("dead letter %s not replayed", pk)
    return replayed


# DEPRECATED, remove in the release after the one that renamed it (issue 11): the task's old name
# in ingestion, kept so messages already queued under it still run; it forwards to the new task.
@project_task(name="ingestion.replay_dead_letters", queue=QUEUE_DEFAULT, max_retries=0)
def replay_dead_letters_old_name(self, dead_letter_ids: list[int]) -> None:
    replay_dead_letters.apply_async(kwargs={"dead_letter_ids": dead_letter_ids})
