"""`headway init` detection, table-driven over small app folders."""

from pathlib import Path

import pytest

from headway.builder.detect import detect
from headway.errors import ConfigError


@pytest.mark.parametrize(("files", "command"), [
    ({"main.py": "from fastapi import FastAPI\napi = FastAPI()\n"},
     "uvicorn main:api --host 127.0.0.1 --port $PORT"),
    ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"},
     "gunicorn --bind 127.0.0.1:$PORT app:app"),
    ({"manage.py": "", "shop/wsgi.py": "application = None\n"},
     "gunicorn --bind 127.0.0.1:$PORT shop.wsgi"),
    ({"server.py": "if __name__ == '__main__':\n    serve()\n"}, "python3 server.py"),
])
def test_detects_the_command(tmp_path: Path, files: dict[str, str], command: str) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert detect(tmp_path).command == command


def test_unknown_layout_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "looked for manage.py, main.py, app.py" in err.value.message
    assert "[processes.web] command" in (err.value.hint or "")
