"""The chat conversation: who and where a message belongs, the plan of its turn, and its session's service."""
