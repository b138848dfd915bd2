"""The ``ensemble`` command line: the only place that reads ``sys.argv`` and the environment."""
