# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A site's declared CTs in a YAML file (such as ``enva.yaml``): find one CT's entry, read it, edit it.

Edits never re-dump the document. The file is composed with ruamel.yaml's round-trip loader, which
keeps every node's exact position; an edit replaces only the characters of the scalar it changes
(quotes, anchor and tag kept) or inserts one ``key: value`` line after the entry's last key. The result
is composed again and compared node by node with the original: only the edited values may differ.
So comments, key order, quoting, indentation, flow style, anchors, CRLF line ends, a BOM and a missing
final newline all stay as they were.

Where the entries are (``path`` of :meth:`Document.entries`):

* a list of mappings with a ``vmid``, ``ctid`` or ``id`` key (that order of preference; the VMID as
  an integer or a string of digits; merge keys (``<<: *defaults``) count);
* a mapping keyed by VMID (integer or string keys), whose values are the entries;
* either one at the top of the document or under keys, found by itself or named by a dotted path
  such as ``containers``, ``lxc`` or ``pve.cts``.
"""

from __future__ import absolute_import, division, print_function

import copy
import json
import re
import traceback

from ansible_collections.enva.pve.plugins.module_utils.memory_size import SIZE_FORMS, format_like, parse_mib

try:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
    HAS_RUAMEL = True
    RUAMEL_IMPORT_ERROR = None
except ImportError:
    HAS_RUAMEL = False
    RUAMEL_IMPORT_ERROR = traceback.format_exc()

__metaclass__ = type

ID_KEYS = ("vmid", "ctid", "id")
SIZE_KEYS = ("memory", "swap")
SIZE_MINIMUM_MIB = {"memory": 16, "swap": 0}   # the PVE API's minimums (nodes/{node}/lxc/{vmid}/config)
SEARCH_DEPTH = 8
BOM = b"\xef\xbb\xbf"
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
_DIGITS = re.compile(r"^[0-9]+$")
_NODE_PROPERTIES = re.compile(r"(?:[&!][^\s,\[\]{}]*\s+)*")   # an anchor and/or a tag before a scalar


class DeclaredError(Exception):
    """A problem with the declared file or the request; the message says what to do. The file is untouched."""


# --------------------------------------------------------------------------- bytes and text

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


def line_ending(text):
    """The file's line break: CRLF when its first line ends so, else LF."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


# --------------------------------------------------------------------------- scalars

def _yaml(version=None):
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True
    if version:
        yaml.version = version
    return yaml


def scalar_text(value):
    """The YAML text of a Python scalar: ``true``, ``2048``, ``1.5``, a string as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return value


def _reads_plain_as(text, tag):
    """Whether ``text``, unquoted, is one plain scalar that YAML 1.2 and 1.1 both read with ``tag``."""
    for version in (None, (1, 1)):
        try:
            node = _yaml(version).compose("[%s]" % text)
        except YAMLError:
            return False
        if len(node.value) != 1:
            return False
        item = node.value[0]
        if not isinstance(item, ScalarNode) or item.style or item.value != text or item.tag != tag:
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
    tag = {bool: BOOL_TAG, int: INT_TAG, float: FLOAT_TAG}.get(type(value), STR_TAG)
    return text if _reads_plain_as(text, tag) else quote(text, "'")


def plain(value):
    """A constructed round-trip value as plain JSON-able Python (dicts with string keys, lists, scalars)."""
    if isinstance(value, dict):
        return dict((str(key), plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return [plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return bool(value) if type(value).__name__ == "ScalarBoolean" else int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):       # a TaggedScalar (!vault and other local tags)
        return plain(value.value)
    return str(value)


def _same_scalar(current, desired):
    """Equal, and of the same kind (so that ``1``, ``True`` and ``'1'`` all differ)."""
    def kind(value):
        return bool if isinstance(value, bool) else int if isinstance(value, int) else type(value)
    return kind(current) is kind(desired) and current == desired


def _kind_of(node):
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a scalar"


# --------------------------------------------------------------------------- mappings

def key_text(node):
    return node.value if isinstance(node, ScalarNode) else None


def own_pairs(mapping):
    """The mapping's own ``(key, value)`` node pairs, merge keys left out."""
    return [(key, value) for key, value in mapping.value if key.tag != MERGE_TAG]


