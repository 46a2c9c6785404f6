"""Auth profiles: credentials, their usage stats, rotation order and the on-disk store."""
