"""The ``rdbench`` command line and the demo: the top of the house, which composes every wing and registers the
protocol modules. Nothing in rdbench imports it."""
