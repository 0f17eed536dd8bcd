"""Open Messenger: an open, federated, spam-free messaging node."""

__version__ = "0.1.0"