def merge_sources(mapping):
    """The mappings merged into ``mapping`` by ``<<`` keys, in order of precedence."""
    sources = []
    for key, value in mapping.value:
        if key.tag == MERGE_TAG:
            sources.extend([value] if isinstance(value, MappingNode) else
                           [item for item in getattr(value, "value", []) if isinstance(item, MappingNode)])
    return sources


def effective_pairs(mapping, seen=None):
    """``{key text: (key node, value node, owning mapping)}``: own keys over merged ones, as YAML reads them."""
    seen = set() if seen is None else seen
    seen.add(id(mapping))
    result = {}
    for key, value in own_pairs(mapping):
        result.setdefault(key_text(key), (key, value, mapping))
    for source in merge_sources(mapping):
        if id(source) not in seen:
            for name, pair in effective_pairs(source, seen).items():
                result.setdefault(name, pair)
    return result


def vmid_of(node):
    """The VMID a scalar node holds (an integer or a string of digits), else None."""
    if isinstance(node, ScalarNode) and node.tag in (INT_TAG, STR_TAG) and _DIGITS.match(node.value or ""):
        return int(node.value)
    return None


def item_vmid(mapping):
    """``(VMID, id key)`` of a list item: its ``vmid``, else ``ctid``, else ``id`` key; ``(None, None)`` without."""
    pairs = effective_pairs(mapping)
    for name in ID_KEYS:
        if name in pairs:
            return vmid_of(pairs[name][1]), name
    return None, None


def collection_entries(node):
    """``[(vmid, step, entry node)]`` when ``node`` holds CT entries, else None.

    ``step`` is the list index or the mapping's key node.
    """
    if isinstance(node, SequenceNode):
        found = []
        for index, item in enumerate(node.value):
            if isinstance(item, MappingNode):
                vmid = item_vmid(item)[0]
                if vmid is not None:
                    found.append((vmid, index, item))
        return found or None
    if isinstance(node, MappingNode):
        pairs = own_pairs(node)
        if pairs and all(vmid_of(key) is not None for key, _value in pairs):
            found = [(vmid_of(key), key, value) for key, value in pairs if isinstance(value, MappingNode)]
            return found or None
    return None


def _join(label, step):
    if isinstance(step, int):
        return "%s[%d]" % (label, step)
    return "%s.%s" % (label, key_text(step)) if label else key_text(step)


class Entry:
    """One CT's entry: its VMID, mapping node, and the steps from the document's root to it."""

    def __init__(self, vmid, node, steps, label, collection):
        self.vmid = vmid
        self.node = node
        self.steps = steps            # [(parent node, list index or key node, child node)]
        self.label = label            # where it is, e.g. containers[0] or lxc.2017
        self.collection = collection  # where its list or mapping is, e.g. containers ("" at the top)

    @property
    def line(self):
        return self.node.start_mark.line + 1


# --------------------------------------------------------------------------- the document

