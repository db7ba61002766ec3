#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: declared_ct
short_description: Read and edit one CT's entry in a site's declared YAML file, keeping the rest byte for byte
version_added: "0.1.0"
description:
  - Reads, and changes when asked, the entry of one Proxmox VE CT in the YAML file a site declares its CTs in
    (such as C(enva.yaml) with C(memory), C(swap) and C(onboot) per CT), so that the declared source of truth
    follows a change made on the live CT. Without O(vmid) it reads every CT of the file.
  - "The entries are found by VMID in a list of mappings with a C(vmid), C(ctid) or C(id) key (in that order of
    preference; the VMID an integer or a string of digits; keys merged with C(<<: *defaults) count), or in a
    mapping keyed by VMID (integer or string keys). The list or mapping can be the whole document or sit
    under keys; O(path) names it, else it is searched for (8 levels deep)."
  - Only the characters of the values that change are rewritten, in the style they had (C(1024) stays plain,
    C("1024") keeps its double quotes, C('1G') becomes C('2G'), an anchor or tag before the value stays).
  - "A key the entry does not have (or only inherits through a merge key) is added as one line after the
    entry's last value, indented like its keys (C(, key: value) in a flow mapping)."
  - Comments, key order, indentation, flow style, anchors and aliases, CRLF line ends, a UTF-8 BOM and a
    missing final newline stay as they were.
  - The edit is ruamel.yaml's round-trip (the file loaded, changed, dumped with its own indentation), checked
    byte for byte before it is written. Only the characters of the edited values and the added keys may
    differ from the file. Where ruamel writes other lines of the file differently (a comment before C(---)
    or after a merge key, C(!!int "1024"), a flow collection over several lines), the edit it made is carried
    over onto the file's text, checked the same way, and read back, which must give the edited document. The
    result is written to a temporary file in the same directory and renamed over the file,
    which keeps the file's mode and owner. If the check fails, the file is left untouched and the message
    names the line.
  - Refused with a message and the file untouched are an unknown VMID, a VMID declared twice, a VMID found
    in more than one list (set O(path)), a file that is not YAML (with the line and column), a value of the
    wrong kind (C(memory) a mapping, a list or a string that is not a size), a value that is an anchor other
    entries also use or an entry that other entries merge (editing it would change them too), and a file that
    cannot be read or written.
author:
  - enva.pve developers (@enva)
requirements:
  - ruamel.yaml (on the host that runs the task, normally the controller)
