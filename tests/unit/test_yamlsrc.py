"""natlab.yamlsrc: safe loading that remembers file:line for every key."""

import pytest

from natlab.errors import ConfigError
from natlab.yamlsrc import dotted, load, loads

TEXT = """\
gateways:
  nat-a:
    behaviour: symmetric
    forwards:
      - protocol: udp
        port: 5000
"""


def test_plain_data_comes_back_as_dicts_and_lists():
    doc = loads(TEXT)
    assert doc.data == {"gateways": {"nat-a": {"behaviour": "symmetric",
                                               "forwards": [{"protocol": "udp", "port": 5000}]}}}


@pytest.mark.parametrize("path, line", [
    (("gateways",), 1),
    (("gateways", "nat-a", "behaviour"), 3),
    (("gateways", "nat-a", "forwards", 0), 5),
    (("gateways", "nat-a", "forwards", 0, "port"), 6),
    (("gateways", "nat-a", "missing", "deeper"), 2),  # nearest parent
    ((), None),
])
def test_line_of_names_the_key_line_or_nearest_parent(path, line):
    assert loads(TEXT).line_of(path) == line


def test_duplicate_key_names_file_line_and_first_line():
    with pytest.raises(ConfigError) as info:
        loads("a: 1\nb:\n  c: 1\n  c: 2\n", source="t.yaml")
    err = info.value
    assert (err.file, err.line, err.key) == ("t.yaml", 4, "b.c")
    assert "duplicate key 'c'" in err.message and "line 3" in err.message


def test_syntax_error_becomes_config_error_with_file_and_line():
    with pytest.raises(ConfigError) as info:
        loads("a: 1\nb: [1, 2\n", source="t.yaml")
    assert info.value.file == "t.yaml" and info.value.line == 3
    assert "YAML syntax error" in info.value.message


def test_python_tags_are_refused_not_executed():
    with pytest.raises(ConfigError, match="t.yaml:1"):
        loads("a: !!python/object/apply:os.system ['true']\n", source="t.yaml")


def test_merge_keys_and_anchors_work():
    doc = loads("base: &b {x: 1}\nthing:\n  <<: *b\n  y: 2\n")
    assert doc.data["thing"] == {"x": 1, "y": 2}


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="recursive"):
        loads("a: &x [*x]\n")


def test_empty_document_is_none():
    assert loads("").data is None


def test_load_reads_a_file_and_names_it(tmp_path):
    file = tmp_path / "x.yaml"
    file.write_text("a: 1\n")
    doc = load(file)
    assert doc.data == {"a": 1} and doc.source == str(file)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_dotted_formats_indexes():
    assert dotted(("forwards", 0, "protocol")) == "forwards[0].protocol"
