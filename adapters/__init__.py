"""Platform adapters: they translate chat payloads to core messages and render replies, nothing more."""
