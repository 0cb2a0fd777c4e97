"""Shared pydantic base for every ``params.yaml`` section: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A strict, immutable config section (a typo in ``params.yaml`` is an error, not a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
