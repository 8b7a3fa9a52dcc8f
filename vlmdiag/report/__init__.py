"""Reports: one versioned JSON document per run; the terminal table and plots render it."""
