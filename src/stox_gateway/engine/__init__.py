"""The workflow engine: a pure state machine (`machine`) and the service that persists it."""
