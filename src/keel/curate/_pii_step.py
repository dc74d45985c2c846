"""`pii`: find personal data and secrets, redact them, and record where (never what) in `pii_spans`.

Detection and redaction live in keel.govern._pii_detect; this module turns them into a column whose
offsets point into the text the step outputs (at the placeholders once redacted), and a column
`pii_subjects` of the keyed hashes of the values found (keel.core.keyring; never the values), which
a dataset commit indexes so `keel govern erase --subject` finds the records after redaction.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field

from keel.core.errors import WorkspaceNotFoundError
from keel.core.keyring import SUBJECT_TYPES, Keyring, load_keyring
from keel.core.settings import load_settings
from keel.curate._step import Step, StepParams, StepResult
from keel.curate._words import replace_at
from keel.govern._pii_detect import DEFAULT_REGIONS, DEFAULT_TYPES, PiiDetector, PiiEngine, PiiSpan, PiiType
from keel.govern._pii_redact import redact

__all__ = ["PII_SPANS_TYPE", "PII_SUBJECTS_TYPE", "PiiStep"]

PII_SUBJECTS_TYPE = pa.list_(pa.string())

PII_SPANS_TYPE = pa.list_(
    pa.struct(
        [
            pa.field("type", pa.string()),
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("detail", pa.string()),
        ]
    )
)


class PiiParams(StepParams):
    """Parameters of `pii`."""

    action: Literal["redact", "flag"] = Field("redact", description="Rewrite the text, or only record spans.")
    mode: Literal["placeholder", "mask", "hash"] = Field(
        "placeholder", description="<EMAIL>, ****, or a salted pseudonym <EMAIL:3f2a…> that stays joinable."
    )
    types: list[PiiType] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        description="What to look for; add person, address, date_of_birth, id_document for people's data.",
    )
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    salt: str = Field("", description="Secret mixed into hash-mode pseudonyms.")
    drop_types: list[PiiType] = Field(
        default_factory=list, description="Drop documents containing any of these (e.g. [secret]) instead."
    )
    index_subjects: bool = Field(
        True,
        description="Add `pii_subjects`: keyed hashes (HMAC under the workspace key) of the personal values found, "
        "so `keel govern erase --subject` finds the records after redaction. Needs a workspace.",
    )
    engine: PiiEngine = Field(
        "keel",
        description="Who finds person and address: keel, or presidio (needs presidio-analyzer and a spaCy "
        "pipeline installed; never downloaded).",
    )


def _rewrite(text: str, spans: list[PiiSpan], p: PiiParams) -> tuple[str, list[dict[str, object]]]:
    pieces, out_spans, pos, shift = [], [], 0, 0
    for span in spans:  # detect() returns them sorted and non-overlapping
        value = text[span.start : span.end]
        replacement = redact(value, [PiiSpan(span.type, 0, len(value), span.detail)], p.mode, salt=p.salt)
        pieces += [text[pos : span.start], replacement]
        start = span.start + shift
        out_spans.append(
            {"type": str(span.type), "start": start, "end": start + len(replacement), "detail": span.detail}
        )
        shift += len(replacement) - len(value)
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces), out_spans


class PiiStep(Step):
    """Redact (or flag) e-mails, phones, cards, IBANs, IPs, SSNs, secrets and URL credentials."""

    name = "pii"
    Params = PiiParams
    requires = ("phonenumbers",)

    def __init__(self, params: StepParams) -> None:
        super().__init__(params)
        p: PiiParams = params  # type: ignore[assignment]
        self._detector = PiiDetector([str(t) for t in p.types], p.phone_regions, engine=p.engine)
        self._keyring: Keyring | None = None

    def _subject_keyring(self) -> Keyring | None:
        """The workspace keyring (loaded once per step instance), or None outside a workspace."""
        if self._keyring is None:
            try:
                self._keyring = load_keyring(load_settings())
            except WorkspaceNotFoundError:
                return None
        return self._keyring

    def apply(self, table: pa.Table) -> StepResult:
        """Add `pii_spans`; rewrite `text` when redacting; drop documents holding a `drop_types` finding."""
        p: PiiParams = self.params  # type: ignore[assignment]
        column = table.column("text").combine_chunks()
        texts = column.to_pylist()
        found = self._detector.detect_many(texts, arrow=column)
        columns: list[list[dict[str, object]]] = []
        reasons: list[str | None] = []
        rewritten: dict[int, str] = {}  # only texts with findings change
        drop = {str(t) for t in p.drop_types}
        keyring = self._subject_keyring() if p.index_subjects else None
        subjects: list[list[str]] = []
        for i, (text, spans) in enumerate(zip(texts, found, strict=True)):
            if not spans:  # most texts: nothing to count, rewrite, index or drop
                columns.append([])
                reasons.append(None)
                if keyring is not None:
                    subjects.append([])
                continue
            for span in spans:
                self.count(f"found.{span.type}")
            if keyring is not None:
                subjects.append(_subject_keys(keyring, text, spans))
            if p.action == "redact":
                rewritten[i], recorded = _rewrite(text, spans, p)
            else:
                recorded = [{"type": str(s.type), "start": s.start, "end": s.end, "detail": s.detail} for s in spans]
            columns.append(recorded)
            hit = sorted({str(s.type) for s in spans} & drop)
            reasons.append(f"pii_{hit[0]}" if hit else None)
        if column.type != pa.string():
            column = column.cast(pa.string())
        if rewritten:  # positions ascend: the loop filled the dict in order
            column = replace_at(column, list(rewritten), pa.array(list(rewritten.values()), pa.string()))
        table = table.set_column(table.schema.get_field_index("text"), "text", column)
        table = table.append_column("pii_spans", pa.array(columns, PII_SPANS_TYPE))
        if keyring is not None:
            table = table.append_column("pii_subjects", pa.array(subjects, PII_SUBJECTS_TYPE))
        elif p.index_subjects:
            self.count("subjects.no_workspace_key", table.num_rows)  # records, so batching cannot change it
        return StepResult(table, reasons)


def _subject_keys(keyring: Keyring, text: str, spans: list[PiiSpan]) -> list[str]:
    """The sorted, distinct keyed hashes of the values in `spans` whose type identifies a person."""
    return sorted(
        {keyring.value_key(str(s.type), text[s.start : s.end]) for s in spans if str(s.type) in SUBJECT_TYPES}
    )
