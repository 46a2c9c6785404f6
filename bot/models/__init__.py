"""Models: refs, the catalog and allowlist, the /model picker, and which agent uses which models."""
