"""The ``rdbench`` command line and the demo: the top of the house, which composes every wing. Nothing in
rdbench imports it. Importing it registers the installed protocol modules first, so that the options'
valid values (listed in --help) include every protocol and table."""

from rdbench.registry import load_plugins

load_plugins()
