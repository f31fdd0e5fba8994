"""Reports computed from the states' files, never typed by hand."""