class Document:
    """A composed YAML document (one per file) with what edits need to know about it."""

    def __init__(self, text, name):
        self.text = text
        self.name = name
        self.yaml = _yaml()
        try:
            self.root = self.yaml.compose(text)
        except MarkedYAMLError as error:
            if "another document" in (error.problem or ""):
                raise DeclaredError("%s holds more than one YAML document (the second starts at line %d); declared_ct "
                                    "edits files of one document" % (name, error.problem_mark.line + 1))
            raise DeclaredError("%s is not valid YAML: %s" % (name, _describe_yaml_error(error)))
        except YAMLError as error:
            raise DeclaredError("%s is not valid YAML: %s" % (name, error))
        if self.root is None:
            raise DeclaredError("%s holds no YAML document (it is empty or only comments)" % name)
        self._events = None
        self.uses = {}          # id(node) -> how many places hold it (an alias adds one)
        self.merged_into = {}   # id(mapping) -> the mappings that merge it (<<: *it)
        self._index()

    def _index(self):
        seen = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            children = []
            if isinstance(node, MappingNode):
                for source in merge_sources(node):
                    self.merged_into.setdefault(id(source), []).append(node)
                for key, value in node.value:
                    if key.tag == MERGE_TAG:
                        children.extend([value] if isinstance(value, MappingNode) else getattr(value, "value", []))
                    else:
                        children.extend((key, value))
                        self.uses[id(value)] = self.uses.get(id(value), 0) + 1
            elif isinstance(node, SequenceNode):
                children.extend(node.value)
                for item in node.value:
                    self.uses[id(item)] = self.uses.get(id(item), 0) + 1
            stack.extend(reversed(children))

    def construct(self, node):
        """The plain Python value of ``node`` (merge keys applied).

        ruamel's constructor rewrites the merge keys of the nodes it is given, so it gets a copy.
        """
        return plain(self.yaml.constructor.construct_object(copy.deepcopy(node), deep=True))

    # -- finding entries

    def entries(self, path=None):
        """Every CT entry in the collections ``path`` names (dotted keys) or, without it, that are found."""
        if path:
            node, steps, label = self._follow(path)
            found = collection_entries(node)
            if found is None:
                raise DeclaredError(
                    "%s: %s (line %d) is %s that holds no CT entries; path must name a list of mappings with "
                    "a %s key, or a mapping keyed by VMID" % (self.name, path, node.start_mark.line + 1,
                                                              _kind_of(node), ", ".join(ID_KEYS)))
            collections = [(found, steps, label)]
        else:
            collections = self._search()
            if not collections:
                raise DeclaredError(
                    "%s declares no CTs that declared_ct can find: no list of mappings with a %s key and no "
                    "mapping keyed by VMID (searched %d levels deep). Set path to where the CTs are."
                    % (self.name, ", ".join(ID_KEYS), SEARCH_DEPTH))
        entries = []
        for found, steps, label in collections:
            for vmid, step, node in found:
                parent = steps[-1][2] if steps else self.root
                entries.append(Entry(vmid, node, steps + [(parent, step, node)], _join(label, step), label))
        return entries

    def _follow(self, path):
        node, steps, label = self.root, [], ""
        for part in path.split("."):
            if not isinstance(node, MappingNode):
                raise DeclaredError("%s: path %s: %s (line %d) is %s, not a mapping with the key %s"
                                    % (self.name, path, label or "the document", node.start_mark.line + 1,
                                       _kind_of(node), part))
            matches = [(key, value) for key, value in own_pairs(node) if key_text(key) == part]
            if not matches:
                keys = [key_text(key) for key, _value in own_pairs(node)]
                raise DeclaredError("%s: path %s: %s has no key %s; its keys: %s"
                                    % (self.name, path, label or "the document", part,
                                       ", ".join(str(key) for key in keys) or "none"))
            if len(matches) > 1:
                raise DeclaredError("%s: path %s: the key %s appears %d times under %s (lines %s); remove the "
                                    "duplicate" % (self.name, path, part, len(matches), label or "the document",
                                                   ", ".join(str(key.start_mark.line + 1) for key, _v in matches)))
            key, child = matches[0]
            steps = steps + [(node, key, child)]
            node, label = child, _join(label, key)
        return node, steps, label

    def _search(self):
        """``[(entries, steps, label)]`` of every collection of CT entries, in document order."""
        collections = []
        seen = set()

        def visit(node, steps, label, depth):
            if id(node) in seen or depth > SEARCH_DEPTH:
                return
            seen.add(id(node))
            found = collection_entries(node)
            if found is not None:
                collections.append((found, steps, label))
                return
            if isinstance(node, MappingNode):
                children = own_pairs(node)
            elif isinstance(node, SequenceNode):
                children = list(enumerate(node.value))
            else:
                return
            for step, child in children:
                visit(child, steps + [(node, step, child)], _join(label, step), depth + 1)

        visit(self.root, [], "", 0)
        return collections

    def entry(self, vmid, path=None):
        """The one entry of CT ``vmid``; DeclaredError when there is none or more than one."""
        entries = self.entries(path)
        matches = [entry for entry in entries if entry.vmid == vmid]
        if not matches:
            known = ", ".join(str(known_vmid) for known_vmid in sorted(set(entry.vmid for entry in entries)))
            places = ", ".join(sorted(set(entry.collection or "the top level" for entry in entries)))
            raise DeclaredError("CT %d is not declared in %s%s: it declares CTs %s (in %s). Add its entry, or "
                                "check vmid and path." % (vmid, self.name, " under %s" % path if path else "",
                                                          known, places))
        if len(matches) > 1:
            where = ", ".join("%s (line %d)" % (entry.label, entry.line) for entry in matches)
            raise DeclaredError("CT %d is declared %d times in %s: %s. Which one is meant is ambiguous: remove the "
                                "duplicate%s." % (vmid, len(matches), self.name, where,
                                                  "" if path else ", or name the list to use with path"))
        return matches[0]

    def unique_entries(self, path=None):
        """All entries, each VMID once; DeclaredError naming the VMIDs declared more than once."""
        entries = self.entries(path)
        by_vmid = {}
        for entry in entries:
            by_vmid.setdefault(entry.vmid, []).append(entry)
        duplicates = dict((vmid, found) for vmid, found in by_vmid.items() if len(found) > 1)
        if duplicates:
            raise DeclaredError("%s declares some CTs more than once: %s. Remove the duplicates%s." % (
                self.name,
                "; ".join("CT %d at %s" % (vmid, ", ".join("%s (line %d)" % (entry.label, entry.line)
                                                           for entry in found))
                          for vmid, found in sorted(duplicates.items())),
                "" if path else ", or name the list to read with path"))
        return entries

    # -- what an edit would also change

    @property
    def events(self):
        """The parser's events: unlike nodes, they place every alias where it is written."""
        if self._events is None:
            self._events = list(self.yaml.parse(self.text))
        return self._events

    def alias_lines(self, anchor):
        return [event.start_mark.line + 1 for event in self.events
                if isinstance(event, AliasEvent) and event.anchor == anchor]

    def content_end(self, mapping):
        """Index just past the last character written inside ``mapping`` (None when it is empty)."""
        events = self.events
        start = next(index for index, event in enumerate(events) if isinstance(event, MappingStartEvent)
                     and event.start_mark.index == mapping.start_mark.index)
        depth, flows, last = 0, [], None
        for event in events[start + 1:]:
            if isinstance(event, CollectionStartEvent):
                depth += 1
                flows.append(bool(event.flow_style))
            elif isinstance(event, CollectionEndEvent):
                if depth == 0:
                    return last
                depth -= 1
                if flows.pop():        # a flow collection ends at its bracket; a block one at the next token
                    last = event.end_mark.index
            elif isinstance(event, (ScalarEvent, AliasEvent)):
                last = event.end_mark.index
                if getattr(event, "style", None) in ("|", ">"):
                    last = self._block_scalar_end(event)
        return last

    def _block_scalar_end(self, event):
        """A block scalar's end: after its trailing blank lines only when it keeps them (``|+``)."""
        start, end = event.start_mark.index, event.end_mark.index
        indicator = _NODE_PROPERTIES.match(self.text, start, end).end()    # at the | or >
        if "+" in self.text[indicator + 1:indicator + 3]:
            return end
        return start + len(self.text[start:end].rstrip())

    def _inheritors(self, mapping, key, seen=None):
        """Mappings that see ``key`` of ``mapping`` through merge keys (directly or further down)."""
        seen = set() if seen is None else seen
        found = []
        for user in self.merged_into.get(id(mapping), []):
            if id(user) in seen or any(key_text(own) == key for own, _value in own_pairs(user)):
                continue
            seen.add(id(user))
            found.append(user)
            found.extend(self._inheritors(user, key, seen))
        return found

    def sharing(self, entry, key, value_node=None):
        """Why setting ``key`` in ``entry`` would change other places of the document too; None if it would not."""
        if value_node is not None and self.uses.get(id(value_node), 0) > 1:
            return ("its value is the anchor &%s (line %d), which is also used at line %s; changing it would change "
                    "those too. Give CT %d a value of its own (%s: <value> instead of the alias), then run again"
                    % (value_node.anchor, value_node.start_mark.line + 1,
                       ", ".join(str(line) for line in self.alias_lines(value_node.anchor)), entry.vmid, key))
        for parent, step, child in entry.steps:
            if self.uses.get(id(child), 0) > 1:
                return ("%s (line %d) is the anchor &%s, which is also used at line %s; changing it would change "
                        "those too" % ("CT %d's entry" % entry.vmid if child is entry.node else key_text(step)
                                       if not isinstance(step, int) else "item %d" % step,
                                       child.start_mark.line + 1, child.anchor,
                                       ", ".join(str(line) for line in self.alias_lines(child.anchor))))
        chain = [(parent, key_text(step)) for parent, step, _child in entry.steps if isinstance(parent, MappingNode)
                 and not isinstance(step, int)] + [(entry.node, key)]
        for mapping, name in chain:
            inheritors = self._inheritors(mapping, name)
            if inheritors:
                return ("%s (line %d) is the anchor &%s, merged (<<: *%s) at line %s without a %s of its own; "
                        "changing it would change those too. Set %s there, or edit by hand"
                        % ("CT %d's entry" % entry.vmid if mapping is entry.node else "the mapping",
                           mapping.start_mark.line + 1, mapping.anchor, mapping.anchor,
                           ", ".join(str(user.start_mark.line + 1) for user in inheritors), name, name))
        return None


