"""modelbot: a chat bot whose core is a model-selection and failover engine."""

__version__ = "0.1.0"
