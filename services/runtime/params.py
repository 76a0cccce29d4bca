"""Path parameters the services share: what a model name and a version number may be.

Checked at the route, so a name no model can have, or a version number no store can hold, is a
422 that says so, never a lookup that fails deeper down (a URL the registry client cannot build,
an integer the database driver cannot bind).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from contracts.registry.api import MAX_VERSION, NAME_PATTERN

ModelName = Annotated[str, Path(pattern=NAME_PATTERN,
                                 description="a model's name: lowercase letters, digits and '-'")]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION, description="a registered version")]