def _describe_yaml_error(error):
    """``line L, column C: problem (context at line L, column C)``, from ruamel's marks (counted from 1)."""
    def at(mark):
        return "line %d, column %d" % (mark.line + 1, mark.column + 1)

    problem, context = error.problem, error.context
    if problem and error.problem_mark is not None:
        message = "%s: %s" % (at(error.problem_mark), problem)
        if context:
            message += " (%s%s)" % (context, " at %s" % at(error.context_mark) if error.context_mark else "")
        return message
    mark = error.context_mark or error.problem_mark
    what = " ".join(part for part in (context, problem) if part) or str(error)
    return "%s: %s" % (at(mark), what) if mark is not None else what


# --------------------------------------------------------------------------- edits

def scalar_span(text, node):
    """``(start, end)`` of a scalar's own characters (its anchor and tag left out)."""
    start, end = node.start_mark.index, node.end_mark.index
    properties = _NODE_PROPERTIES.match(text, start, end)
    return properties.end(), end


def _insertion(doc, mapping, items):
    """``(index, text)`` that adds ``items`` (``key: value`` strings) after the mapping's last key.

    Block mappings get one line per item, indented like the mapping's keys, after the line where the
    entry's last value ends (so a comment on that line stays on it, and comment lines after the entry
    stay after it). Flow mappings get ``, key: value`` after their last value.
    """
    text = doc.text
    last = doc.content_end(mapping)
    if mapping.flow_style:
        if last is None:
            return mapping.end_mark.index - 1, ", ".join(items)
        return last, "".join(", %s" % item for item in items)
    indent = mapping.value[0][0].start_mark.column
    line_end = text.find("\n", last - 1)
    if line_end < 0:
        point, newline = len(text), line_ending(text)
    elif line_end > 0 and text[line_end - 1] == "\r":
        point, newline = line_end - 1, "\r\n"
    else:
        point, newline = line_end, "\n"
    return point, "".join("%s%s%s" % (newline, " " * indent, item) for item in items)


