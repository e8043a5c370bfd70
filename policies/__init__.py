"""Read/write policies for streamrt (see policies.base). Importable on its own as `policies`."""
