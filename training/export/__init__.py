"""Export a trained stage as a bundle: `export_stage` (the task's parity check must pass to publish).

The bundle format and its writer live in `serving.bundle` (`write_bundle`); what differs by task
(preprocessing, postprocessing, the parity measure) is the task's (`training.tasks`).
"""

from training.errors import ExportError
from training.export.stage import export_stage

__all__ = ["ExportError", "export_stage"]
