#!/bin/sh
# Build Edgeward's Debian packages: edge-enforcer, edge-control and python3-edgeward (all
# Architecture: all) from the source package "edgeward", for Debian 12 (bookworm).
#
#   packaging/build-debs.sh [--no-lint] [OUTDIR]        (OUTDIR default: dist/deb)
#
# The build runs out of tree, in a temporary copy of the working tree (the files git tracks plus
# untracked ones it does not ignore), with packaging/debian/ as debian/ and a debian/changelog
# generated from pyproject.toml's version; the working tree is left as it was. The unit tests
# run during the build on Debian's own python3-* libraries (DEB_BUILD_OPTIONS=nocheck skips
# them). lintian then checks the result and fails the build on an error (--no-lint skips it).
# OUTDIR receives the .deb files, and the source package with its .changes and .buildinfo.
#
# Build dependencies: apt-get install $(grep -v '^#' packaging/build-deps.txt)
# Environment: EDGEWARD_DEB_VERSION overrides the version; DEBFULLNAME/DEBEMAIL are not used
# (the changelog is signed by the Maintainer in debian/control).
set -eu

lint=1
outdir=""
for arg in "$@"; do
    case "$arg" in
        --no-lint) lint=0 ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "build-debs.sh: unknown option $arg" >&2; exit 2 ;;
        *) [ -z "$outdir" ] || { echo "build-debs.sh: one OUTDIR only" >&2; exit 2; }
           outdir="$arg" ;;
    esac
done

# Debian's own tools and interpreters only: never a virtual environment's or pyenv's python.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV PYENV_VERSION 2>/dev/null || true

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
outdir=${outdir:-$root/dist/deb}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

missing=""
for tool in dpkg-buildpackage dh debconf-updatepo python3; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ "$lint" = 1 ] && ! command -v lintian >/dev/null 2>&1; then
    missing="$missing lintian"
fi
if [ -n "$missing" ]; then
    echo "build-debs.sh: missing:$missing; install the build dependencies:" >&2
    echo "  apt-get install \$(grep -v '^#' packaging/build-deps.txt)" >&2
    exit 1
fi

# Debian's version from pyproject.toml's PEP 440 version (1.2.0rc1 -> 1.2.0~rc1, see debversion.py).
if [ -n "${EDGEWARD_DEB_VERSION:-}" ]; then
    version=$EDGEWARD_DEB_VERSION
else
    version=$(/usr/bin/python3 "$here/debversion.py" "$root/pyproject.toml")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
src="$work/edgeward-$version"
mkdir -p "$src"

# The tree as git sees it (tracked and untracked-not-ignored files that exist), else all of it
# but the usual build, cache and virtual environment directories.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$root" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$root" && xargs -0 -r sh -c \
            'for f; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\0" "$f"; fi; done' sh) |
        (cd "$root" && tar --null --no-recursion -T - -cf -) | tar -C "$src" -xf -
    commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || true)
    epoch=$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)
else
    tar -C "$root" --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude='.*_cache' -cf - . |
        tar -C "$src" -xf -
    commit=""
    epoch=""
fi
rm -rf "$src/debian"
cp -a "$here/debian" "$src/debian"
rm -rf "$src/debian/man" "$src/debian/po/templates.pot"

# debian/changelog, generated: one entry for this version, signed by the Maintainer.
maintainer=$(sed -n 's/^Maintainer: *//p' "$src/debian/control")
epoch=${SOURCE_DATE_EPOCH:-${epoch:-$(date +%s)}}
{
    echo "edgeward ($version) bookworm; urgency=medium"
    echo
    echo "  * Edgeward $version, built from pyproject.toml's version${commit:+ (git $commit)}."
    echo
    echo " -- $maintainer  $(LC_ALL=C date -R -u -d "@$epoch")"
} > "$src/debian/changelog"

# debian/po/templates.pot from the debconf templates.
(cd "$src" && debconf-updatepo >/dev/null)

echo "build-debs.sh: building edgeward $version in $src" >&2
(cd "$src" && dpkg-buildpackage --build=source,all --no-sign)

changes="$work/edgeward_${version}_source.changes"
[ -e "$changes" ] || changes=$(ls "$work"/edgeward_"$version"_*.changes | head -n 1)

if [ "$lint" = 1 ]; then
    echo "build-debs.sh: lintian $changes" >&2
    lintian --display-info --fail-on error "$changes"
fi

for f in "$work"/*.deb "$work"/*.dsc "$work"/*.tar.* "$work"/*.buildinfo "$work"/*.changes; do
    [ -e "$f" ] && cp -f "$f" "$outdir/"
done
echo "build-debs.sh: packages in $outdir:" >&2
ls -1 "$outdir"/*_"$version"_all.deb
