"""Small shared utilities (errors, parameter checks, device, progress, atomic writes, URL redaction, storage paths); imports nothing else from the project."""
