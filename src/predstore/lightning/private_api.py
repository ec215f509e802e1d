"""The private parts of Lightning that :class:`~predstore.RegistryLogger` relies on, in one place.

A RegistryLogger must behave like Lightning's own loggers: metric names
prefixed the same way, hyperparameters flattened the same way, and
``hparams.yaml`` written by CSVLogger's own ``ExperimentWriter``. Lightning
offers these only as private helpers. Importing them here and nowhere else
means that a Lightning release which moves them breaks this one module,
and the logger's tests say so at once.
"""

from __future__ import annotations

from lightning.fabric.utilities.logger import _add_prefix as add_prefix
from lightning.fabric.utilities.logger import _convert_params as convert_params
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

__all__ = ["ResumableExperimentWriter", "add_prefix", "convert_params"]


class ResumableExperimentWriter(ExperimentWriter):
    """CSVLogger's ``ExperimentWriter``, except that it keeps an existing ``metrics.csv``."""

    def _check_log_dir_exists(self) -> None:
        # CSVLogger deletes an existing metrics.csv here; a resumed run keeps it.
        return None
