"""declared_yaml: finding a CT's entry in real-looking declared files, editing it byte for byte, refusing what is unsafe.

Each edit case names a fixture, what to set, and the exact bytes of the lines that must change
(``{line number: new bytes}``, where new bytes holding two lines is an insertion after that line);
every other byte of the file must come out as it went in.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.enva.pve.plugins.module_utils import declared_yaml
from ansible_collections.enva.pve.plugins.module_utils.declared_yaml import DeclaredError
from support.declared_fixtures import fixture_bytes


def load(name):
    data = fixture_bytes(name)
    text, bom = declared_yaml.decode(data, name)
    return data, declared_yaml.Document(text, name), bom


def edit(name, vmid, path=None, memory=None, swap=None, settings=None):
    data, doc, bom = load(name)
    plan = declared_yaml.plan_edit(doc, vmid, declared_yaml.changes_from(memory, swap, settings), path)
    return data, declared_yaml.encode(plan.new_text, bom), plan


def replace_lines(data, replacements):
    lines = data.splitlines(keepends=True)
    for number, new in replacements.items():
        lines[number - 1] = new
    return b"".join(lines)


EDITS = [
    # the site's enva.yaml shape: a containers list under site settings, comments everywhere
    ("list-containers.yaml", dict(vmid=2017, memory=2048),
     {12: b"    memory: 2048           # set in 2023-03 (ticket 4711)\n"}),
    ("list-containers.yaml", dict(vmid=2017, memory="2G", swap=2048),
     {12: b"    memory: 2048           # set in 2023-03 (ticket 4711)\n", 13: b"    swap: 2048\n"}),
    ("list-containers.yaml", dict(vmid=2017, settings={"onboot": 0}), {14: b"    onboot: 0\n"}),
    ("list-containers.yaml", dict(vmid=2018, settings={"hostname": "yes"}), {21: b"    hostname: 'yes'\n"}),
    ("list-containers.yaml", dict(vmid=2018, settings={"cores": 2}),          # before the comment after the entry
     {24: b"    onboot: 1\n    cores: 2\n"}),
    ("list-containers.yaml", dict(vmid=2019, settings={"cores": 4}),          # after a block scalar, blank line kept
     {35: b"      Backups at 02:00.\n    cores: 4\n"}),
    ("list-containers.yaml", dict(vmid=2020, memory=512, settings={"cores": 1}),   # the file's last entry
     {39: b"    memory: 512\n", 40: b"    onboot: 1\n    cores: 1\n"}),
    ("list-containers.yaml", dict(vmid=2020, swap="1.5G"), {40: b"    onboot: 1\n    swap: 1536\n"}),
    # a mapping keyed by integer VMIDs, block and flow entries
    ("map-int-keys.yaml", dict(vmid=2017, memory=2048), {9: b"    memory: 2048    # MiB\n"}),
    ("map-int-keys.yaml", dict(vmid=2018, memory=1024, settings={"onboot": 1}),
     {12: b"  2018: {hostname: web1, memory: 1024, swap: 512, onboot: 1}\n"}),
    ("map-int-keys.yaml", dict(vmid=2019, swap=512, path="lxc"), {16: b"    swap: 512\n"}),
    # nested under pve.cts, string keys, quoted sizes with units
    ("nested-pve-cts.yaml", dict(vmid=2017, memory=2048), {7: b"      memory: '2G'       # one gibibyte\n"}),
    ("nested-pve-cts.yaml", dict(vmid=2017, memory=1536, swap="1G", path="pve.cts"),
     {7: b"      memory: '1536M'       # one gibibyte\n", 8: b'      swap: "1024M"\n'}),
    ("nested-pve-cts.yaml", dict(vmid=2018, memory="1G", settings={"onboot": 0}),
     {11: b"      memory: 1024\n", 12: b'      onboot: "0"\n'}),
    # anchors, aliases and merge keys
    ("anchors-merge.yaml", dict(vmid=2017, memory=2048), {13: b"    memory: 2048\n"}),
    ("anchors-merge.yaml", dict(vmid=2018, memory=1024),                      # overrides what it merges
     {16: b"    hostname: web1\n    memory: 1024\n"}),
    ("anchors-merge.yaml", dict(vmid=2019, memory=8192), {21: b"    memory: 8192\n"}),   # 2020 has its own
    ("anchors-merge.yaml", dict(vmid=2023, memory=2048),
     {35: b"    memory: &mail_memory 2048   # anchored, used nowhere else\n"}),
    ("anchors-merge.yaml", dict(vmid=2024, memory=2048), {38: b'    memory: !!int "2048"\n'}),
    ("anchors-merge.yaml", dict(vmid=2024, swap=1024), {39: b"    <<: *defaults\n    swap: 1024\n"}),
    # flow style, on one line and over several
    ("flow-style.yaml", dict(vmid=2017, memory=2048),
     {1: b'containers: [{vmid: 2017, memory: 2048}, {vmid: 2018, memory: "512", swap: 512}]\n'}),
    ("flow-style.yaml", dict(vmid=2018, memory=1024, swap=0),
     {1: b'containers: [{vmid: 2017, memory: 1024}, {vmid: 2018, memory: "1024", swap: 0}]\n'}),
    ("flow-style.yaml", dict(vmid=2019, settings={"onboot": 1}), {4: b"   swap: 0, onboot: 1},\n"}),
    ("flow-style.yaml", dict(vmid=2020, memory=128), {5: b"  {vmid: 2020, hostname: 'x', memory: 128}\n"}),
    # a list at the top, id/ctid keys, quoted VMIDs and sizes
    ("ids-quoted.yaml", dict(vmid=2017, memory=2048, swap="2G"), {4: b'  memory: "2048"\n', 5: b"  swap: '2048'\n"}),
    ("ids-quoted.yaml", dict(vmid=2018, memory=1024), {8: b"  memory: 1024\n"}),
    # CRLF and a BOM; no final newline
    ("crlf-bom.yaml", dict(vmid=2017, memory=2048), {4: b"    memory: 2048\r\n"}),
    ("crlf-bom.yaml", dict(vmid=2018, swap=512), {7: b"    memory: 512\r\n    swap: 512\r\n"}),
    ("no-final-newline.yaml", dict(vmid=2018, memory=1024), {5: b"    memory: 1024   # no newline after this line"}),
    ("no-final-newline.yaml", dict(vmid=2018, swap=0), {5: b"    memory: 512   # no newline after this line\n    swap: 0"}),
    # the same VMID in two lists: path says which
    ("two-lists.yaml", dict(vmid=2017, memory=2048, path="containers"), {4: b"    memory: 2048\n"}),
    ("two-lists.yaml", dict(vmid=2017, memory=1024, path="retired"), {9: b"    memory: 1024\n"}),
]


def case_id(case):
    name, args, _lines = case
    return "%s-%s" % (name.split(".")[0], "-".join("%s=%s" % item for item in sorted(args.items())))


@pytest.mark.parametrize("name, args, lines", EDITS, ids=[case_id(case) for case in EDITS])
def test_edit_changes_exactly_these_bytes(name, args, lines):
    before, after, plan = edit(name, **args)
    assert after == replace_lines(before, lines)
    assert plan.changed


@pytest.mark.parametrize("name, args, lines", EDITS, ids=[case_id(case) for case in EDITS])
def test_edit_reads_back_and_runs_again_unchanged(name, args, lines, tmp_path):
    _before, after, plan = edit(name, **args)
    assert after.startswith(declared_yaml.BOM) == (name == "crlf-bom.yaml")
    text, _bom = declared_yaml.decode(after, name)
    doc = declared_yaml.Document(text, name)
    again = declared_yaml.plan_edit(doc, args["vmid"], declared_yaml.changes_from(
        args.get("memory"), args.get("swap"), args.get("settings")), args.get("path"))
    assert not again.changed and again.new_text == text
    assert again.before == plan.after
    for key in ("memory", "swap"):
        if args.get(key) is not None:
            assert declared_yaml.parse_mib(plan.after[key]) == declared_yaml.parse_mib(args[key])


def edits_one_scalar(case):
    """An edit of one value the entry already has (not an added key)."""
    name, args, _lines = case
    keys = [key for key in ("memory", "swap") if key in args] + list(args.get("settings", {}))
    if len(keys) != 1:
        return False
    _data, doc, _bom = load(name)
    entry = doc.entry(args["vmid"], args.get("path"))
    return keys[0] in declared_yaml.own_keys(entry.node)


SCALAR_EDITS = [case for case in EDITS if edits_one_scalar(case)]


@pytest.mark.parametrize("name, args, lines", SCALAR_EDITS, ids=[case_id(case) for case in SCALAR_EDITS])
def test_every_byte_outside_the_edited_scalar_is_identical(name, args, lines):
    before, after, plan = edit(name, **args)
    (key,) = plan.changed_keys
    _data, doc, bom = load(name)
    text = doc.text
    start, end = doc.value_span(doc.entry(args["vmid"], args.get("path")), key)
    offset = len(declared_yaml.BOM) if bom else 0
    start, end = offset + len(text[:start].encode()), offset + len(text[:end].encode())
    grown = len(after) - len(before)
    assert after[:start] == before[:start]
    assert after[end + grown:] == before[end:]
    # and line by line: one line differs, the one holding the scalar
    old_lines, new_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    assert [number for number, (old, new) in enumerate(zip(old_lines, new_lines), 1) if old != new] == list(lines)


def test_most_edits_are_scalar_edits():
    assert len(SCALAR_EDITS) >= 15


@given(mib=st.integers(min_value=16, max_value=10 ** 9))
@settings(max_examples=60, deadline=None)
def test_any_memory_changes_only_its_own_line(mib):
    name = "list-containers.yaml"
    before, after, plan = edit(name, 2017, memory=mib)
    expected = replace_lines(before, {12: b"    memory: %d           # set in 2023-03 (ticket 4711)\n" % mib})
    assert after == expected
    assert plan.changed == (mib != 1024)


UNCHANGED = [
    ("list-containers.yaml", dict(vmid=2017, memory=1024, swap="1G", settings={"onboot": 1, "hostname": "haproxy"})),
    ("anchors-merge.yaml", dict(vmid=2018, memory=512, swap="512M")),        # inherited values count
    ("nested-pve-cts.yaml", dict(vmid=2017, memory=1024, swap=512)),         # '1G' and "512M" in the file
    ("nested-pve-cts.yaml", dict(vmid=2018, settings={"onboot": 1})),        # onboot: "1" is quoted text
    ("ids-quoted.yaml", dict(vmid=2017, memory="1G", swap=1024)),
    ("crlf-bom.yaml", dict(vmid=2017, memory=1024)),
    ("flow-style.yaml", dict(vmid=2018, memory=512)),
    ("anchors-merge.yaml", dict(vmid=2021)),                                 # reading an alias is fine
]


@pytest.mark.parametrize("name, args", UNCHANGED, ids=[case_id(case + ({},)) for case in UNCHANGED])
def test_values_already_as_asked_change_nothing(name, args):
    before, after, plan = edit(name, **args)
    assert after == before
    assert not plan.changed and plan.changed_keys == [] and plan.before == plan.after


ERRORS = [
    ("duplicate-vmid.yaml", dict(vmid=2017, memory=2048),
     "CT 2017 is declared 2 times in duplicate-vmid.yaml: containers[0] (line 2), containers[2] (line 8). Which one is "
     "meant is ambiguous: remove the duplicate, or name the list to use with path."),
    ("two-lists.yaml", dict(vmid=2017, memory=2048),
     "CT 2017 is declared 2 times in two-lists.yaml: containers[0] (line 2), retired[0] (line 7)."),
    ("list-containers.yaml", dict(vmid=4242, memory=2048),
     "CT 4242 is not declared in list-containers.yaml: it declares CTs 2017, 2018, 2019, 2020 (in containers). "
     "Add its entry, or check vmid and path."),
    ("ids-quoted.yaml", dict(vmid=4242),
     "CT 4242 is not declared in ids-quoted.yaml: it declares CTs 2017, 2018 (in the top level)."),
    ("map-int-keys.yaml", dict(vmid=2017, path="defaults"),
     "map-int-keys.yaml: defaults (line 3) is a mapping that holds no CT entries; path must name a list of mappings "
     "with a vmid, ctid, id key, or a mapping keyed by VMID"),
    ("list-containers.yaml", dict(vmid=2017, path="lxc"),
     "list-containers.yaml: path lxc: the document has no key lxc; its keys: site, node, sins, containers"),
    ("list-containers.yaml", dict(vmid=2017, path="containers.x"),
     "list-containers.yaml: path containers.x: containers (line 10) is a list, not a mapping with the key x"),
    ("no-cts.yaml", dict(vmid=2017),
     "no-cts.yaml declares no CTs that declared_ct can find: no list of mappings with a vmid, ctid, id key and no "
     "mapping keyed by VMID (searched 8 levels deep). Set path to where the CTs are."),
    ("wrong-types.yaml", dict(vmid=2017, memory=2048),
     "memory of CT 2017 (containers[0].memory, line 3) is a mapping, not a size; it must be an integer number of MiB"),
    ("wrong-types.yaml", dict(vmid=2018, memory=2048),
     "memory of CT 2018 (containers[1].memory, line 5): 'lots' is not a size: give an integer number of MiB"),
    ("wrong-types.yaml", dict(vmid=2019, memory=2048), "memory of CT 2019 (containers[2].memory, line 7) is a list"),
    ("wrong-types.yaml", dict(vmid=2020, memory=2048),
     "memory of CT 2020 (containers[3].memory, line 9): True is a boolean, not a size"),
    ("wrong-types.yaml", dict(vmid=2021, memory=2048),
     "memory of CT 2021 (containers[4].memory, line 11) is empty (null)"),
    ("wrong-types.yaml", dict(vmid=2022, memory=2048), "memory of CT 2022 (containers[5].memory, line 13): 1.5 (float)"),
    ("wrong-types.yaml", dict(vmid=2023, swap=1024),
     "swap of CT 2023 (containers[6].swap, line 16): '100K' is not a whole number of MiB"),
    ("wrong-types.yaml", dict(vmid=2024, settings={"onboot": 1}),
     "onboot of CT 2024 (containers[7].onboot, line 19) is a mapping; set only changes scalar values"),
    ("list-containers.yaml", dict(vmid=2019, settings={"description": "MySQL"}),
     "description of CT 2019 (line 33) is a block scalar (|); declared_ct does not rewrite those"),
    ("anchors-merge.yaml", dict(vmid=2019, swap=1024),
     "swap of CT 2019 cannot be changed alone: CT 2019's entry (line 17) is the anchor &db, merged (<<: *db) at line 23 "
     "without a swap of its own; changing it would change those too."),
    ("anchors-merge.yaml", dict(vmid=2019, settings={"cores": 2}),
     "cores of CT 2019 cannot be added alone: CT 2019's entry (line 17) is the anchor &db, merged (<<: *db) at line 23"),
    ("anchors-merge.yaml", dict(vmid=2021, memory=512),
     "memory of CT 2021 cannot be changed alone: its value is the anchor &cache_memory (line 7), which is also used at "
     "line 29, 32; changing it would change those too. Give CT 2021 a value of its own"),
    ("shared-list.yaml", dict(vmid=2017, memory=2048),
     "memory of CT 2017 cannot be changed alone: containers (line 1) is the anchor &cts, which is also used at line 5"),
    ("not-yaml.yaml", dict(vmid=2017), "not-yaml.yaml is not valid YAML: line 5, column 9: expected ',' or ']', but "
                                       "got ':' (while parsing a flow sequence at line 4, column 11)"),
]


@pytest.mark.parametrize("name, args, message", ERRORS, ids=[case_id((case[0], case[1], None)) for case in ERRORS])
def test_refusals_say_what_is_wrong(name, args, message):
    with pytest.raises(DeclaredError) as caught:
        edit(name, **args)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("text, message", [
    ("", "x.yaml holds no YAML document (it is empty or only comments)"),
    ("# only a comment\n", "x.yaml holds no YAML document"),
    ("- vmid: 2017\n---\n- vmid: 2018\n", "x.yaml holds more than one YAML document (the second starts at line "
                                          "2); declared_ct edits files of one document"),
    ("a:\n\tb: 1\n", "x.yaml is not valid YAML: line 2, column 1: found character '\\t' that cannot start any token "
                     "(while scanning for the next token)"),
    ("- vmid: 2017\n  memory: 1024\n  memory: 2048\n", "CT 2017's entry (containers, line 1)"),
])
def test_documents_that_cannot_be_edited(text, message):
    expected = message.replace("(containers, line 1)", "([0], line 1) has the key memory 2 times (lines 2, 3)")
    with pytest.raises(DeclaredError) as caught:
        declared_yaml.plan_edit(declared_yaml.Document(text, "x.yaml"), 2017, declared_yaml.changes_from(2048))
    assert str(caught.value).startswith(expected)


def test_bytes_that_are_not_utf8():
    with pytest.raises(DeclaredError) as caught:
        declared_yaml.decode(b"containers:\n  - vmid: 2017\n    hostname: caf\xe9\n", "latin1.yaml")
    assert str(caught.value) == ("latin1.yaml is not UTF-8 text (byte 44: invalid continuation byte); declared_ct "
                                 "reads UTF-8 YAML files")


@pytest.mark.parametrize("memory, swap, settings, message", [
    ("lots", None, None, "memory: 'lots' is not a size: give an integer number of MiB"),
    (8, None, None, "memory: 8 MiB is below PVE's minimum of 16 MiB"),
    (None, -1, None, "swap: -1 is negative"),
    (None, "1536K", None, "swap: '1536K' is not a whole number of MiB"),
    (None, None, {"memory": 2048}, "set: memory has an option of its own; use memory: 2048"),
    (None, None, {"vmid": 2018}, "set: vmid identifies the CT's entry and is not changed by declared_ct"),
    (None, None, {"net": {"name": "eth0"}}, "set: net must be a string, number or boolean, not dict"),
])
def test_values_that_cannot_be_set(memory, swap, settings, message):
    with pytest.raises(DeclaredError) as caught:
        declared_yaml.changes_from(memory, swap, settings)
    assert str(caught.value).startswith(message)


READS = [
    ("list-containers.yaml", None, {2017: ("containers[0]", 1024, 1024), 2018: ("containers[1]", 512, 512),
                                    2019: ("containers[2]", 4096, 0), 2020: ("containers[3]", 256, None)}),
    ("map-int-keys.yaml", None, {2017: ("lxc.2017", 1024, 1024), 2018: ("lxc.2018", 512, 512),
                                 2019: ("lxc.2019", 4096, 0)}),
    ("nested-pve-cts.yaml", "pve.cts", {2017: ("pve.cts.2017", 1024, 512), 2018: ("pve.cts.2018", 512, None)}),
    ("anchors-merge.yaml", None, {2017: ("containers[0]", 1024, 512), 2018: ("containers[1]", 512, 512),
                                  2019: ("containers[2]", 4096, 0), 2020: ("containers[3]", 4096, 0),
                                  2021: ("containers[4]", 256, None), 2022: ("containers[5]", 256, None),
                                  2023: ("containers[6]", 1024, None), 2024: ("containers[7]", 1024, 512)}),
    ("flow-style.yaml", None, {2017: ("containers[0]", 1024, None), 2018: ("containers[1]", 512, 512),
                               2019: ("more[0]", 256, 0), 2020: ("more[1]", None, None)}),
    ("ids-quoted.yaml", None, {2017: ("[0]", 1024, 1024), 2018: ("[1]", 512, None)}),
    ("crlf-bom.yaml", None, {2017: ("containers[0]", 1024, 1024), 2018: ("containers[1]", 512, None)}),
    ("two-lists.yaml", "retired", {2017: ("retired[0]", 512, None), 1999: ("retired[1]", 128, None)}),
]


@pytest.mark.parametrize("name, path, expected", READS, ids=[case[0] for case in READS])
def test_reading_every_entry(name, path, expected):
    _data, doc, _bom = load(name)
    found = {}
    for entry in doc.unique_entries(path):
        summary = declared_yaml.entry_summary(doc, entry)
        found[entry.vmid] = (summary["path_found"], summary["memory_mb"], summary["swap_mb"])
    assert found == expected


def test_an_entry_reads_whole_with_merges_applied():
    _data, doc, _bom = load("anchors-merge.yaml")
    entry = doc.entry(2020)
    assert declared_yaml.plain(entry.node) == {"vmid": 2020, "hostname": "db2", "memory": 4096, "swap": 0, "onboot": 1}
    assert (entry.label, entry.line) == ("containers[3]", 23)


def test_reading_all_refuses_duplicates():
    _data, doc, _bom = load("duplicate-vmid.yaml")
    with pytest.raises(DeclaredError) as caught:
        doc.unique_entries()
    assert str(caught.value) == ("duplicate-vmid.yaml declares some CTs more than once: CT 2017 at containers[0] "
                                 "(line 2), containers[2] (line 8). Remove the duplicates, or name the list to read "
                                 "with path.")


@pytest.mark.parametrize("value, style, text", [
    ("haproxy", None, "haproxy"),
    ("yes", None, "'yes'"),            # a boolean to YAML 1.1 readers
    ("0755", None, "'0755'"),          # an octal to YAML 1.1 readers
    ("1:20", None, "'1:20'"),          # sexagesimal in YAML 1.1
    ("2048", None, "'2048'"),
    ("a: b", None, "'a: b'"),
    ("it's", None, '''it's'''),
    (" padded", None, "' padded'"),
    ("", None, "''"),
    ("#tag", None, "'#tag'"),
    ("line\nbreak", None, '"line\\nbreak"'),
    (2048, None, "2048"),
    (True, None, "true"),
    (1.5, None, "1.5"),
    ("it's", "'", "'it''s'"),
    ("say \"hi\"", '"', '"say \\"hi\\""'),
    (1, '"', '"1"'),
    ("tab\there", "'", '"tab\\there"'),
])
def test_render_scalars(value, style, text):
    assert declared_yaml.render(value, style) == text


# --------------------------------------------------------------------------- where ruamel's round-trip struggles
# Each case: the file, what to set in CT 2017, the exact text after, and how the text was made: "round-trip"
# (ruamel's dump of the edited document passed the byte-level check as it is) or "carried over" (ruamel writes
# other lines of this file differently, so its edit was carried over onto the original text).

STRUGGLES = [
    ("a comment before ---: ruamel drops it",
     "# site file\n---\n# the CTs\ncontainers:\n  - vmid: 2017\n    memory: 1024   # MiB\n", dict(memory=2048),
     "# site file\n---\n# the CTs\ncontainers:\n  - vmid: 2017\n    memory: 2048   # MiB\n", "carried over"),
    ("--- and ... around the document",
     "---\ncontainers:\n  - vmid: 2017\n    memory: 1024\n...\n", dict(memory=2048),
     "---\ncontainers:\n  - vmid: 2017\n    memory: 2048\n...\n", "round-trip"),
    ("a %YAML directive: ruamel drops it",
     "%YAML 1.2\n---\ncontainers:\n  - vmid: 2017\n    memory: 1024\n", dict(memory=2048),
     "%YAML 1.2\n---\ncontainers:\n  - vmid: 2017\n    memory: 2048\n", "carried over"),
    ("comments at every place; the added key before the comment after the entry",
     "# top\ncontainers:   # the list\n  # before the entry\n  - vmid: 2017   # eol\n    # between keys\n"
     "    memory: 1024   # eol memory\n    # after the last key\n# at the end\n",
     dict(memory=524288, settings={"cores": 2}),
     "# top\ncontainers:   # the list\n  # before the entry\n  - vmid: 2017   # eol\n    # between keys\n"
     "    memory: 524288   # eol memory\n    cores: 2\n    # after the last key\n# at the end\n", "round-trip"),
    ("odd indentation: 3 spaces, 2 after the dash",
     "containers:\n   -  vmid: 2017\n      memory: 1024\n", dict(memory=2048, settings={"cores": 2}),
     "containers:\n   -  vmid: 2017\n      memory: 2048\n      cores: 2\n", "round-trip"),
    ("mixed indentation: a list at the key's column, a mapping indented by 4",
     "containers:\n- vmid: 2017\n  memory: 1024\nother:\n    a: 1\n", dict(memory=2048, settings={"cores": 2}),
     "containers:\n- vmid: 2017\n  memory: 2048\n  cores: 2\nother:\n    a: 1\n", "carried over"),
    ("a tab inside a quoted scalar",
     'containers:\n  - vmid: 2017\n    note: "a\\tb"\n    memory: 1024\n', dict(memory=2048),
     'containers:\n  - vmid: 2017\n    note: "a\\tb"\n    memory: 2048\n', "round-trip"),
    ("sizes with units keep them",
     "containers:\n  - vmid: 2017\n    memory: 2G\n    swap: 512M\n", dict(memory=3072, swap=1536),
     "containers:\n  - vmid: 2017\n    memory: 3G\n    swap: 1536M\n", "round-trip"),
    ("a unit that no longer fits becomes M",
     "containers:\n  - vmid: 2017\n    memory: 2GiB\n", dict(memory=1536),
     "containers:\n  - vmid: 2017\n    memory: 1536MiB\n", "round-trip"),
    ("merged from a list of anchors: a key of its own, the anchors untouched",
     "a: &a {memory: 512}\nb: &b {swap: 256}\ncontainers:\n  - vmid: 2017\n    <<: [*a, *b]\n    hostname: x\n",
     dict(memory=1024),
     "a: &a {memory: 512}\nb: &b {swap: 256}\ncontainers:\n  - vmid: 2017\n    <<: [*a, *b]\n    hostname: x\n"
     "    memory: 1024\n", "round-trip"),
    ("an anchored value of its own keeps the anchor and the comment's spaces",
     "containers:\n  - vmid: 2017\n    memory: &m 1024   # anchored\n", dict(memory=20480),
     "containers:\n  - vmid: 2017\n    memory: &m 20480   # anchored\n", "round-trip"),
    ("an anchored number set through set, a comment ending the file without a line break",
     "containers:\n  - vmid: 2017\n    cores: &c 2   # anchored\n    memory: 1024   # c", dict(swap=512, settings={"cores": 4}),
     "containers:\n  - vmid: 2017\n    cores: &c 4   # anchored\n    memory: 1024   # c\n    swap: 512", "round-trip"),
    ("a duplicate key elsewhere: ruamel drops the second one",
     "containers:\n  - vmid: 2017\n    memory: 1024\n  - vmid: 2018\n    swap: 1\n    swap: 2\n", dict(memory=2048),
     "containers:\n  - vmid: 2017\n    memory: 2048\n  - vmid: 2018\n    swap: 1\n    swap: 2\n", "carried over"),
    ("quoted scalars: '' and \\u escapes; ruamel rewrites the escape",
     "containers:\n  - vmid: 2017\n    hostname: 'it''s'\n    desc: \"caf\\u00e9\"\n    memory: '1024'\n",
     dict(memory=2048, settings={"hostname": "new's"}),
     "containers:\n  - vmid: 2017\n    hostname: 'new''s'\n    desc: \"caf\\u00e9\"\n    memory: '2048'\n",
     "carried over"),
    ("a flow mapping with a flow list inside",
     "containers:\n  - {vmid: 2017, tags: [a, b], memory: 1024}\n", dict(memory=2048, settings={"onboot": True}),
     "containers:\n  - {vmid: 2017, tags: [a, b], memory: 2048, onboot: true}\n", "round-trip"),
    ("a line longer than ruamel's default width",
     "containers:\n  - vmid: 2017\n    description: %s end\n    memory: 1024\n" % ("word " * 60),
     dict(memory=2048), "containers:\n  - vmid: 2017\n    description: %s end\n    memory: 2048\n" % ("word " * 60),
     "round-trip"),
    ("CRLF without a final line break",
     "containers:\r\n  - vmid: 2017\r\n    memory: 1024", dict(memory=2048, swap=512),
     "containers:\r\n  - vmid: 2017\r\n    memory: 2048\r\n    swap: 512", "round-trip"),
    ("mixed line ends: only an insertion, every byte of the file kept",
     "containers:\r\n  - vmid: 2017\n    memory: 1024\r\n", dict(memory=2048, swap=512),
     "containers:\r\n  - vmid: 2017\n    memory: 2048\n    swap: 512\r\n", "carried over"),
]


@pytest.mark.parametrize("text, args, expected, method", [case[1:] for case in STRUGGLES],
                         ids=[case[0] for case in STRUGGLES])
def test_where_round_trip_struggles(text, args, expected, method):
    doc = declared_yaml.Document(text, "x.yaml")
    plan = declared_yaml.plan_edit(doc, 2017, declared_yaml.changes_from(**args))
    assert (plan.new_text, plan.method) == (expected, method)
    again = declared_yaml.Document(plan.new_text, "x.yaml")
    assert not declared_yaml.plan_edit(again, 2017, declared_yaml.changes_from(**args)).changed


CARRIED = [case for case in STRUGGLES if case[4] == "carried over"] + [
    (name, fixture_bytes(name).decode(), None, None, None) for name in ("anchors-merge.yaml", "flow-style.yaml")]


@pytest.mark.parametrize("text", [case[1] for case in CARRIED], ids=[case[0] for case in CARRIED])
def test_carried_over_only_where_ruamel_rewrites_other_lines(text):
    """The hand-written part (carrying ruamel's edit over onto the text) is used only for files like these,
    which ruamel's round-trip does not write back as they are, even without an edit."""
    doc = declared_yaml.Document(text, "x.yaml")
    assert doc.dump(doc.root) != doc.source


def test_edit_that_neither_way_passes_the_check_is_refused_naming_the_line(monkeypatch):
    monkeypatch.setattr(declared_yaml, "carry_over", lambda source, before, after: None)
    with pytest.raises(DeclaredError) as caught:
        edit("anchors-merge.yaml", 2017, memory=2048)
    assert str(caught.value) == (
        "declared_ct's own check of the edit failed (ruamel.yaml would also change line 38: '    memory: !!int "
        "\"1024\"' became '    memory: 1024'), so anchors-merge.yaml was left untouched; please report this with "
        "the file")


@pytest.mark.parametrize("text, message", [
    ("containers:\n  - vmid: 2017\n    memory: 1024\t# tab\n",
     "x.yaml is not valid YAML: line 3, column 17: found character '\\t' that cannot start any token"),
    ("containers:\n  - vmid: 2017\n    memory: 1024\x00\n",
     "x.yaml is not valid YAML: unacceptable character #x0000: special characters are not allowed"),
    ("defaults: &d\n  memory: 512\ncontainers:\n  - &base\n    vmid: 2017\n    <<: *d\n  - vmid: 2018\n    <<: *base\n",
     "memory of CT 2017 cannot be added alone: CT 2017's entry (line 4) is the anchor &base, merged (<<: *base) at "
     "line 7 without a memory of its own"),
    ("lxc:\n  2017: {memory: 1024}\nlxc:\n  2018: {}\n",
     "x.yaml: path lxc: the key lxc appears 2 times under the document (lines 1, 3); remove the duplicate"),
])
def test_files_refused_with_the_line(text, message):
    with pytest.raises(DeclaredError) as caught:
        declared_yaml.plan_edit(declared_yaml.Document(text, "x.yaml"), 2017, declared_yaml.changes_from(2048),
                                "lxc" if text.startswith("lxc") else None)
    assert str(caught.value).startswith(message)
