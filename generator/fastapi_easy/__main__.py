from .cli import app

app(prog_name="fastapi-easy")
