"""`make bench`: timing figures of the sandbox (and, later, faults and traffic). Prints, asserts nothing."""
