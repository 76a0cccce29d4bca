"""Model cards: what a reviewer or regulator reads about one version, as markdown or HTML.

One structure (titled tables), two renderings, so both formats always say the same thing.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from contracts.monitoring.profile import ReferenceProfile
from contracts.registry.api import ModelPublic, VersionPublic
from services.registry.domain import Step


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    empty: str = "none recorded"


def sections(model: ModelPublic, version: VersionPublic, history: list[Step]) -> list[Table]:
    meta = version.metadata
    policy = meta.decision_policy
    facts = ("field", "value")
    return [
        Table("Purpose", facts, [
            ("description", model.description or "(none given)"),
            ("use case", model.use_case),
            ("risk tier", str(model.risk_tier)),
            ("owner", model.owner),
            ("protected attributes", ", ".join(model.protected_attributes) or "(none declared)"),
        ]),
        Table("Version", facts, [
            ("status", str(version.status)),
            ("registered", f"{version.registered_at.isoformat()} by {version.registered_by}"),
            ("artifact", f"sha256:{version.artifact_sha256} ({version.artifact_format}, "
                         f"{version.artifact_size} bytes)"),
            ("code", meta.code_ref or "(not given)"),
            ("aliases", ", ".join(version.aliases) or "(none)"),
        ]),
        Table("Training data", facts, [
            ("fingerprint", meta.training_data.fingerprint),
            ("rows", str(meta.training_data.rows)),
            *_profile(meta.training_data.profile),
        ]),
        Table("Features", ("name", "type", "range or categories"), [
            (f.name, f.dtype, _domain(f.min, f.max, f.categories)) for f in meta.feature_schema
        ]),
        Table("Metrics", ("metric", "value"), [(k, f"{v:.6g}") for k, v in sorted(meta.metrics.items())]),
        Table("Fairness", ("measure", "value"), [(k, _text(v)) for k, v in sorted(meta.fairness.items())]),
        Table("Decision policy", facts, [] if policy is None else [
            ("review from score", f"{policy.review_at:g}"),
            ("decline / block from score", f"{policy.decline_at:g}"),
        ]),
        Table("Parameters", ("parameter", "value"), [(k, _text(v)) for k, v in sorted(meta.params.items())]),
        Table("Environment", ("package", "version"), sorted(meta.environment.items())),
        Table("Lifecycle history", ("status", "when", "who", "comment"), [
            (str(s.status), s.at.isoformat(), s.actor, s.comment) for s in history
        ]),
    ]


def title(version: VersionPublic) -> str:
    return f"Model card: {version.name} version {version.version}"


def markdown(model: ModelPublic, version: VersionPublic, history: list[Step]) -> str:
    lines = [f"# {title(version)}", ""]
    for table in sections(model, version, history):
        lines += [f"## {table.title}", ""]
        if not table.rows:
            lines += [f"_{table.empty}_", ""]
            continue
        lines.append(_md_row(table.header))
        lines.append(_md_row(tuple("---" for _ in table.header)))
        lines += [_md_row(row) for row in table.rows]
        lines.append("")
    return "\n".join(lines)


def to_html(model: ModelPublic, version: VersionPublic, history: list[Step]) -> str:
    e = html.escape
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title(version))}</title></head><body>',
        f"<h1>{e(title(version))}</h1>",
    ]
    for table in sections(model, version, history):
        parts.append(f"<h2>{e(table.title)}</h2>")
        if not table.rows:
            parts.append(f"<p><em>{e(table.empty)}</em></p>")
            continue
        head = "".join(f"<th>{e(h)}</th>" for h in table.header)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _domain(low: float | None, high: float | None, categories: list[str] | None) -> str:
    if categories is not None:
        return ", ".join(categories)
    if low is None and high is None:
        return ""
    return f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"


def _profile(profile: ReferenceProfile | None) -> list[tuple[str, str]]:
    """The reference profile in brief: its bins and samples are for monitoring, not for reading."""
    if profile is None:
        return [("reference profile", "not given: monitoring cannot measure drift for this version")]
    kinds = [f.kind for f in profile.features.values()]
    rows = [
        ("reference profile", f"{profile.rows} rows; {kinds.count('numeric')} numeric and "
                              f"{kinds.count('categorical')} categorical features"),
        ("reference scores", f"{profile.score.count} rows"
                             + ("" if profile.score.mean is None else f", mean {profile.score.mean:.4g}")),
    ]
    if profile.label_rate is not None:
        rows.append(("reference label rate", f"{profile.label_rate:.4g}"))
    rows += [(f"reference {attribute}", ", ".join(f"{g}: {r.count} rows, adverse rate {r.adverse_rate:.3g}"
                                                 for g, r in groups.items()))
             for attribute, groups in profile.groups.items()]
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
