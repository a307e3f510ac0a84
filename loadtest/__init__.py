"""infersuite load-test harness (see loadtest/__main__.py for the command line)."""