options:
  file:
    description:
      - The declared YAML file (UTF-8, one document). A symbolic link is followed, and the file it points
        to is edited.
    type: path
    required: true
  vmid:
    description:
      - The CT whose entry to read or change.
      - Omitted means read every CT of the file into RV(cts). O(memory), O(swap) and O(set) then cannot be
        given.
    type: int
  path:
    description:
      - Where the CT list or mapping is, as dotted keys from the top of the document, such as V(containers),
        V(lxc) or V(pve.cts).
      - Omitted means it is searched for. A VMID found in more than one list is then refused as ambiguous.
    type: str
  memory:
    description:
      - The CT's memory in MiB. An integer is MiB. A string may carry a binary suffix C(K), C(M), C(G) or C(T),
        optionally followed by C(B) or C(iB) (V(2G), V(2GB) and V(2GiB) all mean 2048 MiB). The result
        must be a whole number of MiB, and at least 16 (PVE's minimum).
      - "A value written with a suffix in the file keeps it when the new size is a whole number of that unit
        (C(1G) becomes C(2G)); otherwise it is written in C(M)."
      - "The current value is compared in MiB, so C(memory: 2G) in the file and O(memory=2048) are equal."
    type: raw
  swap:
    description:
      - The CT's swap in MiB, as O(memory); at least 0.
    type: raw
  set:
    description:
      - Other keys of the entry to set to a scalar (string, number or boolean), such as C(onboot) or C(cores).
      - >-
        The value keeps the style of the one it replaces. A quoted value stays quoted, and its text is
        compared, so C(onboot: "1") equals O(set={onboot: 1}). A plain value stays plain when the new text
        reads back as the same type under YAML 1.2 and 1.1. Otherwise it is single-quoted, so strings stay
        strings (C('yes'), C('0755')).
      - C(memory) and C(swap) have options of their own, and C(vmid), C(ctid) and C(id) cannot be changed.
    type: dict
  backup:
    description:
      - Before changing the file, keep a copy of it next to it with a timestamp in its name
        (C(enva.yaml.12345.2026-11-24@10:31:02~)); its path is returned in RV(backup_file).
    type: bool
    default: false
extends_documentation_fragment:
  - enva.pve.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change, with the diff, and writes nothing.
  diff_mode:
    support: full
    details:
      - The whole file before and after, which C(--diff) prints as a unified diff.
  idempotent:
    support: full
    details:
      - Values are compared as the file means them (sizes in MiB), so a second run changes nothing.
notes:
  - Runs where the file is, normally on the controller (C(delegate_to=localhost)).
  - The file must hold one YAML document; a file of several (separated by C(---)) is refused.
  - Run tasks that edit the same file one after another (C(throttle=1) or C(run_once) with a loop). If the
    file changes between reading and writing, the task fails and nothing is written.
seealso:
  - module: enva.pve.lxc_memory
"""

EXAMPLES = r"""
- name: Raise CT 2017's declared memory together with the live one
  enva.pve.declared_ct:
    file: "{{ enva_yaml_path }}"
    vmid: 2017
    memory: 2048
    backup: true
  delegate_to: localhost
  register: declared

- name: Say what the file says now
  ansible.builtin.debug:
    msg: "{{ declared.path_found }}: memory {{ declared.entry.before.memory }} -> {{ declared.memory_mb }} MiB"

- name: Memory, swap and onboot of a CT in a mapping keyed by VMID under pve.cts
  enva.pve.declared_ct:
    file: /srv/site/enva.yaml
    path: pve.cts
    vmid: 2017
    memory: 2G
    swap: 1G
    set:
      onboot: 1
  delegate_to: localhost

- name: Read every declared CT, for a drift check against the live configs
  enva.pve.declared_ct:
    file: "{{ enva_yaml_path }}"
  delegate_to: localhost
  run_once: true
  register: declared_cts

- name: Declared memory of CT 2018
  ansible.builtin.debug:
    msg: "{{ declared_cts.cts['2018'].memory_mb }}"
"""

RETURN = r"""
file:
  description: The file read (as given).
  returned: always
  type: str
  sample: /srv/site/enva.yaml
vmid:
  description: The CT asked for.
  returned: when O(vmid) is given
  type: int
  sample: 2017
path_found:
  description: Where the CT's entry is, as keys and list indexes from the top of the document.
  returned: when O(vmid) is given
  type: str
  sample: containers[0]
line:
  description: The line (from 1) where the entry starts.
  returned: when O(vmid) is given
  type: int
  sample: 12
entry:
  description:
    - The whole entry as YAML reads it, before and after the task (after is what the file would say in
      check mode). Merge keys are applied.
  returned: when O(vmid) is given
  type: dict
  contains:
    before:
      description: The entry before.
      type: dict
    after:
      description: The entry after.
      type: dict
  sample:
    before: {vmid: 2017, hostname: haproxy, memory: 1024, swap: 1024, onboot: 1}
    after: {vmid: 2017, hostname: haproxy, memory: 2048, swap: 1024, onboot: 1}
changed_keys:
  description: The keys of the entry that changed (or would in check mode).
  returned: when O(vmid) is given
  type: list
  elements: str
  sample: [memory]
memory_mb:
  description: The entry's memory in MiB after the task, null when it has none or it is not a size.
  returned: when O(vmid) is given
  type: int
  sample: 2048
swap_mb:
  description: The entry's swap in MiB after the task, null when it has none or it is not a size.
  returned: when O(vmid) is given
  type: int
  sample: 1024
diff:
  description: The whole file before and after (text), with headers, as C(--diff) prints it.
  returned: when O(vmid) is given
  type: dict
  contains:
    before:
      description: The file's text before.
      type: str
    after:
      description: The file's text after.
      type: str
    before_header:
      description: The file's path.
      type: str
    after_header:
      description: The file's path.
      type: str
backup_file:
  description: The copy of the file made before it was changed.
  returned: when O(backup=true) and the file changed
  type: str
  sample: /srv/site/enva.yaml.41234.2026-11-24@10:31:02~
cts:
  description:
    - Every CT the file declares, keyed by VMID (a string). Each has C(vmid), C(path_found), C(line),
      C(entry) (the whole entry as YAML reads it), C(memory_mb) and C(swap_mb) (null when absent or not
      a size; a warning names the latter).
  returned: when O(vmid) is omitted
  type: dict
  sample:
    "2017": {vmid: 2017, path_found: "containers[0]", line: 12, memory_mb: 1024, swap_mb: 1024,
             entry: {vmid: 2017, hostname: haproxy, memory: 1024, swap: 1024, onboot: 1}}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.enva.pve.plugins.module_utils import declared_yaml
from ansible_collections.enva.pve.plugins.module_utils.declared_yaml import DeclaredError


def read_file(path):
    """The file's bytes; DeclaredError that says what is wrong when they cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise DeclaredError("%s is a directory; file must be the declared YAML file itself (such as enva.yaml)"
                            % path)
    except FileNotFoundError:
        raise DeclaredError("%s does not exist; file must be the site's declared YAML file (such as enva.yaml)"
                            % path)
    except (IOError, OSError) as error:
        raise DeclaredError("cannot read %s: %s; run the task as a user that can read it" % (path, error.strerror))


def write_file(module, path, data, original, backup):
    """Replace the file at ``path`` (a real path) by ``data`` atomically; the backup's path or None."""
    if read_file(path) != original:
        raise DeclaredError("%s changed while this task edited it, so nothing was written; run the task again"
                            % path)
    backup_file = module.backup_local(path) if backup else None
    directory = os.path.dirname(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except (IOError, OSError) as error:
        raise DeclaredError("cannot write %s: %s in %s; the file is replaced through a temporary file in its "
                            "directory, so the directory must be writable" % (path, error.strerror, directory))
    module.add_cleanup_file(temporary)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    module.atomic_move(temporary, path)
    return backup_file


def read_all(doc, path):
    """Every declared CT (``{vmid string: summary}``) and warnings about sizes that are not sizes."""
    cts, warnings = {}, []
    for entry in doc.unique_entries(path):
        summary = declared_yaml.entry_summary(doc, entry)
        cts[str(entry.vmid)] = summary
        for key in declared_yaml.SIZE_KEYS:
            value = summary["entry"].get(key)
            if value is not None and summary["%s_mb" % key] is None:
                warnings.append("%s: CT %d (%s) has %s: %r, which is not a size in MiB"
                                % (doc.name, entry.vmid, entry.label, key, value))
    return cts, warnings


def run(module):
    """The module's result; DeclaredError for anything the person running it must fix."""
    params = module.params
    name = params["file"]
    changes = declared_yaml.changes_from(params["memory"], params["swap"], params["set"])
    if params["vmid"] is None and changes:
        raise DeclaredError("memory, swap and set change one CT's entry: give its vmid")
    real_path = os.path.realpath(name)
    original = read_file(real_path)
    text, bom = declared_yaml.decode(original, name)
    doc = declared_yaml.Document(text, name)
    if params["vmid"] is None:
        cts, warnings = read_all(doc, params["path"])
        for warning in warnings:
            module.warn(warning)
        return {"changed": False, "file": name, "cts": cts}

    plan = declared_yaml.plan_edit(doc, params["vmid"], changes, params["path"])
    summary = declared_yaml.entry_summary(doc, plan.entry, plan.after)
    result = {
        "changed": plan.changed,
        "file": name,
        "vmid": params["vmid"],
        "path_found": summary["path_found"],
        "line": summary["line"],
        "entry": {"before": plan.before, "after": plan.after},
        "changed_keys": plan.changed_keys,
        "memory_mb": summary["memory_mb"],
        "swap_mb": summary["swap_mb"],
        "diff": {"before": text, "after": plan.new_text, "before_header": name, "after_header": name},
    }
    if plan.changed and not module.check_mode:
        backup_file = write_file(module, real_path, declared_yaml.encode(plan.new_text, bom), original,
                                 params["backup"])
        if backup_file:
            result["backup_file"] = backup_file
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            file=dict(type="path", required=True),
            vmid=dict(type="int"),
            path=dict(type="str"),
            memory=dict(type="raw"),
            swap=dict(type="raw"),
            set=dict(type="dict"),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not declared_yaml.HAS_RUAMEL:
        module.fail_json(msg=missing_required_lib("ruamel.yaml"), exception=declared_yaml.RUAMEL_IMPORT_ERROR)
    try:
        result = run(module)
    except DeclaredError as error:
        module.fail_json(msg=str(error), changed=False, file=module.params["file"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
