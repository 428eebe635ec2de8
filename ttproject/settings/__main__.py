"""`python -m ttproject.settings`: rewrite docs/settings.md from the declarations in variables.py."""

from pathlib import Path

from .catalogue import render_markdown
from .variables import GROUPS

target = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
target.write_text(render_markdown(GROUPS))
print(f"wrote {target}")
