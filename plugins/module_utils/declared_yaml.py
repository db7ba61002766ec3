# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A site's declared CTs in a YAML file (such as ``enva.yaml``): find one CT's entry, read it, edit it.

An edit is ruamel.yaml's round-trip: the file is loaded (merge keys, anchors, comments, quotes kept),
changed in memory and dumped with its own indentation, lines never wrapped. The text must then pass
:func:`.text_edit.check`: every byte but the edited values is the original's, the added keys are the
ones asked for. Where ruamel writes other lines differently from the file (a comment before ``---`` or
after a merge key, ``!!int "1024"``, a flow collection over several lines), ruamel's edit is carried over
onto the original text (:func:`.text_edit.carry_over`), checked the same way and read back: it must be
the edited document.

Where the entries are (``path`` of :meth:`Document.entries`):

* a list of mappings with a ``vmid``, ``ctid`` or ``id`` key (that order of preference; the VMID as
  an integer or a string of digits; merge keys (``<<: *defaults``) count);
* a mapping keyed by VMID (integer or string keys), whose values are the entries;
* either one at the top of the document or under keys, found by itself or named by a dotted path
  such as ``containers``, ``lxc`` or ``pve.cts``.
"""

from __future__ import absolute_import, division, print_function

import io
import json
import re
import traceback
from collections import namedtuple

from ansible_collections.enva.pve.plugins.module_utils.memory_size import SIZE_FORMS, format_like, parse_mib
from ansible_collections.enva.pve.plugins.module_utils.memory_policy import below_minimum
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import MINIMUM_MIB
from ansible_collections.enva.pve.plugins.module_utils.text_edit import carry_over, check

try:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.error import CommentMark, YAMLError
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.scalarint import ScalarInt
    from ruamel.yaml.scalarstring import (DoubleQuotedScalarString, FoldedScalarString, LiteralScalarString,
                                          PlainScalarString, SingleQuotedScalarString)
    from ruamel.yaml.tokens import CommentToken
    from ruamel.yaml.util import load_yaml_guess_indent
    HAS_RUAMEL = True
    RUAMEL_IMPORT_ERROR = None
except ImportError:
    HAS_RUAMEL = False
    RUAMEL_IMPORT_ERROR = traceback.format_exc()
    RoundTripConstructor = object

__metaclass__ = type

ID_KEYS = ("vmid", "ctid", "id")
SIZE_KEYS = ("memory", "swap")
SEARCH_DEPTH = 8
BOM = b"\xef\xbb\xbf"
_PROPERTIES = re.compile(r"(?:[&!][^\s,\[\]{}]*\s+)*")   # an anchor and/or a tag before a scalar
_DOCUMENT_START = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n|%[^\n]*\n)*---(?:\s|$)")
_DOCUMENT_END = re.compile(r"^\.\.\.(?:\s|$)", re.M)

Change = namedtuple("Change", "key desired size")


class DeclaredError(Exception):
    """A problem with the declared file or the request; the message says what to do. The file is untouched."""


def decode(data, name):
    """``(text, bom)`` of a UTF-8 file's bytes; the BOM, if any, is set apart so it can be put back."""
    bom = data.startswith(BOM)
    try:
        return data[len(BOM):].decode("utf-8") if bom else data.decode("utf-8"), bom
    except UnicodeDecodeError as error:
        raise DeclaredError("%s is not UTF-8 text (byte %d: %s); declared_ct reads UTF-8 YAML files"
                            % (name, error.start, error.reason))


def encode(text, bom):
    return (BOM if bom else b"") + text.encode("utf-8")


# --------------------------------------------------------------------------- scalars

