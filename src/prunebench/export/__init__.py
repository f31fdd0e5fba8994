"""Compact models: physical slimming, costs, throughput."""
