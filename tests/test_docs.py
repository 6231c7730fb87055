"""The README and protocol document stay true to the code."""

from pathlib import Path

import pytest

from stt.config import README_TABLES, ModalSettings, Settings, markdown_table, options
from stt.messages import CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```sh") + 3]
    assert block[0].startswith("make serve") and block[1].startswith("make test")


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("name", sorted(README_TABLES))
def test_readme_tables_are_generated_from_the_settings(name: str) -> None:
    cls, flags = README_TABLES[name]
    table = markdown_table(cls, flags=flags)
    assert table in (ROOT / "README.md").read_text(), (
        f"README's {name} settings table is out of date; paste it from `python -m stt.config`:\n{table}"
    )


def test_the_tables_show_every_setting_with_its_names_and_default() -> None:
    table = markdown_table(Settings)
    for option in options(Settings):
        assert f"| `{option.flag}` | `{option.env}` |" in table, option.name
    assert "| `--max-backlog-s` | `STT_MAX_BACKLOG_S` | `10` |" in table
    assert "| `--kyutai-compile` | `STT_KYUTAI_COMPILE` | `true` |" in table
    assert "| `--slots` | `STT_SLOTS` | `auto` |" in table
    assert "| `STT_MODAL_MAX_INPUTS` | slots |" in markdown_table(ModalSettings, flags=False)


def test_readme_points_to_the_modal_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/deploy-modal.md)" in readme and (ROOT / "docs" / "deploy-modal.md").is_file()


def test_protocol_doc_lists_every_close_and_error_code() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in CloseCode:
        assert f"| {int(code)} |" in doc, code
    for error in ErrorCode:
        assert f"`{error.value}`" in doc, error


def test_protocol_doc_lists_every_transcription_format_and_event() -> None:
    from stt.transcript_format import GRANULARITIES, RESPONSE_FORMATS

    doc = (ROOT / "docs" / "protocol.md").read_text()
    section = doc[doc.index("### `POST /v1/audio/transcriptions`") :]
    for name in (*RESPONSE_FORMATS, *GRANULARITIES, "transcript.text.delta", "transcript.text.done"):
        assert f"| `{name}` |" in section or f"`{name}`" in section, name
    for code in ("bad_request", "bad_audio", "too_large", "over_capacity", "internal_error"):
        assert f"| `{code}` |" in section, code
