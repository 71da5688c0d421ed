"""The built-in scenario shipped with the package (see default.toml)."""
