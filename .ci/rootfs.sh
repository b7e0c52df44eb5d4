# Shared by .ci/build-postgres-image and .ci/build-python-image (sourced): the steps of
# making an image's root filesystem from this machine's own files.

# rootfs_skeleton ROOT: Debian's merged /usr, the top-level links first, so that what
# is unpacked later with --keep-directory-symlink lands under /usr.
rootfs_skeleton() {
    local root="$1"
    mkdir -p "$root"/usr/bin "$root"/usr/lib "$root"/usr/lib64 "$root"/usr/sbin "$root"/etc \
             "$root"/tmp "$root"/dev "$root"/proc
    ln -s usr/bin "$root/bin"
    ln -s usr/lib "$root/lib"
    ln -s usr/lib64 "$root/lib64"
    ln -s usr/sbin "$root/sbin"
}

# rootfs_add_libraries ROOT FILE...: every shared library the ELF files among FILE need
# (ldd also names the dynamic loader), copied as regular files (-h: many are symlinks).
rootfs_add_libraries() {
    local root="$1" f magic
    shift
    local elves=()
    for f in "$@"; do
        LC_ALL=C read -r -n4 magic < "$f" || true
        if [ "$magic" = $'\x7fELF' ]; then elves+=("$f"); fi
    done
    ldd "${elves[@]}" 2>/dev/null \
      | grep -oE '(=> )?/[^ ]+ \(0x' | sed -E 's/^=> //; s/ \(0x$//' | sort -u \
      | sed 's|^/||' \
      | tar -C / -chf - -T - | tar -C "$root" -xpf - --keep-directory-symlink
}
