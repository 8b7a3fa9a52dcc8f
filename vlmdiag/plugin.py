"""pytest plugin (placeholder while the skeleton is built)."""
