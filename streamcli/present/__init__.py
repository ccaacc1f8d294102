"""Presentation: tables, summaries and progress lines that render results (never CLI options)."""
