#!/usr/bin/env bash
# A STOCK Debian VM, to try this project as a new user would (not the lab's prepared node image):
# debootstrap RELEASE (trixie by default) with linux-image-cloud-amd64, systemd, sshd, AppArmor as Debian
# installs it (enabled, profiles enforced), git, make, python3; nothing masked, no profile disabled.
#
#   tools/stock-vm.sh build [--release trixie|bookworm]   build the image once into /var/cache/enva-lab/stock-RELEASE
#   tools/stock-vm.sh up [--release R] [--mem MiB] [--smp N] boot it (qemu -accel tcg, user networking, SSH on
#                                                          127.0.0.1:PORT), a throw-away snapshot of the image
#   tools/stock-vm.sh ssh [--release R] -- CMD...          a command as root in it
#   tools/stock-vm.sh copy [--release R] [--ref REF]      a fresh clone of this checkout's REF (HEAD) to /root/enva
#   tools/stock-vm.sh down [--release R]                  stop it by PID
#
# The guest reaches Debian's mirror and PyPI (make setup needs both) through qemu's user networking, the
# same way debootstrap on this host reaches the mirror (the host's own network; qemu's NAT, its DHCP and DNS
# at 10.0.2.2/10.0.2.3). Nothing else is forwarded in but SSH on 127.0.0.1. Run it, as the lab's VM nodes,
# holding the VM lock (for the CPU: two TCG guests on two cores slow each other down):
# flock /run/enva-lab-vm.lock tools/stock-vm.sh up ...
set -euo pipefail
cd "$(dirname "$0")/.."

