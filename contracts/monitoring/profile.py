"""The reference profile a model version carries in its registry metadata (`training_data.profile`).

Monitoring judges every window of live traffic against it: per-feature quantile bins, a sorted
sample and moments (numeric) or category shares (categorical), the score's distribution, and the
reference decision and label rates per protected group. `services.monitoring.reference.build_profile`
computes it from the training and holdout data; the registry validates it at registration.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from contracts.monitoring.base import Figure

Rate = Annotated[float, Field(ge=0, le=1)]
SHARE_TOLERANCE = 1e-6  # shares are sums of count / n: they add up to 1 within rounding


def _sums_to_one(what: str, shares: list[float]) -> None:
    total = math.fsum(shares)
    if abs(total - 1) > SHARE_TOLERANCE:
        raise ValueError(f"{what} must sum to 1, not {total!r}")


class NumericProfile(Figure):
    """A numeric feature (or the score) in the reference data. `count` values are present,
    `missing` are None or NaN; the moments, bins and sample describe the present ones."""

    kind: Literal["numeric"] = "numeric"
    count: int = Field(ge=0, description="present (non-missing, finite) values")
    missing: int = Field(ge=0, description="None, NaN or infinite values")
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    std: float | None = Field(None, ge=0, description="population standard deviation (ddof=0)")
    edges: list[float] = Field(
        default_factory=list,
        description="inner bin edges e1 < … < ek (reference quantiles, deciles by default, ties "
                    "merged); the bins are (-inf, e1], (e1, e2], …, (ek, inf)")
    proportions: list[Rate] = Field(
        default_factory=list, description="reference share of each bin: len(edges) + 1, summing to 1")
    sample: list[float] = Field(
        default_factory=list,
        description="a seeded random sample of the present values without replacement, sorted: "
                    "what the KS test and the Wasserstein distance compare a window against")

    @model_validator(mode="after")
    def _consistent(self) -> NumericProfile:
        moments = (self.min, self.max, self.mean, self.median, self.std)
        if self.count == 0:
            if any(m is not None for m in moments) or self.edges or self.proportions or self.sample:
                raise ValueError("a profile without present values (count 0) has no moments, bins or sample")
            return self
        if any(m is None for m in moments):
            raise ValueError("min, max, mean, median and std are required when count > 0")
        if not self.min <= self.median <= self.max or not self.min <= self.mean <= self.max:
            raise ValueError(f"mean {self.mean} and median {self.median} must lie within "
                             f"[min, max] = [{self.min}, {self.max}]")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        if len(self.proportions) != len(self.edges) + 1:
            raise ValueError(f"proportions needs len(edges) + 1 = {len(self.edges) + 1} entries, "
                             f"not {len(self.proportions)}")
        _sums_to_one("proportions", self.proportions)
        if not 0 < len(self.sample) <= self.count:
            raise ValueError(f"sample must hold 1 to count ({self.count}) values, not {len(self.sample)}")
        if self.sample != sorted(self.sample):  # sorting a sorted list is one pass, in C
            raise ValueError("sample must be sorted")
        if self.sample[0] < self.min or self.sample[-1] > self.max:
            raise ValueError("sample values must lie within [min, max]")
        return self


class CategoricalProfile(Figure):
    """A string or boolean feature in the reference data: the share of each category present."""

    kind: Literal["categorical"] = "categorical"
    count: int = Field(ge=0, description="present (non-missing) values")
    missing: int = Field(ge=0, description="None or NaN values")
    frequencies: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict, description="category → share of the present values (those seen only)")

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalProfile:
        if self.count == 0 and self.frequencies:
            raise ValueError("a profile without present values (count 0) has no frequencies")
        if self.count > 0:
            _sums_to_one("frequencies", list(self.frequencies.values()))
        return self


class GroupRate(Figure):
    """One protected group in the reference (holdout) decisions."""

    count: int = Field(gt=0, description="reference rows in the group")
    adverse_rate: Rate = Field(description="share of adverse decisions (decline / block)")
    label_rate: Rate | None = Field(None, description="share of positive labels (default, fraud)")
    true_positive_rate: Rate | None = Field(
        None, description="share of favourable decisions among the truly good (label 0): "
                          "equal opportunity's rate")


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class ReferenceProfile(Figure):
    """What a version's live traffic is compared against."""

    rows: int = Field(gt=0, description="reference rows the feature profiles describe")
    features: dict[str, FeatureProfile] = Field(description="feature name → its profile")
    score: NumericProfile = Field(description="the score (probability of the adverse outcome)")
    label_rate: Rate | None = Field(None, description="share of positive labels in the reference")
    groups: dict[str, dict[str, GroupRate]] = Field(
        default_factory=dict, description="protected attribute → group → reference rates")
    decision_threshold: Rate | None = Field(
        None, description="the score from which a decision is adverse (decline_at)")

    @model_validator(mode="after")
    def _rows_add_up(self) -> ReferenceProfile:
        for name, feature in self.features.items():
            if feature.count + feature.missing != self.rows:
                raise ValueError(f"feature {name!r}: count + missing = {feature.count + feature.missing}, "
                                 f"but the profile describes {self.rows} rows")
        return self
