"""Generated references (docs/cli.md, docs/schema.md) match the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_current():
    result = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_documents_every_config_key():
    from sleeptrain_agent.config import Settings

    readme = (ROOT / "README.md").read_text()
    for section, model in Settings.model_fields.items():
        for key in model.annotation.model_fields:
            assert f"`{section}.{key}`" in readme, f"README does not document {section}.{key}"