class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, noting where each scalar is written (``scalars``:
    ``{(line, column): (start, end)}``) and the duplicate keys (``duplicates``: ``{id(mapping): {key: lines}}``)."""

    def construct_object(self, node, deep=False):
        if isinstance(node, ScalarNode):
            start = node.start_mark
            self.__dict__.setdefault("scalars", {})[(start.line, start.column)] = (start.index, node.end_mark.index)
        return RoundTripConstructor.construct_object(self, node, deep=deep)

    def check_mapping_key(self, node, key_node, mapping, key, value):
        if RoundTripConstructor.check_mapping_key(self, node, key_node, mapping, key, value):
            return True
        self.__dict__.setdefault("duplicates", {}).setdefault(id(mapping), {}).setdefault(
            key, [mapping.lc.key(key)[0] + 1]).append(key_node.start_mark.line + 1)
        return False


def _yaml(version=None):
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys, yaml.preserve_quotes, yaml.width = True, True, 1 << 30
    yaml.version = version
    return yaml


def scalar_text(value):
    """The YAML text of a Python scalar: ``true``, ``2048``, ``1.5``, a string as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, (int, float)) else value


def _reads_plain_as(text, kind):
    """Whether ``text``, unquoted, is one plain scalar that YAML 1.2 and 1.1 both read as ``kind``."""
    for version in (None, (1, 1)):
        try:
            items = _yaml(version).compose("[%s]" % text).value
        except YAMLError:
            return False
        if len(items) != 1 or not isinstance(items[0], ScalarNode) or items[0].style or items[0].value != text \
                or not items[0].tag.endswith(":" + kind):
            return False
    return True


def quote(text, style):
    """``text`` as a single-quoted (``style="'"``) or double-quoted YAML scalar."""
    if style == "'" and not any(ord(char) < 32 or char == "\x7f" for char in text):
        return "'%s'" % text.replace("'", "''")
    return json.dumps(text, ensure_ascii=False)


def render(value, style=None):
    """``value`` as YAML text in ``style`` (None: plain when that reads back as the same value, else quoted)."""
    text = scalar_text(value)
    if style in ("'", '"'):
        return quote(text, style)
    kind = {bool: "bool", int: "int", float: "float"}.get(type(value), "str")
    return text if _reads_plain_as(text, kind) else quote(text, "'")