release=trixie mem=4096 smp=2 ref=HEAD
cmd=${1:-}; shift || true
while (($#)); do
  case $1 in
    --release) release=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "stock-vm: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $release in trixie|bookworm) ;; *) echo "stock-vm: --release is trixie or bookworm, not $release" >&2; exit 2 ;; esac

cache=${ENVA_LAB_CACHE:-/var/cache/enva-lab}/stock-$release
# Its own state directory, not the lab's VM nodes' (/var/lib/enva-lab-vm): the lab's tests check that nothing
# is left there, and the stock VM is not the lab's.
run=/var/lib/enva-stock-vm/$release
mirror=http://deb.debian.org/debian
packages=linux-image-cloud-amd64,systemd-sysv,udev,initramfs-tools,dbus,openssh-server,apparmor,git,make,python3,ifupdown,isc-dhcp-client,ca-certificates,netbase,kmod,procps,less
recipe="$release $packages size=16G v1"
say() { printf 'stock-vm: %s\n' "$*"; }
die() { printf 'stock-vm: error: %s\n' "$*" >&2; exit 1; }
ssh_vm() {
  ssh -i "$cache/id_ed25519" -p "$(cat "$run/ssh_port")" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 -o ServerAliveInterval=15 root@127.0.0.1 "$@"
}

build() {
  if [[ -f $cache/stamp && $(head -1 "$cache/stamp") == "$recipe" ]]; then say "image current: $cache"; return; fi
  [[ $(id -u) == 0 ]] || die "build as root"
  local t0=$SECONDS build=$cache.build
  rm -rf "$build"; mkdir -p "$build/root" "${cache%/*}/stock-debs"
  say "debootstrap $release with $packages"
  debootstrap --include="$packages" --cache-dir "${cache%/*}/stock-debs" "$release" "$build/root" "$mirror" \
    >"$build/debootstrap.log" 2>&1 || { tail -20 "$build/debootstrap.log"; die "debootstrap failed"; }
  local root=$build/root
  echo "enva-stock" >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tenva-stock\n' >"$root/etc/hosts"
  echo "/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1" >"$root/etc/fstab"
  printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$root/etc/network/interfaces"
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://security.debian.org/debian-security %s-security main\n' \
    "$mirror" "$release" "$mirror" "$release" "$release" >"$root/etc/apt/sources.list"
  ssh-keygen -q -t ed25519 -N "" -C enva-stock -f "$build/id_ed25519"
  install -d -m 700 "$root/root/.ssh"; install -m 600 "$build/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
  : >"$root/etc/machine-id"
  local kernels=("$root"/boot/vmlinuz-*) initrds=("$root"/boot/initrd.img-*)
  local kernel=${kernels[-1]}
  cp "$kernel" "$build/vmlinuz"
  cp "${initrds[-1]}" "$build/initrd.img"
  rm -rf "$root/var/cache/apt/archives/"*.deb
  mkfs.ext4 -q -F -L enva-stock -d "$root" "$build/disk.img" 16G
  rm -rf "$root"
  printf '%s\nbuilt in %s s, kernel %s\n' "$recipe" "$((SECONDS - t0))" "${kernel##*/}" >"$build/stamp"
  rm -rf "$cache"; mv "$build" "$cache"
  say "built $cache in $((SECONDS - t0)) s"
}

up() {
  [[ -f $cache/stamp ]] || die "no image; tools/stock-vm.sh build --release $release"
  if [[ -f $run/qemu.pid ]] && kill -0 "$(cat "$run/qemu.pid")" 2>/dev/null; then say "already up"; return; fi
  mkdir -p "$run"
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "$port" >"$run/ssh_port"
  local t0=$SECONDS
  qemu-system-x86_64 -name "enva-stock-$release" -machine q35 -accel tcg -cpu max -smp "$smp" -m "$mem" \
    -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1" \
    -drive "file=$cache/disk.img,if=virtio,format=raw,snapshot=on" \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
    -display none -monitor none -serial "file:$run/console.log" -no-reboot -daemonize -pidfile "$run/qemu.pid"
  until ssh_vm true 2>/dev/null; do
    kill -0 "$(cat "$run/qemu.pid")" 2>/dev/null || { tail -20 "$run/console.log"; die "qemu exited"; }
    ((SECONDS - t0 < 300)) || { tail -20 "$run/console.log"; die "no SSH after 300 s"; }
    sleep 3
  done
  say "up: ssh on 127.0.0.1:$port after $((SECONDS - t0)) s (tcg, $smp vCPUs, $mem MiB); kernel $(ssh_vm uname -r)"
  # Where this host reaches HTTPS (PyPI) through an inspecting proxy, the guest trusts the same local CAs
  # this host added (/usr/local/share/ca-certificates); on a machine without them nothing is copied.
  local cas=(/usr/local/share/ca-certificates/*.crt)
  if [[ -e ${cas[0]} ]]; then
    tar -C /usr/local/share/ca-certificates -cf - "${cas[@]##*/}" \
      | ssh_vm 'tar -C /usr/local/share/ca-certificates -xf - && update-ca-certificates >/dev/null 2>&1'
    say "the guest trusts this host's local CAs too (${cas[*]##*/})"
  fi
}

copy() {
  local tmp; tmp=$(mktemp -d)
  git clone -q --no-local . "$tmp/enva"; git -C "$tmp/enva" checkout -q "$(git rev-parse "$ref")"
  # the checkout is replaced; its .venv and .cache (make setup's) stay, as after a git pull
  tar -C "$tmp" -cf - enva | ssh_vm 'mkdir -p /root/enva && find /root/enva -mindepth 1 -maxdepth 1 ! -name .venv \
    ! -name .cache -exec rm -rf {} + && tar -C /root -xf -'
  rm -rf "$tmp"
  say "copied $(git rev-parse --short "$ref") to /root/enva"
}

down() {
  if [[ -f $run/qemu.pid ]]; then
    local pid; pid=$(cat "$run/qemu.pid")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done; fi
    say "qemu $pid stopped"
  fi
  rm -rf "$run"
}

case $cmd in
  build) build ;;
  up) up ;;
  ssh) ssh_vm "$@" ;;
  copy) copy ;;
  down) down ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