class Change:
    """One key to set: memory/swap in MiB, or any other key to a scalar."""

    def __init__(self, key, desired):
        self.key = key
        self.desired = desired
        self.size = key in SIZE_KEYS


def changes_from(memory=None, swap=None, settings=None):
    """The Change list of the module's options; DeclaredError for values that cannot be set."""
    changes = []
    for key, value in (("memory", memory), ("swap", swap)):
        if value is None:
            continue
        try:
            mib = parse_mib(value)
        except ValueError as error:
            raise DeclaredError("%s: %s" % (key, error))
        if mib < SIZE_MINIMUM_MIB[key]:
            raise DeclaredError("%s: %d MiB is below PVE's minimum of %d MiB" % (key, mib, SIZE_MINIMUM_MIB[key]))
        changes.append(Change(key, mib))
    for key, value in (settings or {}).items():
        if key in SIZE_KEYS:
            raise DeclaredError("set: %s has an option of its own; use %s: %s" % (key, key, value))
        if key in ID_KEYS:
            raise DeclaredError("set: %s identifies the CT's entry and is not changed by declared_ct" % key)
        if not isinstance(value, (str, int, float, bool)):
            raise DeclaredError("set: %s must be a string, number or boolean, not %s" % (key, type(value).__name__))
        changes.append(Change(key, value))
    return changes


