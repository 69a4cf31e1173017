"""Destinations. A sink gets batches and says: delivered, retry later, or discarded by the receiver.
Sinks never touch the state file; the upload command does."""
