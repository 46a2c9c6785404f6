"""Configuration: the typed schema and the JSON5 loader."""