def _current_size(doc, entry, key, key_node, node):
    """The MiB a size key holds now; DeclaredError when it is not a size."""
    where = "%s of CT %d (%s.%s, line %d)" % (key, entry.vmid, entry.label, key, key_node.start_mark.line + 1)
    if not isinstance(node, ScalarNode):
        raise DeclaredError("%s is %s, not a size; it must be %s" % (where, _kind_of(node), SIZE_FORMS))
    value = doc.construct(node)
    if value is None:
        raise DeclaredError("%s is empty (null); it must be %s" % (where, SIZE_FORMS))
    try:
        return parse_mib(value)
    except ValueError as error:
        raise DeclaredError("%s: %s" % (where, error))


class Plan:
    """What an edit of one entry does: the new text, and the entry before and after."""

    def __init__(self, entry, before, after, new_text, changed_keys):
        self.entry = entry
        self.before = before
        self.after = after
        self.new_text = new_text
        self.changed_keys = changed_keys

    @property
    def changed(self):
        return bool(self.changed_keys)


def _holds(doc, entry, change, key_node, node):
    """Whether ``node`` (the entry's value for the change's key, its own or merged) already is what is asked."""
    if change.size:
        return _current_size(doc, entry, change.key, key_node, node) == change.desired
    if not isinstance(node, ScalarNode):
        raise DeclaredError("%s of CT %d (%s.%s, line %d) is %s; set only changes scalar values"
                            % (change.key, entry.vmid, entry.label, change.key, key_node.start_mark.line + 1,
                               _kind_of(node)))
    current = doc.construct(node)
    if node.style in ("'", '"'):            # quoted: the text is what counts
        return current == scalar_text(change.desired)
    return _same_scalar(current, change.desired)


def _rewrite(change, node):
    """``(new characters of the scalar, the text YAML will read from them)``, in the scalar's style."""
    if not change.size:
        return render(change.desired, node.style), scalar_text(change.desired)
    if node.tag != STR_TAG:                 # 1024, or !!int "1024"
        text = str(change.desired)
        return (quote(text, node.style) if node.style else text), text
    text = format_like(change.desired, node.value)      # '1G' -> '2G', "1024" -> "2048"
    return (quote(text, node.style) if node.style else render(text)), text


def plan_edit(doc, vmid, changes, path=None):
    """The Plan that sets ``changes`` in CT ``vmid``'s entry of ``doc``; the document itself is not changed."""
    entry = doc.entry(vmid, path)
    before = doc.construct(entry.node)
    own = {}
    for key, value in own_pairs(entry.node):
        own.setdefault(key_text(key), []).append((key, value))
    effective = effective_pairs(entry.node)
    splices, inserts, expected_text, changed_keys = [], [], {}, []
    for change in changes:
        key = change.key
        pairs = own.get(key, [])
        if len(pairs) > 1:
            raise DeclaredError("CT %d's entry (%s, line %d) has the key %s %d times (lines %s); remove the duplicate"
                                % (vmid, entry.label, entry.line, key, len(pairs),
                                   ", ".join(str(pair[0].start_mark.line + 1) for pair in pairs)))
        key_node, node = pairs[0] if pairs else effective.get(key, (None, None, None))[:2]
        if node is not None and _holds(doc, entry, change, key_node, node):
            continue
        if pairs:                           # the entry's own value: rewrite its characters
            if node.style in ("|", ">"):
                raise DeclaredError("%s of CT %d (line %d) is a block scalar (%s); declared_ct does not rewrite those"
                                    % (key, vmid, key_node.start_mark.line + 1, node.style))
            problem = doc.sharing(entry, key, node)
            if problem:
                raise DeclaredError("%s of CT %d cannot be changed alone: %s." % (key, vmid, problem))
            start, end = scalar_span(doc.text, node)
            new, expected_text[id(node)] = _rewrite(change, node)
            splices.append((start, end, new))
        else:                               # absent, or only merged in: add a key of its own
            problem = doc.sharing(entry, key)
            if problem:
                raise DeclaredError("%s of CT %d cannot be added alone: %s." % (key, vmid, problem))
            inserts.append("%s: %s" % (render(key), render(change.desired)))
        changed_keys.append(key)
    if not changed_keys:
        return Plan(entry, before, before, doc.text, [])
    if inserts:
        point, addition = _insertion(doc, entry.node, inserts)
        splices.append((point, point, addition))
    new_text = doc.text
    for start, end, new in sorted(splices, reverse=True):
        new_text = new_text[:start] + new + new_text[end:]
    after = _verify(doc, entry, new_text, changes, changed_keys, expected_text, len(inserts), path)
    return Plan(entry, before, after, new_text, changed_keys)


