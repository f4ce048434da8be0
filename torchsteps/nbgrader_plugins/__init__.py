"""nbgrader plugins: preprocessors, the execute step, exporters, and the config that plugs them in."""
