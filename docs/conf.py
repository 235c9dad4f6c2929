"""Sphinx configuration for the webhook_kit documentation (MyST markdown pages)."""

from importlib.metadata import version as _version

project = "webhook_kit"
author = "webhook_kit contributors"
copyright = "webhook_kit contributors"
release = _version("webhook_kit")
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# Headings become anchors (`page.md#a-heading`) down to level 3, as on GitHub.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"webhook_kit {release}"
