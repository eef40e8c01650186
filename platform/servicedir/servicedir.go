// Package servicedir lets root write and read files in a folder that a service account owns without ever
// following a path that account controls. The account may plant a symlink, a hard link, a FIFO or a folder of
// its own where root expects a file; root then must neither write through it (overwriting a root-only file) nor
// read through it (handing a root-only file's content to the service).
//
// How: the folder is opened once with O_DIRECTORY|O_NOFOLLOW (its parents belong to root, so only its last
// element can be swapped), and every name inside it is reached relative to that descriptor: a new file is made
// with O_CREAT|O_EXCL|O_NOFOLLOW under a random name, written, fsynced, given its owner and mode by descriptor,
// then renamed over the target (rename replaces a link itself, never its target). Reads open with O_NOFOLLOW and
// accept only a regular file with one link, owned by the folder's owner.
package servicedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPlanted is returned when something other than what root put there sits at a path: a symlink, a hard link,
// a FIFO, a device, a folder where a file belongs, or a file of another owner.
var ErrPlanted = errors.New("servicedir: refusing a planted path")

// Owner is a numeric uid and gid.
type Owner struct{ UID, GID int }

// ParseOwner reads "uid:gid" or "uid" (the group then equals the uid).
func ParseOwner(s string) (Owner, error) {
	u, g, found := strings.Cut(s, ":")
	if !found {
		g = u
	}
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return Owner{}, fmt.Errorf("owner %q: want numeric uid:gid", s)
	}
	return Owner{uid, gid}, nil
}

// Dir is an open service folder. Files written into it belong to the folder's owner.
type Dir struct {
	fd     int
	path   string
	owner  Owner
	logger *slog.Logger
}

// Open opens the folder at path, refusing (and logging) a link or anything but a folder at its last element.
// The path's parents must belong to root: they are followed as given.
func Open(path string, logger *slog.Logger) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, refusedOpen(logger, unix.AT_FDCWD, path, path, err)
	}
	return newDir(fd, path, logger)
}

// Create is Open, making the folder (mode, root's) first when it does not exist; its parents are made as needed.
func Create(path string, mode os.FileMode, logger *slog.Logger) (*Dir, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mkdir(path, uint32(mode.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &fs.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return Open(path, logger)
}

func newDir(fd int, path string, logger *slog.Logger) (*Dir, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	return &Dir{fd: fd, path: path, owner: Owner{int(st.Uid), int(st.Gid)}, logger: logger}, nil
}

// Path is the folder's path, for messages.
func (d *Dir) Path() string { return d.path }

// Owner is whom the folder (and so every file written into it) belongs to.
func (d *Dir) Owner() Owner { return d.owner }

// Close releases the folder.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Own gives the folder itself to o with mode (by descriptor, so no link is followed); files written after it
// belong to o too. Files already in it are checked against the new owner on the next read or write.
func (d *Dir) Own(o Owner, mode os.FileMode) error {
	if err := unix.Fchown(d.fd, o.UID, o.GID); err != nil {
		return &fs.PathError{Op: "fchown", Path: d.path, Err: err}
	}
	if err := unix.Fchmod(d.fd, uint32(mode.Perm())); err != nil {
		return &fs.PathError{Op: "fchmod", Path: d.path, Err: err}
	}
	d.owner = o
	return nil
}

// Sub opens (making it, with mode and the folder's owner, when missing) the folder name inside d, refusing a link.
func (d *Dir) Sub(name string, mode os.FileMode) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(d.path, name)
	made := false
	if err := unix.Mkdirat(d.fd, name, uint32(mode.Perm())); err == nil {
		made = true
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, &fs.PathError{Op: "mkdirat", Path: p, Err: err}
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, refusedOpen(d.logger, d.fd, name, p, err)
	}
	sub, err := newDir(fd, p, d.logger)
	if err != nil {
		return nil, err
	}
	if made || sub.owner != d.owner {
		// Root made it, or root's earlier run did: it belongs to the service like its parent.
		if sub.owner.UID != d.owner.UID && sub.owner.UID != 0 {
			sub.Close()
			return nil, d.refuse(p, "a folder of another owner", sub.owner, "")
		}
		if err := sub.Own(d.owner, mode); err != nil {
			sub.Close()
			return nil, err
		}
	}
	return sub, nil
}

// WriteFile replaces the file name in d with data, owned by the folder's owner with mode, atomically (a reader
// sees the old or the new content, never half). A link or any non-file found at name is refused and logged,
// and left in place for the operator to look at.
//
// Why refuse rather than quietly replace: renaming over a planted link would be safe (rename replaces the link,
// never its target), and it is what protects us when a link appears between the check and the rename. But a link
// there means the service's account is in someone else's hands, so the delivery fails loudly and the instance
// stays down until the operator has looked.
func (d *Dir) WriteFile(name string, data []byte, mode os.FileMode) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := d.checkExisting(name, true); err != nil {
		return err
	}
	tmp, fd, err := d.createTemp(name)
	if err != nil {
		return err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			_ = unix.Unlinkat(d.fd, tmp, 0)
		}
	}()
	p := filepath.Join(d.path, name)
	f := os.NewFile(uintptr(fd), p) // for its full writes; closed through fd below
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := unix.Fchown(fd, d.owner.UID, d.owner.GID); err != nil {
		return &fs.PathError{Op: "fchown", Path: p, Err: err}
	}
	// After the chown, which clears set-id bits, so the mode is exactly what was asked.
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return &fs.PathError{Op: "fchmod", Path: p, Err: err}
	}
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: p, Err: err}
	}
	closeErr := f.Close()
	fd = -1
	if closeErr != nil {
		return closeErr
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		return &fs.PathError{Op: "renameat", Path: p, Err: err}
	}
	if err := unix.Fsync(d.fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: d.path, Err: err}
	}
	return nil
}

