"""Log tailing: discovery, identity and rotation, reading, grouping, sampling, redaction."""
