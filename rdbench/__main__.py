from rdbench.cli.app import app

app(prog_name="rdbench")
