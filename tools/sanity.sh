#!/usr/bin/env bash
# ansible-test sanity from a generated ansible_collections/enva/pve tree
# (a copy of the checkout's tracked and unignored files), never by moving the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
root=$top/build/sanity
dest=$root/ansible_collections/enva/pve
# ansible-test bootstraps pip in its venvs with a script from a host we cannot
# reach; tools/get_pip_offline.py does the same job through PyPI.
# The host's own python3 (3.11 on Debian 12, 3.13 on Debian 13), the one the .venv was made with.
python_version=$("$top/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pip_version=$("$top/.venv/bin/python" -c '
import sys
from ansible_test._internal.python_requirements import get_venv_packages
class Py:
    version = sys.argv[1]
print(get_venv_packages(Py())["pip"])' "$python_version")
bootstrap=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
if ! cmp -s tools/get_pip_offline.py "$bootstrap"; then
  mkdir -p "$(dirname "$bootstrap")"
  cp tools/get_pip_offline.py "$bootstrap"
fi

rm -rf "$root"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard \
  | rsync -a --from0 --ignore-missing-args --files-from=- ./ "$dest/"
# ansible-test lists files with git when it finds a repository: give the copy its own.
git -C "$dest" init -q
git -C "$dest" add -A
cd "$dest"
exec "$top/.venv/bin/ansible-test" sanity --venv --python "$python_version" --color no "$@"