// createTemp makes a new, empty, root-only file under a random name in d.
func (d *Dir) createTemp(name string) (string, int, error) {
	for range 10 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		tmp := "." + name + "." + hex.EncodeToString(b[:]) + ".new"
		fd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue // someone's file by that name (a planted one included): draw again
		}
		if err != nil {
			return "", -1, &fs.PathError{Op: "openat", Path: filepath.Join(d.path, tmp), Err: err}
		}
		return tmp, fd, nil
	}
	return "", -1, fmt.Errorf("no free temporary name in %s", d.path)
}

// ReadFile returns the content of the file name in d. A link, a FIFO, a device, a file with more than one link
// (a hard link to someone else's file) or a file of another owner than the folder's is refused and logged.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(d.path, name)
	// O_NONBLOCK: opening a planted FIFO must not wait for a writer.
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, d.refuseAt(name, p)
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	if err := d.checkStat(p, &st, false); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// Exists says whether name is in d, refusing (as ReadFile does) anything but a file root could have written.
func (d *Dir) Exists(name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	return d.checkExisting(name, false)
}

// Remove deletes name from d (a link is removed itself; nothing is followed). A missing name is no error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "unlinkat", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// checkExisting refuses what sits at name unless it is a file root could have written, and says whether
// anything is there. For a write, the rename is what keeps it safe if this races with a new link.
func (d *Dir) checkExisting(name string, rootOK bool) (bool, error) {
	p := filepath.Join(d.path, name)
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, &fs.PathError{Op: "fstatat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return true, d.refuseAt(name, p)
	}
	return true, d.checkStat(p, &st, rootOK)
}

// checkStat accepts a regular file with one link, owned by the folder's owner (or by root, when rootOK: a
// file that a write replaces by rename, whose content nobody reads).
func (d *Dir) checkStat(p string, st *unix.Stat_t, rootOK bool) error {
	o := Owner{int(st.Uid), int(st.Gid)}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return d.refuse(p, kind(st.Mode), o, "")
	case st.Nlink > 1:
		return d.refuse(p, "a file with "+strconv.FormatUint(uint64(st.Nlink), 10)+" hard links", o, "")
	case o.UID != d.owner.UID && !(rootOK && o.UID == 0):
		return d.refuse(p, "a file of another owner than its folder's", o, "")
	}
	return nil
}

// refuseAt refuses the symlink at name, naming its owner and where it points (a path, never a content).
func (d *Dir) refuseAt(name, p string) error {
	var st unix.Stat_t
	o := Owner{-1, -1}
	if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		o = Owner{int(st.Uid), int(st.Gid)}
	}
	buf := make([]byte, 4096)
	target := ""
	if n, err := unix.Readlinkat(d.fd, name, buf); err == nil {
		target = string(buf[:n])
	}
	return d.refuse(p, "a symlink", o, target)
}

func (d *Dir) refuse(p, what string, o Owner, target string) error {
	logRefusal(d.logger, p, what, o, target)
	return fmt.Errorf("%w: %s is %s (owner %s)", ErrPlanted, p, what, describe(o))
}

// refusedOpen turns a failed open of a folder into a refusal when a link or a non-folder sits there.
func refusedOpen(logger *slog.Logger, dirfd int, name, p string, err error) error {
	if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	o, what, target := Owner{-1, -1}, "not a folder", ""
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		o, what = Owner{int(st.Uid), int(st.Gid)}, kind(st.Mode)
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			buf := make([]byte, 4096)
			if n, err := unix.Readlinkat(dirfd, name, buf); err == nil {
				target = string(buf[:n])
			}
		}
	}
	logRefusal(logger, p, what+" where a folder belongs", o, target)
	return fmt.Errorf("%w: %s is %s, not a folder (owner %s)", ErrPlanted, p, what, describe(o))
}

func logRefusal(logger *slog.Logger, p, what string, o Owner, target string) {
	if logger == nil {
		logger = slog.Default()
	}
	attrs := []any{"path", p, "found", what, "owner_uid", o.UID, "owner", describe(o)}
	if target != "" {
		attrs = append(attrs, "link_target", target)
	}
	logger.Error("REFUSED: a path in a service's folder is not what root wrote; not following it. "+
		"The account that owns it may be compromised: inspect it, then remove it", attrs...)
}

func kind(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFREG:
		return "a file"
	}
	return "an unknown kind of file"
}

// describe names an owner: the account name when the host knows it, and the uid.
func describe(o Owner) string {
	if o.UID < 0 {
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(o.UID)); err == nil {
		return u.Username + " (uid " + strconv.Itoa(o.UID) + ")"
	}
	return "uid " + strconv.Itoa(o.UID)
}

// checkName keeps every name one element inside the folder.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("servicedir: %q is not a plain file name", name)
	}
	return nil
}