def plain(value):
    """A loaded round-trip value as plain JSON-able Python (dicts with string keys, lists, scalars)."""
    if isinstance(value, dict):
        return dict((str(key), plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return [plain(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return bool(value) if type(value).__name__ == "ScalarBoolean" else int(value)
    for kind in (bool, float, str):
        if isinstance(value, kind):
            return kind(value)
    if value is None or hasattr(value, "isoformat"):
        return value and value.isoformat()
    return plain(value.value) if hasattr(value, "value") else str(value)    # a TaggedScalar (!vault ...)


def _kind_of(value):
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a scalar"


def _anchor(value):
    return getattr(getattr(value, "anchor", None), "value", None)


def _quoted(value):
    return isinstance(value, (SingleQuotedScalarString, DoubleQuotedScalarString))


# --------------------------------------------------------------------------- entries

class _Index(int):
    """A list index among the steps to an entry (a key of a mapping keyed by VMID is an int too)."""


def own_keys(mapping):
    """The mapping's own keys, merge keys left out."""
    return [key for key, _value in mapping.non_merged_items()]


def vmid_of(value):
    """The VMID a key or value holds (an integer or a string of digits), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and type(value).__name__ != "ScalarBoolean":
        return int(value) if value >= 0 else None
    return int(value) if isinstance(value, str) and value.isdigit() and value.isascii() else None


def collection_entries(value):
    """``[(vmid, step, entry mapping)]`` when ``value`` holds CT entries, else None."""
    if isinstance(value, CommentedSeq):
        found = [(next((vmid_of(item[key]) for key in ID_KEYS if key in item), None), _Index(index), item)
                 for index, item in enumerate(value) if isinstance(item, CommentedMap)]
        return [entry for entry in found if entry[0] is not None] or None
    pairs = list(value.non_merged_items()) if isinstance(value, CommentedMap) else []
    if pairs and all(vmid_of(key) is not None for key, _value in pairs):
        return [(vmid_of(key), key, item) for key, item in pairs if isinstance(item, CommentedMap)] or None
    return None


def _join(label, step):
    if isinstance(step, _Index):
        return "%s[%d]" % (label, step)
    return "%s.%s" % (label, step) if label else str(step)


class Entry:
    """One CT's entry: its VMID, mapping, and the steps ``[(parent, step, child)]`` from the document's root."""

    def __init__(self, vmid, node, steps, label, collection):
        self.vmid, self.node, self.steps = vmid, node, steps
        self.label = label            # where it is, e.g. containers[0] or lxc.2017
        self.collection = collection  # where its list or mapping is, e.g. containers ("" at the top)
        self.line = node.lc.line + 1


class Document:
    """A YAML document (one per file) loaded for round-trip, with what edits need to know about it."""

    def __init__(self, text, name):
        self.text, self.name = text, name
        self.crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
        self.source = text.replace("\r\n", "\n") if self.crlf else text     # what ruamel reads and writes
        yaml = _yaml()
        try:
            self.root, self.indent, self.offset = load_yaml_guess_indent(self.source, yaml=yaml)
        except YAMLError as error:
            if "another document" in (getattr(error, "problem", None) or ""):
                raise DeclaredError("%s holds more than one YAML document (the second starts at line %d); declared_ct "
                                    "edits files of one document" % (name, error.problem_mark.line + 1))
            raise DeclaredError("%s is not valid YAML: %s" % (name, _describe_yaml_error(error)))
        if self.root is None:
            raise DeclaredError("%s holds no YAML document (it is empty or only comments)" % name)
        self.duplicates = yaml.constructor.__dict__.get("duplicates", {})
        self.scalars = yaml.constructor.__dict__.get("scalars", {})
        self.places = {}        # id(value) -> [(parent, step)] in document order: an alias adds one
        self.merged_into = {}   # id(mapping) -> the mappings that merge it (<<: *it)
        self._index(self.root, None, None)

    def _index(self, value, parent, step):
        if not isinstance(value, (CommentedMap, CommentedSeq)) and _anchor(value) is None:
            return
        self.places.setdefault(id(value), []).append((parent, step))
        if len(self.places[id(value)]) > 1:
            return
        for source in value.merge if isinstance(value, CommentedMap) else []:
            self.merged_into.setdefault(id(source), []).append(value)
        children = value.non_merged_items() if isinstance(value, CommentedMap) else \
            [(_Index(index), item) for index, item in enumerate(value)] if isinstance(value, CommentedSeq) else []
        for key, item in children:
            self._index(item, value, key)

    def line(self, parent, step, key=False):
        """The line (from 1) of what ``parent`` holds at ``step`` (of its key with ``key``)."""
        if parent is None:
            return self.root.lc.line + 1 if isinstance(self.root, (CommentedMap, CommentedSeq)) else 1
        if isinstance(step, _Index):
            return parent.lc.item(step)[0] + 1
        return (parent.lc.key(step) if key else parent.lc.value(step))[0] + 1

    def entries(self, path=None):
        """Every CT entry in the collections ``path`` names (dotted keys) or, without it, that are found."""
        if path:
            value, steps, label, line = self._follow(path)
            collections = [(collection_entries(value), steps, label)]
            if collections[0][0] is None:
                raise DeclaredError(
                    "%s: %s (line %d) is %s that holds no CT entries; path must name a list of mappings with "
                    "a %s key, or a mapping keyed by VMID" % (self.name, path, line, _kind_of(value), ", ".join(ID_KEYS)))
        else:
            collections = []
            self._search(self.root, [], "", set(), collections)
            if not collections:
                raise DeclaredError(
                    "%s declares no CTs that declared_ct can find: no list of mappings with a %s key and no "
                    "mapping keyed by VMID (searched %d levels deep). Set path to where the CTs are."
                    % (self.name, ", ".join(ID_KEYS), SEARCH_DEPTH))
        return [Entry(vmid, node, steps + [(steps[-1][2] if steps else self.root, step, node)], _join(label, step), label)
                for found, steps, label in collections for vmid, step, node in found]

    def _follow(self, path):
        value, steps, label, parent, step = self.root, [], "", None, None
        for part in path.split("."):
            if not isinstance(value, CommentedMap):
                raise DeclaredError("%s: path %s: %s (line %d) is %s, not a mapping with the key %s"
                                    % (self.name, path, label or "the document", self.line(parent, step),
                                       _kind_of(value), part))
            matches = [key for key in own_keys(value) if str(key) == part]
            if not matches:
                raise DeclaredError("%s: path %s: %s has no key %s; its keys: %s"
                                    % (self.name, path, label or "the document", part,
                                       ", ".join(str(key) for key in own_keys(value)) or "none"))
            lines = [line for key in matches for line in self.duplicates.get(id(value), {}).get(key, [])]
            if len(matches) > 1 or lines:
                lines = lines or [self.line(value, key, key=True) for key in matches]
                raise DeclaredError("%s: path %s: the key %s appears %d times under %s (lines %s); remove the "
                                    "duplicate" % (self.name, path, part, len(lines), label or "the document",
                                                   ", ".join(str(line) for line in lines)))
            parent, step, value, label = value, matches[0], value[matches[0]], _join(label, matches[0])
            steps = steps + [(parent, step, value)]
        return value, steps, label, self.line(parent, step)

    def _search(self, value, steps, label, seen, collections):
        """Adds ``(entries, steps, label)`` of every collection of CT entries to ``collections``, in document order."""
        if id(value) in seen or len(steps) > SEARCH_DEPTH:
            return
        seen.add(id(value))
        found = collection_entries(value)
        if found is not None:
            collections.append((found, steps, label))
            return
        children = value.non_merged_items() if isinstance(value, CommentedMap) else enumerate(value)
        for step, child in children:
            if isinstance(child, (CommentedMap, CommentedSeq)):
                step = step if isinstance(value, CommentedMap) else _Index(step)
                self._search(child, steps + [(value, step, child)], _join(label, step), seen, collections)

    def entry(self, vmid, path=None):
        """The one entry of CT ``vmid``; DeclaredError when there is none or more than one."""
        entries = self.entries(path)
        matches = [entry for entry in entries if entry.vmid == vmid]
        if not matches:
            raise DeclaredError("CT %d is not declared in %s%s: it declares CTs %s (in %s). Add its entry, or "
                                "check vmid and path." % (
                                    vmid, self.name, " under %s" % path if path else "",
                                    ", ".join(str(known) for known in sorted(set(entry.vmid for entry in entries))),
                                    ", ".join(sorted(set(entry.collection or "the top level" for entry in entries)))))
        if len(matches) > 1:
            raise DeclaredError("CT %d is declared %d times in %s: %s. Which one is meant is ambiguous: remove the "
                                "duplicate%s." % (vmid, len(matches), self.name, _places(matches),
                                                  "" if path else ", or name the list to use with path"))
        return matches[0]

    def unique_entries(self, path=None):
        """All entries, each VMID once; DeclaredError naming the VMIDs declared more than once."""
        entries = self.entries(path)
        by_vmid = {}
        for entry in entries:
            by_vmid.setdefault(entry.vmid, []).append(entry)
        duplicates = sorted((vmid, found) for vmid, found in by_vmid.items() if len(found) > 1)
        if duplicates:
            raise DeclaredError("%s declares some CTs more than once: %s. Remove the duplicates%s." % (
                self.name, "; ".join("CT %d at %s" % (vmid, _places(found)) for vmid, found in duplicates),
                "" if path else ", or name the list to read with path"))
        return entries

    def _inheritors(self, mapping, key, seen):
        """Mappings that see ``key`` of ``mapping`` through merge keys (directly or further down)."""
        found = []
        for user in self.merged_into.get(id(mapping), []):
            if id(user) not in seen and key not in own_keys(user):
                seen.add(id(user))
                found += [user] + self._inheritors(user, key, seen)
        return found

    def _shared(self, value):
        """``(line of the anchor, lines of the aliases)`` when ``value`` is written in more than one place."""
        places = self.places.get(id(value), [])
        if len(places) > 1:
            return self.line(*places[0]), ", ".join(str(self.line(*place, key=True)) for place in places[1:])
        return None

    def sharing(self, entry, key, value=None):
        """Why setting ``key`` in ``entry`` would change other places of the document too; None if it would not."""
        if self._shared(value):
            return ("its value is the anchor &%s (line %d), which is also used at line %s; changing it would change "
                    "those too. Give CT %d a value of its own (%s: <value> instead of the alias), then run again"
                    % ((_anchor(value),) + self._shared(value) + (entry.vmid, key)))
        for _parent, step, child in entry.steps:
            if self._shared(child):
                return ("%s (line %d) is the anchor &%s, which is also used at line %s; changing it would change "
                        "those too" % ("CT %d's entry" % entry.vmid if child is entry.node else "item %d" % step
                                       if isinstance(step, _Index) else step, self._shared(child)[0], _anchor(child),
                                       self._shared(child)[1]))
        chain = [(parent, step) for parent, step, _child in entry.steps if isinstance(parent, CommentedMap)]
        for mapping, name in chain + [(entry.node, key)]:
            users = self._inheritors(mapping, name, set())
            if users:
                return ("%s (line %d) is the anchor &%s, merged (<<: *%s) at line %s without a %s of its own; "
                        "changing it would change those too. Set %s there, or edit by hand"
                        % ("CT %d's entry" % entry.vmid if mapping is entry.node else "the mapping",
                           mapping.lc.line + 1, _anchor(mapping), _anchor(mapping),
                           ", ".join(str(user.lc.line + 1) for user in users), name, name))
        return None

    def span(self, mapping, key):
        """``(start, end)`` in :attr:`source` of the scalar ``mapping`` holds at ``key``, its anchor and tag left out."""
        found = self.scalars.get(tuple(mapping.lc.value(key)))
        return found and (_PROPERTIES.match(self.source, *found).end(), found[1])

    def value_span(self, entry, key):     # span() in text, where each line break may be CRLF
        return tuple(at + (self.source.count("\n", 0, at) if self.crlf else 0) for at in self.span(entry.node, key))

    def dump(self, data):
        """``data`` as ruamel writes it with this file's layout (indentation, ``---``, final newline)."""
        yaml = _yaml()
        sequence = self.indent or 2
        yaml.indent(mapping=sequence - self.offset if self.offset else sequence, sequence=sequence,
                    offset=self.offset or 0)
        yaml.explicit_start = bool(_DOCUMENT_START.match(self.source))
        yaml.explicit_end = bool(_DOCUMENT_END.search(self.source))
        stream = io.StringIO()
        yaml.dump(data, stream)
        text = stream.getvalue()
        return text[:-1] if text.endswith("\n") and not self.source.endswith("\n") else text


def _places(entries):   # where entries are, for messages
    return ", ".join("%s (line %d)" % (entry.label, entry.line) for entry in entries)


def _describe_yaml_error(error):
    """``line L, column C: problem (context at line L, column C)``, from ruamel's marks (counted from 1)."""
    def at(mark):
        return "line %d, column %d" % (mark.line + 1, mark.column + 1)

    if not (getattr(error, "problem", None) and error.problem_mark):
        return " ".join(str(error).split())
    return "%s: %s%s" % (at(error.problem_mark), error.problem, " (%s%s)" % (
        error.context, " at %s" % at(error.context_mark) if error.context_mark else "") if error.context else "")


# --------------------------------------------------------------------------- edits

def changes_from(memory=None, swap=None, settings=None):
    """The Change list of the module's options; DeclaredError for values that cannot be set."""
    changes = []
    for key, value in (("memory", memory), ("swap", swap)):
        if value is not None:
            try:
                mib = parse_mib(value)
            except ValueError as error:
                raise DeclaredError("%s: %s" % (key, error))
            if below_minimum(key, mib):
                raise DeclaredError("%s: %d MiB is below PVE's minimum of %d MiB" % (key, mib, MINIMUM_MIB[key]))
            changes.append(Change(key, mib, True))
    for key, value in (settings or {}).items():
        if key in SIZE_KEYS:
            raise DeclaredError("set: %s has an option of its own; use %s: %s" % (key, key, value))
        if key in ID_KEYS:
            raise DeclaredError("set: %s identifies the CT's entry and is not changed by declared_ct" % key)
        if not isinstance(value, (str, int, float, bool)):
            raise DeclaredError("set: %s must be a string, number or boolean, not %s" % (key, type(value).__name__))
        changes.append(Change(key, value, False))
    return changes


class Plan:
    """An edit of one entry: the new text, the entry before and after, ``method`` "round-trip" or "carried over"."""

    def __init__(self, entry, before, after, new_text, changed_keys, method=None):
        self.entry, self.before, self.after, self.new_text = entry, before, after, new_text
        self.changed_keys, self.method, self.changed = changed_keys, method, bool(changed_keys)


def _holds(doc, entry, change):
    """Whether the entry's value for the change's key (its own or merged) already is what is asked."""
    current, owner = entry.node[change.key], entry.node
    while change.key not in own_keys(owner):
        owner = next(source for source in owner.merge if change.key in source)
    where = "%s of CT %d (%s.%s, line %d)" % (change.key, entry.vmid, entry.label, change.key,
                                              doc.line(owner, change.key, key=True))
    if isinstance(current, (dict, list)):
        raise DeclaredError("%s is %s%s" % (where, _kind_of(current), ", not a size; it must be %s" % SIZE_FORMS
                                            if change.size else "; set only changes scalar values"))
    if change.size and current is None:
        raise DeclaredError("%s is empty (null); it must be %s" % (where, SIZE_FORMS))
    if change.size:
        try:
            return parse_mib(plain(current)) == change.desired
        except ValueError as error:
            raise DeclaredError("%s: %s" % (where, error))
    if _quoted(current):                    # quoted: the text is what counts
        return current == scalar_text(change.desired)
    current = plain(current)                # else: equal, and of the same kind (1, True and '1' differ)
    return type(current) is type(change.desired) and current == change.desired


def _new_value(change, current):
    """The value to set, in the style of ``current`` (None for a key the entry does not have yet)."""
    anchor = _anchor(current)
    sized = change.size and isinstance(current, str)
    text = format_like(change.desired, current) if sized else scalar_text(change.desired)   # '1G' -> '2G'
    if _quoted(current):
        return type(current)(text, anchor=anchor)
    if not sized and not isinstance(change.desired, str):
        whole = isinstance(change.desired, int) and not isinstance(change.desired, bool)
        return ScalarInt(change.desired, anchor=anchor) if anchor and whole else change.desired
    if not _reads_plain_as(text, "str"):
        return SingleQuotedScalarString(text, anchor=anchor)
    return PlainScalarString(text, anchor=anchor) if anchor else text


def _keep_layout(doc, node, values, added):
    """Comments stay where they are written: ruamel keeps an end-of-line comment at its column (so the spaces
    before it would change with the value's length), and writes an added key after the comment lines that
    follow the last key (which belong to what comes next). The column moves with the value, and those lines
    move after the added key."""
    for key in set(values) - set(added):
        token, span = (node.ca.items.get(key) or [None] * 4)[2], doc.span(node, key)
        if token is not None and span and not token.value.startswith("\n"):
            value = values[key]
            written = quote(value, "'" if isinstance(value, SingleQuotedScalarString) else '"') if _quoted(value) \
                else scalar_text(plain(value))
            node.ca.items[key][2] = CommentToken(token.value, CommentMark(
                token.start_mark.column + len(written) - (span[1] - span[0])))
    last = own_keys(node)[-1] if own_keys(node) else None
    token = (node.ca.items.get(last) or [None] * 4)[2]
    if not added or token is None or node.fa.flow_style():
        return
    head, _newline, tail = token.value.partition("\n")
    if isinstance(node[last], (LiteralScalarString, FoldedScalarString)):   # its newline ends the scalar
        head, tail = "", token.value
    if tail:
        node.ca.items[last][2] = CommentToken(head + "\n", token.start_mark) if head.strip() else None
        node.ca.items.setdefault(added[-1], [None] * 4)[2] = CommentToken("\n" + tail, CommentMark(0))


def plan_edit(doc, vmid, changes, path=None):
    """The Plan that sets ``changes`` in CT ``vmid``'s entry of ``doc`` (whose data it edits); nothing is written."""
    entry = doc.entry(vmid, path)
    node, before = entry.node, plain(entry.node)
    values, added, items, spans = {}, [], [], []
    for change in changes:
        key = change.key
        lines = doc.duplicates.get(id(node), {}).get(key)
        if lines:
            raise DeclaredError("CT %d's entry (%s, line %d) has the key %s %d times (lines %s); remove the duplicate"
                                % (vmid, entry.label, entry.line, key, len(lines), ", ".join(map(str, lines))))
        if key in node and _holds(doc, entry, change):
            continue
        current = node[key] if key in own_keys(node) else None
        if isinstance(current, (LiteralScalarString, FoldedScalarString)):
            raise DeclaredError("%s of CT %d (line %d) is a block scalar (%s); declared_ct does not rewrite those"
                                % (key, vmid, doc.line(node, key, key=True),
                                   "|" if isinstance(current, LiteralScalarString) else ">"))
        problem = doc.sharing(entry, key, current)
        if problem:
            raise DeclaredError("%s of CT %d cannot be %s alone: %s." % (
                key, vmid, "changed" if key in own_keys(node) else "added", problem))
        values[key] = _new_value(change, current)
        if key in own_keys(node):
            spans.append(doc.span(node, key))
        else:                               # absent, or only merged in: a key of its own
            added.append(key)
            items.append("%s: %s" % (render(key), render(change.desired)))
    if not values:
        return Plan(entry, before, before, doc.text, [])
    new_text, method = _edited_text(doc, node, values, added, items, [span for span in spans if span])
    new_text = new_text.replace("\n", "\r\n") if doc.crlf else new_text
    if method == "carried over":            # ruamel's own dump reads back as what it dumped; this text is ours
        try:
            same = plain(Document(new_text, doc.name).root) == plain(doc.root)
        except DeclaredError as error:
            same = _refuse(doc, "the edited text does not parse: %s" % error)
        if not same:
            _refuse(doc, "the edited text does not read back as the edited document")
    return Plan(entry, before, plain(node), new_text, list(values), method)


def _refuse(doc, why):
    raise DeclaredError("declared_ct's own check of the edit failed (%s), so %s was left untouched; please "
                        "report this with the file" % (why, doc.name))


def _edited_text(doc, node, values, added, items, spans):
    """``(text, method)``: the document as ruamel dumps it with ``values`` set, or that edit carried over."""
    _keep_layout(doc, node, values, added)
    for key, value in values.items():
        node[key] = value
    edited = doc.dump(doc.root)
    column = node.lc.key(own_keys(node)[0])[1] if own_keys(node) else 0
    problem = check(doc.source, edited, spans, items, column)
    if problem is None:
        return edited, "round-trip"
    carried = carry_over(doc.source, doc.dump(_yaml().load(doc.source)), edited)
    if carried is not None and check(doc.source, carried, spans, items, column) is None:
        return carried, "carried over"
    return _refuse(doc, "ruamel.yaml would also change line %d: %s" % problem)


def entry_summary(doc, entry, values=None):
    """What the module returns about one entry: where it is, its values, memory and swap in MiB."""
    values = plain(entry.node) if values is None else values
    summary = {"vmid": entry.vmid, "path_found": entry.label, "line": entry.line, "entry": values}
    for key in SIZE_KEYS:
        try:
            summary["%s_mb" % key] = parse_mib(values[key]) if values.get(key) is not None else None
        except ValueError:
            summary["%s_mb" % key] = None
    return summary
