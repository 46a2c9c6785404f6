"""Platform-neutral pieces both chat adapters share: message splitting, the streaming reply, background jobs."""
