"""The README and protocol document stay true to the code."""

from pathlib import Path

from stt.config import ClientSettings, ModalSettings, Settings, options
from stt.messages import CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].startswith("make serve") and block[1].startswith("make test")


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for option in options(Settings) + options(ClientSettings):
        assert f"`{option.env}`" in readme, option.env
        assert f"`--{option.name.replace('_', '-')}`" in readme, option.name


def test_readme_documents_every_modal_setting_and_points_to_the_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/deploy-modal.md)" in readme and (ROOT / "docs" / "deploy-modal.md").is_file()
    for option in options(ModalSettings):
        assert f"| `{option.env}` |" in readme, option.env


def test_protocol_doc_lists_every_close_and_error_code() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in CloseCode:
        assert f"| {int(code)} |" in doc, code
    for error in ErrorCode:
        assert f"`{error.value}`" in doc, error
