"""The platform conventions every engine asset follows, declared once.

- ``code_version``: :func:`engine_core.code_version` (package version + digest of the kernel
  sources). When it changes, Dagster reports every partition materialised with the old one as
  stale (``CODE_VERSION`` cause) until it is materialised again.
- data versions: each materialisation reports a :class:`dagster.DataVersion` computed from
  what it published (:mod:`engine_assets.metadata`), so downstream assets are stale when an
  upstream partition's files actually changed, not merely because it was re-run.
- ``owners`` and ``tags``: who answers for the assets, and what they are, for search and
  selection in the UI (``tag:domain=fraud_simulation``).
"""

from __future__ import annotations

from typing import Any

import engine_core

CODE_VERSION = engine_core.code_version()
OWNERS = ["team:synthetic-data"]
DOMAIN_TAGS = {"domain": "fraud_simulation", "pipeline": "arrival_engine"}


def asset_conventions(state: str) -> dict[str, Any]:
    """``code_version``, ``owners`` and ``tags`` of the asset(s) of one engine state, as
    keyword arguments of ``@asset`` / ``AssetSpec``."""
    return {
        "code_version": CODE_VERSION,
        "owners": list(OWNERS),
        "tags": {**DOMAIN_TAGS, "engine_state": state},
    }
