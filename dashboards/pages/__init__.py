"""Dash pages of the dashboards (loaded by Dash from this folder; one module per page)."""
