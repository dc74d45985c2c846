"""Labelling: schemas, queues, weak supervision and active learning.

Floor 4. Label schemas per dataset (`_schema`), queues of items from a dataset version or from a
deployment's traces with each annotator's answers (`_queue`), inter-annotator agreement (`_agreement`),
Label Studio and Argilla files (`_formats`), labels committed as a dataset version (`_commit`); weak
supervision (`keel.label.weak`: labelling functions and a label model) and active-learning order
(`keel.label.active`) are modules of their own.
Names load on first use: `keel label …` pays for what it calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.core._lazy import lazy_getattr

if TYPE_CHECKING:
    from keel.label._agreement import AgreementReport, agreement, fleiss_kappa, krippendorff_alpha
    from keel.label._commit import LabelCommit, commit_labels
    from keel.label._formats import FORMATS, ImportReport, export_labels, import_labels, label_studio_config
    from keel.label._queue import (
        ORDERS,
        Item,
        Label,
        Progress,
        Queue,
        create_queue,
        get_item,
        get_queue,
        list_labels,
        list_queues,
        next_item,
        position_of,
        present_items,
        queue_progress,
        record_label,
        skip_item,
        undo_last,
    )
    from keel.label._schema import KINDS, LabelSchema, get_schema, list_schemas, set_schema

_MODULES = {
    **dict.fromkeys(("AgreementReport", "agreement", "fleiss_kappa", "krippendorff_alpha"), "_agreement"),
    **dict.fromkeys(("LabelCommit", "commit_labels"), "_commit"),
    **dict.fromkeys(("FORMATS", "ImportReport", "export_labels", "import_labels", "label_studio_config"), "_formats"),
    **dict.fromkeys(
        (
            "ORDERS",
            "Item",
            "Label",
            "Progress",
            "Queue",
            "create_queue",
            "get_item",
            "get_queue",
            "list_labels",
            "list_queues",
            "next_item",
            "position_of",
            "present_items",
            "queue_progress",
            "record_label",
            "skip_item",
            "undo_last",
        ),
        "_queue",
    ),
    **dict.fromkeys(("KINDS", "LabelSchema", "get_schema", "list_schemas", "set_schema"), "_schema"),
}

__getattr__ = lazy_getattr("keel.label", _MODULES)

__all__ = [
    "FORMATS",
    "KINDS",
    "ORDERS",
    "AgreementReport",
    "ImportReport",
    "Item",
    "Label",
    "LabelCommit",
    "LabelSchema",
    "Progress",
    "Queue",
    "agreement",
    "commit_labels",
    "create_queue",
    "export_labels",
    "fleiss_kappa",
    "get_item",
    "get_queue",
    "get_schema",
    "import_labels",
    "krippendorff_alpha",
    "label_studio_config",
    "list_labels",
    "list_queues",
    "list_schemas",
    "next_item",
    "position_of",
    "present_items",
    "queue_progress",
    "record_label",
    "set_schema",
    "skip_item",
    "undo_last",
]
