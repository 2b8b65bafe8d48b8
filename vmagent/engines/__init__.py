"""Engines: what answers the user's messages (the real Claude Code CLI, or a demo)."""
