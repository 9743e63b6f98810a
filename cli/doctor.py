"""Placeholder: commands of this family are being written."""
