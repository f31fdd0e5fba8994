"""Structured pruning: prunable groups, density schedules, ranking, and the methods."""
