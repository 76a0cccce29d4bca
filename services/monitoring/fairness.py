"""Fairness per protected attribute: demographic parity, disparate impact, equal opportunity.

Conventions (the same as fairlearn's, with y_pred = favourable and y_true = truly good):
- a decision is *favourable* ("selected") when it is not adverse: approved, allowed;
- an applicant is *truly good* when the label is 0: repaid, not fraud. Labels are 1 for the adverse
  outcome (default, fraud), as everywhere in modelgov;
- selection rate of a group = favourable decisions / decisions in the group
  (fairlearn `selection_rate` of y_pred);
- true-positive rate of a group = favourable decisions among its truly good / its truly good
  (fairlearn `true_positive_rate` with y_true = truly good, y_pred = favourable): equal
  opportunity's rate, Hardt, Price & Srebro 2016.
Rows whose group is None are left out of that attribute; rows whose label is None count for the
selection rates but not for the true-positive rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contracts.monitoring.figures import AttributeFairness, GroupFairness
from contracts.monitoring.policy import FairnessPolicy


@dataclass(frozen=True)
class GroupCounts:
    """One group's decisions: how many, how many favourable, and the same among labelled rows."""

    count: int
    favourable: int
    labelled: int
    positives: int  # labelled rows with label 1
    good: int  # labelled rows with label 0
    good_favourable: int

    @property
    def selection_rate(self) -> float:
        return self.favourable / self.count

    @property
    def adverse_rate(self) -> float:
        return (self.count - self.favourable) / self.count

    @property
    def label_rate(self) -> float | None:
        return self.positives / self.labelled if self.labelled else None

    @property
    def true_positive_rate(self) -> float | None:
        return self.good_favourable / self.good if self.good else None


def group_counts(groups: Sequence, adverse: Sequence[bool] | np.ndarray,
                 labels: Sequence | np.ndarray | None = None) -> dict[str, GroupCounts]:
    """Counts per group (the value as str, sorted); None groups and None labels are left out as above."""
    values = np.asarray(groups, dtype=object)
    adverse = np.asarray(adverse, dtype=bool)
    if len(values) != len(adverse) or (labels is not None and len(labels) != len(adverse)):
        raise ValueError(f"groups ({len(values)}), decisions ({len(adverse)}) and labels "
                         f"({'-' if labels is None else len(labels)}) must have one entry per row")
    label = (np.full(len(values), np.nan) if labels is None
             else np.array([np.nan if v is None else float(v) for v in labels], dtype=float))
    known = np.array([v is not None for v in values], dtype=bool)
    names, code = np.unique(values[known].astype(str), return_inverse=True)
    favourable, label = ~adverse[known], label[known]
    labelled, good = ~np.isnan(label), label == 0

    def per_group(mask: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(code if mask is None else code[mask], minlength=len(names))

    columns = (per_group(), per_group(favourable), per_group(labelled), per_group(label == 1),
               per_group(good), per_group(good & favourable))
    return {str(name): GroupCounts(*(int(c[i]) for c in columns)) for i, name in enumerate(names)}


def fairness(groups: Mapping[str, Sequence], adverse: Sequence[bool] | np.ndarray,
             labels: Sequence | np.ndarray | None, policy: FairnessPolicy) -> list[AttributeFairness]:
    """Per protected attribute (groups: attribute → each row's group), over the groups with at least
    `policy.min_group_size` decisions (smaller ones are reported, not judged):
    - demographic parity difference = max − min selection rate (fairlearn
      `demographic_parity_difference(y_true, y_pred=favourable, sensitive_features=group)`);
    - disparate impact ratio = min / max selection rate (fairlearn `demographic_parity_ratio`);
      None when no group is selected at all;
    - equal opportunity difference = max − min true-positive rate over the groups with truly good
      labelled rows (fairlearn `equal_opportunity_difference(y_true=truly good, y_pred=favourable)`);
      None with fewer than two such groups.
    Violated when the ratio is below `min_disparate_impact` or a difference exceeds its maximum."""
    return [_attribute(name, group_counts(values, adverse, labels), policy)
            for name, values in groups.items()]


def _attribute(name: str, counts: dict[str, GroupCounts], policy: FairnessPolicy) -> AttributeFairness:
    eligible = {g: c for g, c in counts.items() if c.count >= policy.min_group_size}
    selection = {g: c.selection_rate for g, c in eligible.items()}
    tpr = {g: c.true_positive_rate for g, c in eligible.items() if c.true_positive_rate is not None}
    dpd = _spread(selection)
    high = max(selection.values(), default=0.0)
    ratio = min(selection.values()) / high if len(selection) >= 2 and high > 0 else None
    eod = _spread(tpr)
    problems = []
    if ratio is not None and ratio < policy.min_disparate_impact:
        problems.append(f"disparate impact {ratio:.3f} < {policy.min_disparate_impact} "
                        f"({_extremes(selection)} selection rate)")
    if dpd is not None and dpd > policy.max_demographic_parity_difference:
        problems.append(f"demographic parity difference {dpd:.3f} > "
                        f"{policy.max_demographic_parity_difference} ({_extremes(selection)} selection rate)")
    if eod is not None and eod > policy.max_equal_opportunity_difference:
        problems.append(f"equal opportunity difference {eod:.3f} > {policy.max_equal_opportunity_difference} "
                        f"({_extremes(tpr)} approval rate among the truly good)")
    small = sorted(set(counts) - set(eligible))
    if problems:
        reason = "; ".join(problems)
    elif len(eligible) < 2:
        reason = (f"not judged: {len(eligible)} group(s) with at least {policy.min_group_size} decisions")
    else:
        reason = "within policy"
    if small:
        reason += f" (not judged, fewer than {policy.min_group_size} decisions: {', '.join(small)})"
    return AttributeFairness(
        attribute=name,
        groups=[GroupFairness(group=g, count=c.count, adverse_rate=c.adverse_rate,
                              true_positive_rate=c.true_positive_rate, eligible=g in eligible)
                for g, c in counts.items()],
        demographic_parity_difference=dpd, disparate_impact_ratio=ratio,
        equal_opportunity_difference=eod, violated=bool(problems), reason=reason,
    )


def _spread(rates: Mapping[str, float]) -> float | None:
    """max − min over at least two groups."""
    return max(rates.values()) - min(rates.values()) if len(rates) >= 2 else None


def _extremes(rates: Mapping[str, float]) -> str:
    low, high = min(rates, key=rates.__getitem__), max(rates, key=rates.__getitem__)
    return f"{low!r} {rates[low]:.3f} vs {high!r} {rates[high]:.3f}"
