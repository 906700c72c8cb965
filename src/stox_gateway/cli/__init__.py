"""The `stox-gateway` command (typer): thin, it parses, builds settings and calls the library."""