def _verify(doc, entry, new_text, changes, changed_keys, expected_text, inserted, path):
    """The entry after the edit, once the edited text is shown to say exactly what was meant."""
    def refuse(why):
        raise DeclaredError("declared_ct's own check of the edit failed (%s), so %s was left untouched; please "
                            "report this with the file" % (why, doc.name))

    try:
        new_doc = Document(new_text, doc.name)
    except DeclaredError as error:
        refuse("the edited text does not parse: %s" % error)
    counterpart = _compare(doc.root, new_doc.root, expected_text, {id(entry.node): inserted}, refuse)
    new_entry = new_doc.entry(entry.vmid, path)
    if counterpart.get(id(entry.node)) is not new_entry.node:
        refuse("CT %d's entry moved" % entry.vmid)
    before, after = doc.construct(entry.node), new_doc.construct(new_entry.node)
    for change in changes:
        if change.key not in changed_keys:
            continue
        value = after.get(change.key)
        if change.size:
            try:
                ok = parse_mib(value) == change.desired
            except ValueError:
                ok = False
        else:
            ok = scalar_text(value) == scalar_text(change.desired)
        if not ok:
            refuse("%s reads back as %r" % (change.key, value))
    untouched = [key for key in set(before) | set(after) if key not in changed_keys and before.get(key) != after.get(key)]
    if untouched:
        refuse("%s changed too" % ", ".join(sorted(untouched)))
    return after


def _compare(old, new, expected_text, inserted, refuse):
    """Node-by-node comparison of two documents; returns ``{id(old node): new node}``.

    Scalars in ``expected_text`` must hold that text; mappings in ``inserted`` must have that many more
    pairs at their end; everything else (tags, values, styles, anchors, aliases) must be equal.
    """
    counterpart = {}
    stack = [(old, new)]
    while stack:
        a, b = stack.pop()
        if id(a) in counterpart:
            if counterpart[id(a)] is not b:
                refuse("an alias changed (line %d)" % (a.start_mark.line + 1))
            continue
        counterpart[id(a)] = b
        if type(a) is not type(b) or a.anchor != b.anchor:
            refuse("the node at line %d changed kind or anchor" % (a.start_mark.line + 1))
        if isinstance(a, ScalarNode):
            if id(a) in expected_text:
                if b.value != expected_text[id(a)]:
                    refuse("line %d holds %r, not %r" % (a.start_mark.line + 1, b.value, expected_text[id(a)]))
            elif (a.tag, a.value, a.style) != (b.tag, b.value, b.style):
                refuse("line %d changed: %r became %r" % (a.start_mark.line + 1, a.value, b.value))
            continue
        if a.tag != b.tag:
            refuse("the tag at line %d changed" % (a.start_mark.line + 1))
        extra = inserted.get(id(a), 0)
        if len(b.value) != len(a.value) + extra:
            refuse("the collection at line %d has %d items, not %d"
                   % (a.start_mark.line + 1, len(b.value), len(a.value) + extra))
        if isinstance(a, MappingNode):
            for (key_a, value_a), (key_b, value_b) in zip(a.value, b.value):
                stack.extend([(value_a, value_b), (key_a, key_b)])
        else:
            stack.extend(zip(a.value, b.value))
    return counterpart


def entry_summary(doc, entry, values=None):
    """What the module returns about one entry: where it is, its values, memory and swap in MiB."""
    values = doc.construct(entry.node) if values is None else values
    summary = {"vmid": entry.vmid, "path_found": entry.label, "line": entry.line, "entry": values}
    for key in SIZE_KEYS:
        try:
            summary["%s_mb" % key] = parse_mib(values[key]) if values.get(key) is not None else None
        except ValueError:
            summary["%s_mb" % key] = None
    return summary
