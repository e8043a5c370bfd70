"""One scheduler for every session's model work: batched, deadline-ordered, degrading under overload.

See docs/scheduler.md. ``Scheduler`` is the entry point; ``SchedulerSettings`` its limits.
"""

from streamrt.scheduler.batching import StepTimeModel, choose_batch_size
from streamrt.scheduler.degradation import Degradation, DegradationController, DegradationStep
from streamrt.scheduler.scheduler import Scheduler
from streamrt.scheduler.settings import SchedulerSettings

__all__ = [
    "Degradation",
    "DegradationController",
    "DegradationStep",
    "Scheduler",
    "SchedulerSettings",
    "StepTimeModel",
    "choose_batch_size",
]
