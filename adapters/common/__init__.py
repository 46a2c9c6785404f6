"""Platform-neutral text utilities shared by the adapters: splitting and rendering."""
