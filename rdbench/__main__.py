from rdbench.cli import app

app(prog_name="rdbench")
