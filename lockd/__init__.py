"""lockd: a Raft-replicated lock service. Version only; imports nothing heavy."""

__version__ = "0.1.0"
