"""VM nodes (enva_lab.vmimage, enva_lab.vmnode): the image's PVE shape and qemu's command line, without a VM."""

from enva_lab import settings, vmimage, vmnode


def test_configure_makes_a_pve_shaped_node(tmp_path):
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system" / "multi-user.target.wants").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "unbound.service").symlink_to("/x")
    (root / "var" / "lib" / "lxc").mkdir(parents=True)
    vmimage.configure(root, "ssh-ed25519 AAAA enva-lab-node\n")
    unit = (root / "lib" / "systemd" / "system" / "pve-container@.service").read_text()
    assert "ExecStart=/usr/bin/lxc-start -F -n %i\n" in unit and "Delegate=yes" in unit
    assert str((root / "etc" / "pve").readlink()) == "/var/lib/enva-lab/etc/pve"
    assert str((root / "var" / "lib" / "lxc").readlink()) == "/var/lib/enva-lab/lxc"
    assert (root / "root" / ".ssh" / "authorized_keys").read_text() == "ssh-ed25519 AAAA enva-lab-node\n"
    assert not (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "unbound.service").is_symlink()
    assert str((root / "etc" / "systemd" / "system" / "unbound.service").readlink()) == "/dev/null"
    assert (root / "etc" / "hostname").read_text() == settings.NODE + "\n"
    assert "address 10.0.2.15/24" in (root / "etc" / "network" / "interfaces").read_text()
    assert (root / "etc" / "enva-lab-node").exists()


def test_qemu_listens_on_loopback_only_and_never_writes_the_image(tmp_path):
    paths = vmimage.Paths(tmp_path)
    argv = vmnode.qemu_argv(paths, "tcg", 2222, 8443, tmp_path / "console.log", tmp_path / "pid", "pve1")
    text = " ".join(argv)
    assert "-accel tcg" in text and "-smp 2" in text and "-cpu max" in text
    assert "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8443-:8006" in text
    assert "file=%s,if=virtio,format=raw,snapshot=on" % paths.image in text
    assert "net.ifnames=0" in argv[argv.index("-append") + 1]
    assert "tap" not in text and "bridge" not in text


def test_ssh_pins_the_node_host_key(tmp_path):
    paths = vmimage.Paths(tmp_path)
    argv = vmnode.ssh_argv(paths, 2222, ["true"])
    assert argv[-2:] == ["root@127.0.0.1", "true"]
    assert "StrictHostKeyChecking=yes" in argv and "HostKeyAlias=enva-node" in argv and "BatchMode=yes" in argv


def test_console_tail_is_the_end(tmp_path):
    log = tmp_path / "console.log"
    log.write_text("".join("line %d\r\n" % number for number in range(100)))
    assert vmnode.console_tail(log, 3) == "line 97\nline 98\nline 99"
    assert vmnode.console_tail(tmp_path / "missing") == "(no console output)"


def test_a_half_built_image_is_not_current(tmp_path):
    paths = vmimage.Paths(tmp_path)
    paths.node.mkdir()
    paths.image.write_text("")
    assert not vmimage.is_current(paths)


def test_node_sample_differs_from_the_sample_only_in_ct_2017s_size():
    lab = settings.CHECKOUT / "tests" / "lab"
    sample = (lab / "enva.yaml").read_text().splitlines()
    node = (lab / "enva-node.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(sample, node) if a != b]
    assert len(sample) + 1 == len(node)
    assert any("memory: 128" in b for _a, b in changed)


def test_the_flood_raises_an_ssh_sessions_open_file_limit(monkeypatch):
    import resource                      # pylint: disable=import-outside-toplevel
    from enva_lab import incident        # pylint: disable=import-outside-toplevel
    limits = {"now": (1024, 524288)}
    monkeypatch.setattr(resource, "getrlimit", lambda _kind: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _kind, value: limits.update(now=value))
    assert incident._room_for_sockets(4096) == 4096 and limits["now"] == (4224, 524288)
    limits["now"] = (1024, 1024)         # a hard limit that cannot be raised: fewer sockets kept open
    assert incident._room_for_sockets(4096) == 896
